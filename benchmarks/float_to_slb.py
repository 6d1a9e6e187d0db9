"""Quantizing a float-trained network: top-1 right after SLB's apply and after one epoch of SLB
fine-tuning, for each weight bit width, with and without the per-channel weight scale.

    python benchmarks/float_to_slb.py [--width 16] [--float_epochs 10] [--bits 4 2 1] [--dataset digits]

Trains the recipe's float ResNet18 (quant_type W32) first, then for each row loads its weights
into a fresh float network, applies SLB (the logits and scale start from those weights), evaluates,
fine-tunes one epoch (the first epoch of a 10-epoch SLB schedule, constant learning rate 0.01),
evaluates again, and once more after re-estimating the BatchNorm statistics under the hard weights
(``calibrate_batchnorm``: training at temperature 1 moves them towards the soft network's). Prints a
Markdown table.
"""
import argparse
import os
import sys
import tempfile

import mindspore as ms

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from mindspore_slb import calibrate_batchnorm  # noqa: E402
from slb_recipe import train as recipe_train  # noqa: E402
from slb_recipe.checkpoints import load_into_network, read_checkpoint  # noqa: E402
from slb_recipe.config import load_config  # noqa: E402
from slb_recipe.dataset import create_split  # noqa: E402
from slb_recipe.metrics import evaluate, loss_function  # noqa: E402
from slb_recipe.network import build_slb_algorithm  # noqa: E402
from slb_recipe.resnet import resnet18  # noqa: E402
from slb_recipe.runtime import setup_runtime  # noqa: E402


def recipe_config(args, output_path, quant_type, epochs, scale=False):
    return load_config(["--dataset", args.dataset, "--data_path", args.data_path, "--width", str(args.width),
                        "--quant_type", quant_type, "--epoch_size", str(epochs), "--output_path", output_path,
                        "--enable_weight_scale", str(scale), "--mode_name", args.mode, "--save_checkpoint_epochs",
                        str(epochs)] + (["--class_num", str(args.class_num)]))


def quantize_and_fine_tune(args, float_config, float_checkpoint, output_path, bits, scale):
    config = recipe_config(args, output_path, f"W{bits}", 10, scale)
    setup_runtime(config)
    net = resnet18(config.class_num, config.width, config.conv_init, config.dense_init)
    # Read afresh for every row, and as the float run's checkpoint: its record says W32, which this
    # row's config would refuse.
    load_into_network(net, read_checkpoint(float_checkpoint, float_config), float_checkpoint)
    algo = build_slb_algorithm(config, 0)
    net = algo.apply(net)
    eval_data, train_data = create_split(config, False), create_split(config, True)
    after_apply = evaluate(net, eval_data, config)["top_1_accuracy"]
    optimizer = ms.nn.Momentum(recipe_train.parameter_groups(net, config.weight_decay), 0.01, config.momentum)
    model = ms.Model(net, loss_fn=loss_function(config), optimizer=optimizer)
    net.set_train(True)
    model.train(1, train_data, callbacks=algo.callbacks(model, train_data), dataset_sink_mode=False)
    after_epoch = evaluate(net, eval_data, config)["top_1_accuracy"]
    calibrate_batchnorm(net, train_data)
    return after_apply, after_epoch, evaluate(net, eval_data, config)["top_1_accuracy"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", default="digits", choices=("digits", "cifar10", "imagenet"))
    parser.add_argument("--data_path", default="")
    parser.add_argument("--class_num", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--float_epochs", type=int, default=10)
    parser.add_argument("--bits", type=int, nargs="+", default=(4, 2, 1), choices=(1, 2, 4))
    parser.add_argument("--mode", default="GRAPH", choices=("GRAPH", "PYNATIVE"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as output_path:
        float_config = recipe_config(args, output_path, "W32", args.float_epochs)
        float_checkpoint = recipe_train.run(float_config)["checkpoint"]
        net = resnet18(float_config.class_num, float_config.width)
        load_into_network(net, read_checkpoint(float_checkpoint, float_config), float_checkpoint)
        float_top1 = evaluate(net, create_split(float_config, False), float_config)["top_1_accuracy"]
        rows = []
        for bits in args.bits:
            for scale in (True, False):
                row = quantize_and_fine_tune(args, float_config, float_checkpoint, output_path, bits, scale)
                rows.append((bits, scale) + row)
                print(f"W{bits} scale={scale}: top-1 after apply, one epoch, BN calibration: "
                      + ", ".join(f"{value:.4f}" for value in row), flush=True)
    print(f"\nResNet18 width {args.width} on {args.dataset}, float-trained {args.float_epochs} epochs: "
          f"top-1 {float_top1:.4f}\n")
    print("| weights | scale | top-1 after apply | after one SLB epoch | then BN calibration |")
    print("|---|---|---|---|---|")
    for bits, scale, after_apply, after_epoch, calibrated in rows:
        print(f"| W{bits} | {'on' if scale else 'off'} | {after_apply:.4f} | {after_epoch:.4f} | {calibrated:.4f} |")


if __name__ == "__main__":
    main()
