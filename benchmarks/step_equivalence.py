"""Whether this package and Golden Stick compute the same SLB training step.

Both networks are built by the recipe and set to one state: Golden Stick's starting state, or a
checkpoint of a Golden Stick run (--checkpoint). Each then computes, on the same training batch, the
loss and the gradient of every parameter the two share (golden_stick_bridge.py), at each of the
given temperatures (soft weights, as in training before the schedule ends):

    bash benchmarks/golden_stick_env.sh /tmp/gs_anchor
    python benchmarks/step_equivalence.py --anchor /tmp/gs_anchor --temperatures 1 64 \\
        -- --config_path configs/resnet18_fashion_mnist_config.yaml --quant_type W1

Prints, per temperature, both losses and the largest gradient difference relative to that
parameter's largest gradient magnitude, with the parameter it is found in. A ReLU passes or stops
a gradient by the sign of its input, so it also counts the BatchNorm outputs whose sign differs
between the two forward passes and shows the first such output. Saves the same as
step_equivalence.json in --output.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

import golden_stick_bridge
from side_by_side import REPO_ROOT, anchor_python, check_anchor, serve_golden_stick, write_atomically

IMPLEMENTATIONS = ("golden_stick", "mindspore_slb")  # Golden Stick first: it saves the shared state
STATE_FILE = "state.npz"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", required=True, help="folder golden_stick_env.sh built (holds venv/ and shim/)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 64.0])
    parser.add_argument("--checkpoint", default="", help="a Golden Stick run's checkpoint to compare at "
                        "(default: Golden Stick's starting state)")
    parser.add_argument("--output", default="./output/step_equivalence")
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    parser.add_argument("recipe_args", nargs="*", help="recipe arguments, after --")
    args = parser.parse_args(argv)
    if not args.worker:
        check_anchor(parser, args.anchor)
    bad = [t for t in args.temperatures if not t > 0]
    if bad:
        parser.error(f"--temperatures must be positive, but got {bad}")
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        parser.error(f"--checkpoint '{args.checkpoint}' is not a file")
    return args


def batchnorm_outputs(net, images):
    """{BatchNorm path: its output} in one training-mode forward pass, run op by op (PyNative), where
    forward hooks see every layer."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore import nn  # pylint: disable=import-outside-toplevel

    outputs = {}

    def keep(path):
        def hook(cell, inputs, output):  # pylint: disable=unused-argument
            outputs[path] = output.asnumpy()
        return hook
    handles = [cell.register_forward_hook(keep(path)) for path, cell in net.cells_and_names()
               if isinstance(cell, nn.BatchNorm2d)]
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        net(images)
    finally:
        ms.set_context(mode=mode)
        for handle in handles:
            handle.remove()
    return outputs


