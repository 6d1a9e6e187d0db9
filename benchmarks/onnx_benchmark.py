"""Size and onnxruntime inference time of the ONNX exports: the recipe's ResNet18 (the CIFAR-10
configuration: width 64, 10 classes) at each weight bit width, packed ONNX against the float ONNX
of the same converted network, timed in interleaved rounds in one onnxruntime process.

    python benchmarks/onnx_benchmark.py [--bits 1 2 4] [--width 64] [--batch_size 32] [--image_size 32] [--rounds 30]
        [--threads 2] [--output_path /tmp/onnx_benchmark] [--json FILE]

The logits are random (sizes and times do not depend on training: every candidate is in use). Per
bit width it prints the files' sizes, the float / packed size ratio, the session's creation time
(onnxruntime folds the weight rebuilding into constants then), the inference time ratio packed /
float (median of the rounds, quartiles in brackets) and the largest output difference from the
float ONNX and from the converted MindSpore network, relative to the largest output.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime

import mindspore as ms
from mindspore import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=wrong-import-position
from mindspore_slb import save_onnx  # noqa: E402
from slb_recipe.network import build_network  # noqa: E402
from slb_recipe.config import load_config  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "resnet18_cifar10_config.yaml")


def searched_network(bits, width):
    """The W<bits> ResNet18 with random logits, the same for the same bits."""
    config = load_config(["--config_path", CONFIG, "--quant_type", f"W{bits}", "--width", str(width)])
    ms.set_seed(bits)
    net, _ = build_network(config)
    rng = np.random.default_rng(bits)
    for param in net.get_parameters():
        if param.name.endswith("weight_logits"):
            param.set_data(Tensor(rng.normal(size=param.shape).astype(np.float32)))
    net.set_train(False)
    return net


def exports(bits, width, images, folder):
    """Packed and float ONNX of one randomly searched W<bits> ResNet18, and the converted network's output."""
    packed = save_onnx(searched_network(bits, width), images, os.path.join(folder, f"w{bits}_packed.onnx"))
    # MindSpore fails to export one network to ONNX twice: the float file comes from a twin network
    net = searched_network(bits, width)
    plain = save_onnx(net, images, os.path.join(folder, f"w{bits}.onnx"), packed=False)
    return packed, plain, net(images).asnumpy()  # save_onnx converted net in place


def session(path, threads):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    start = time.perf_counter()
    created = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return created, time.perf_counter() - start


def timed(created, feed):
    start = time.perf_counter()
    output = created.run(None, feed)[0]
    return time.perf_counter() - start, output


def measure(bits, args, images):
    packed_path, float_path, converted = exports(bits, args.width, images, args.output_path)
    (packed, packed_setup), (plain, float_setup) = session(packed_path, args.threads), session(float_path, args.threads)
    feed = {plain.get_inputs()[0].name: images.asnumpy()}
    for _ in range(2):  # warm-up
        timed(packed, feed), timed(plain, feed)
    ratios, packed_times, float_times = [], [], []
    for index in range(args.rounds):  # alternate which goes first
        first, second = (packed, plain) if index % 2 == 0 else (plain, packed)
        times = {id(first): timed(first, feed)[0], id(second): timed(second, feed)[0]}
        packed_times.append(times[id(packed)])
        float_times.append(times[id(plain)])
        ratios.append(times[id(packed)] / times[id(plain)])
    packed_out, float_out = packed.run(None, feed)[0], plain.run(None, feed)[0]
    return {"bits": bits, "packed_bytes": os.path.getsize(packed_path), "float_bytes": os.path.getsize(float_path),
            "packed_setup_s": packed_setup, "float_setup_s": float_setup,
            "packed_s": float(np.median(packed_times)), "float_s": float(np.median(float_times)),
            "ratio": [float(q) for q in np.percentile(ratios, [50, 25, 75])],
            # relative to the largest output: untrained BatchNorm statistics make the outputs large
            "packed_vs_float_onnx": float(np.abs(packed_out - float_out).max() / np.abs(float_out).max()),
            "packed_vs_converted": float(np.abs(packed_out - converted).max() / np.abs(converted).max()),
            "float_vs_converted": float(np.abs(float_out - converted).max() / np.abs(converted).max())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4])
    parser.add_argument("--width", type=int, default=64, help="ResNet18's width (64: the recipe's)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime's intra-op threads")
    parser.add_argument("--output_path", default="/tmp/onnx_benchmark", help="folder for the ONNX files")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    os.makedirs(args.output_path, exist_ok=True)
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
    images = Tensor(np.random.default_rng(0).normal(size=(args.batch_size, 3, args.image_size, args.image_size))
                    .astype(np.float32))
    rows = [measure(bits, args, images) for bits in args.bits]
    print(f"ResNet18 width {args.width}, 10 classes, batch {args.batch_size} at {args.image_size}x{args.image_size}, "
          f"onnxruntime {onnxruntime.__version__}, {args.threads} threads, {args.rounds} interleaved rounds\n")
    print("| weights | float ONNX (bytes) | packed ONNX (bytes) | float / packed | session creation, packed / float "
          "(s) | inference, float (ms) | packed / float time | max diff packed vs float ONNX | max diff packed vs "
          "converted (relative) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        median, low, high = row["ratio"]
        print(f"| W{row['bits']} | {row['float_bytes']:,} | {row['packed_bytes']:,} | "
              f"{row['float_bytes'] / row['packed_bytes']:.1f}x | {row['packed_setup_s']:.2f} / "
              f"{row['float_setup_s']:.2f} | {row['float_s'] * 1e3:.1f} | {median:.2f}x ({low:.2f}-{high:.2f}) | "
              f"{row['packed_vs_float_onnx']:.1e} | {row['packed_vs_converted']:.1e} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump({"args": vars(args), "rows": rows}, stream, indent=1)
    return rows


if __name__ == "__main__":
    main()