def loss_and_gradients(net, config, temperatures):
    """{temperature: (loss, {parameter name: gradient}, {BatchNorm path: output})} on the first batch
    of config's training data."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from mindspore import nn  # pylint: disable=import-outside-toplevel
    from slb_recipe.dataset import create_split  # pylint: disable=import-outside-toplevel
    from slb_recipe.metrics import loss_function  # pylint: disable=import-outside-toplevel

    images, labels = next(create_split(config, True).create_tuple_iterator())
    loss_net = nn.WithLossCell(net, loss_function(config))
    loss_net.set_train(True)
    params = net.trainable_params()
    step = ms.value_and_grad(loss_net, None, params)
    quantizers = [cell for _, cell in net.cells_and_names() if callable(getattr(cell, "set_temperature", None))]
    found = {}
    for temperature in temperatures:
        for quantizer in quantizers:
            quantizer.set_temperature(temperature)
        loss, grads = step(images, labels)
        found[temperature] = (float(loss), {param.name: grad.asnumpy() for param, grad in zip(params, grads)},
                              batchnorm_outputs(net, images))
    return found


def worker(implementation, args):
    """One implementation's losses and gradients, in this package's names and layout, saved in --output."""
    if implementation == "golden_stick":
        serve_golden_stick(args.anchor)
    sys.path.insert(0, REPO_ROOT)
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    from slb_recipe.network import build_network  # pylint: disable=import-outside-toplevel
    from slb_recipe.runtime import setup_runtime  # pylint: disable=import-outside-toplevel
    from slb_recipe.config import parse_args as recipe_config  # pylint: disable=import-outside-toplevel

    config = recipe_config(args.recipe_args)
    setup_runtime(config)
    net, _ = build_network(config)
    state_path = os.path.join(args.output, STATE_FILE)
    if implementation == "golden_stick":
        names = golden_stick_bridge.our_names(net)
        if args.checkpoint:
            not_loaded = set(ms.load_param_into_net(net, ms.load_checkpoint(args.checkpoint))[0]) & set(names)
            if not_loaded:
                raise SystemExit(f"--checkpoint '{args.checkpoint}' lacks {len(not_loaded)} parameters of Golden "
                                 f"Stick's network, e.g. {sorted(not_loaded)[:3]}: is it a Golden Stick run's, "
                                 "of the same quant_type?")
        golden_stick_bridge.save_golden_stick_state(net, state_path)
        in_our_layout = lambda grads: golden_stick_bridge.in_our_layout(names, grads)  # noqa: E731
    else:
        golden_stick_bridge.load_state_file(net, state_path)
        in_our_layout = lambda grads: grads  # noqa: E731
    arrays = {}
    for temperature, (loss, grads, outputs) in loss_and_gradients(net, config, args.temperatures).items():
        arrays[f"loss@{temperature:g}"] = np.array(loss)
        for name, grad in in_our_layout(grads).items():
            arrays[f"grad:{name}@{temperature:g}"] = grad
        for path, output in outputs.items():
            arrays[f"bn:{path}@{temperature:g}"] = output
    np.savez(os.path.join(args.output, f"{implementation}_gradients.npz"), **arrays)


def _at(arrays, kind, temperature):
    """{name: array} of one kind ("grad" or "bn") at one temperature, in the order they were saved."""
    prefix, suffix = kind + ":", f"@{temperature:g}"
    return {key[len(prefix):-len(suffix)]: array for key, array in arrays.items()
            if key.startswith(prefix) and key.endswith(suffix)}


def compare(anchor_arrays, ours_arrays, temperatures):
    """Per temperature: both losses, the largest relative gradient difference and where, and the
    BatchNorm outputs of opposite sign (how many, and the first one)."""
    rows = []
    for temperature in temperatures:
        worst, worst_name = 0.0, None
        ours = _at(ours_arrays, "grad", temperature)
        for name, anchor in _at(anchor_arrays, "grad", temperature).items():
            largest = float(np.abs(anchor).max())
            gap = float(np.abs(ours[name] - anchor).max())
            # A gradient Golden Stick leaves at zero must be zero here too.
            difference = gap / largest if largest > 0 else (math.inf if gap > 0 else 0.0)
            if worst_name is None or difference > worst:
                worst, worst_name = difference, name
        opposite, first = 0, None
        ours = _at(ours_arrays, "bn", temperature)
        for path, anchor in _at(anchor_arrays, "bn", temperature).items():
            flipped = np.flatnonzero(anchor.ravel() * ours[path].ravel() < 0)
            opposite += flipped.size
            if flipped.size and first is None:
                first = {"batchnorm": path, "golden_stick": float(anchor.ravel()[flipped[0]]),
                         "mindspore_slb": float(ours[path].ravel()[flipped[0]])}
        loss_key = f"loss@{temperature:g}"
        rows.append({"temperature": temperature, "loss_golden_stick": float(anchor_arrays[loss_key]),
                     "loss_mindspore_slb": float(ours_arrays[loss_key]),
                     "largest_relative_gradient_difference": worst, "in_parameter": worst_name,
                     "batchnorm_outputs_of_opposite_sign": opposite, "first_of_opposite_sign": first})
    return rows


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        worker(args.worker, args)
        return None
    os.makedirs(args.output, exist_ok=True)
    for implementation in IMPLEMENTATIONS:
        python = sys.executable if implementation == "mindspore_slb" else anchor_python(args.anchor)
        command = [python, os.path.abspath(__file__), "--anchor", args.anchor, "--worker", implementation,
                   "--output", args.output, "--checkpoint", args.checkpoint,
                   "--temperatures", *map(str, args.temperatures), "--", *args.recipe_args]
        with open(os.path.join(args.output, f"{implementation}_log.txt"), "w", encoding="utf-8") as log:
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise SystemExit(f"{implementation} failed: see {args.output}/{implementation}_log.txt")
    loaded = [np.load(os.path.join(args.output, f"{implementation}_gradients.npz"))
              for implementation in IMPLEMENTATIONS]
    rows = compare(dict(loaded[0]), dict(loaded[1]), args.temperatures)
    for row in rows:
        first = row["first_of_opposite_sign"]
        flips = "" if first is None else (f", first in {first['batchnorm']}: {first['golden_stick']:.2e} "
                                          f"(Golden Stick) {first['mindspore_slb']:.2e} (mindspore_slb)")
        print(f"temperature {row['temperature']:g}: loss {row['loss_golden_stick']:.7f} (Golden Stick) "
              f"{row['loss_mindspore_slb']:.7f} (mindspore_slb); largest relative gradient difference "
              f"{row['largest_relative_gradient_difference']:.2e} in {row['in_parameter']}; "
              f"BatchNorm outputs of opposite sign: {row['batchnorm_outputs_of_opposite_sign']}{flips}")
    write_atomically(os.path.join(args.output, "step_equivalence.json"),
                     json.dumps({"rows": rows, "checkpoint": args.checkpoint, "recipe_args": args.recipe_args},
                                indent=2))
    return rows


if __name__ == "__main__":
    main()
