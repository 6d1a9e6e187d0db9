"""Training speed where users meet it: the recipe's epochs, data pipeline included.

Each configuration (width x quant_type x weight path) runs `scripts/train.py`'s training in its
own process on CIFAR-10-format data (32x32, batch 32, GRAPH mode by default) for two epochs, and
the per-step time of the second epoch (graph compile excluded) is recorded. Configurations are
run in interleaved rounds, so that a change in the machine's load hits every configuration of
a round alike; each ratio to the float network (W32) is taken within its round, and the table
shows the median over rounds with the range the rounds spanned.

    python benchmarks/recipe_benchmark.py                         # widths 16 and 64, 3 rounds
    python benchmarks/recipe_benchmark.py --widths 16 --rounds 5 --bits 1

The weight path: `fused` is the C++ kernel with the logits' optimizer step inside it (the recipe's
default, `fused_logit_update` True), `fused_bfloat16` that with the logits and their momentum in
bfloat16 (`search_dtype` "bfloat16"), `fused_nn_momentum` the same kernel with nn.Momentum updating
the logits (`fused_logit_update` False), `plain` MindSpore ops (MINDSPORE_SLB_NATIVE=0, nn.Momentum),
`default` what the package picks by itself, and `golden_stick` Golden Stick's SLB in the same recipe
(`--anchor DIR`, the environment benchmarks/golden_stick_env.sh builds; its own MindSpore):

    python benchmarks/recipe_benchmark.py --paths fused golden_stick --anchor /tmp/gs_anchor
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmark_results import save_results  # beside this script
from side_by_side import anchor_python, serve_golden_stick  # beside this script

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from slb_recipe.synthetic_data import write_cifar10_binary  # noqa: E402
PATH_ENVIRONMENT = {"default": None, "fused": "1", "fused_bfloat16": "1", "fused_nn_momentum": "1", "plain": "0",
                    "golden_stick": None}
# Recipe settings a path changes.
PATH_SETTINGS = {"fused_nn_momentum": {"fused_logit_update": False}, "fused_bfloat16": {"search_dtype": "bfloat16"}}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4], choices=[1, 2, 4])
    parser.add_argument("--paths", nargs="+", default=["fused", "fused_bfloat16", "fused_nn_momentum"],
                        choices=sorted(PATH_ENVIRONMENT))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="training steps per epoch")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--mode_name", default="GRAPH", choices=["GRAPH", "PYNATIVE"])
    parser.add_argument("--num_parallel_workers", type=int, default=2)
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU"])
    parser.add_argument("--anchor", help="for the golden_stick path: the folder golden_stick_env.sh built")
    parser.add_argument("--json", default="recipe_benchmark.json",
                        help="where to save the results (default: %(default)s in the current folder)")
    parser.add_argument("--worker", nargs=5, metavar=("DATA", "OUTPUT", "WIDTH", "QUANT_TYPE", "PATH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be at least 1, got {args.rounds} and {args.steps}")
    if "golden_stick" in args.paths and not args.worker and not os.access(anchor_python(args.anchor or ""), os.X_OK):
        parser.error(f"the golden_stick path needs --anchor DIR holding venv/bin/python, got {args.anchor!r}: "
                     "build it with bash benchmarks/golden_stick_env.sh DIR")
    return args


def measure(args, data, output, width, quant_type, path):
    """Per-step milliseconds of the second epoch of one recipe run, in this process."""
    from slb_recipe import train  # pylint: disable=import-outside-toplevel
    from slb_recipe.config import parse_args as recipe_args  # pylint: disable=import-outside-toplevel

    settings = {
        "dataset": "cifar10", "data_path": data, "output_path": output, "device_target": args.device_target,
        "width": width, "quant_type": quant_type, "batch_size": args.batch_size,
        "train_image_size": args.image_size, "eval_image_size": args.image_size,
        "train_num_samples": args.steps * args.batch_size, "epoch_size": 2, "warmup_epochs": 0,
        "save_checkpoint": False, "plots": False, "mode_name": args.mode_name,
        "num_parallel_workers": args.num_parallel_workers, **PATH_SETTINGS.get(path, {}),
    }
    config = recipe_args([item for key, value in settings.items() for item in (f"--{key}", str(value))])
    return train.run(config)["history"][-1]["step_time_ms"]


def run_configuration(args, argv, data, width, quant_type, path):
    environment = dict(os.environ)
    environment.pop("MINDSPORE_SLB_NATIVE", None)
    if PATH_ENVIRONMENT.get(path) is not None:  # W32 has no weight path ("-")
        environment["MINDSPORE_SLB_NATIVE"] = PATH_ENVIRONMENT[path]
    with tempfile.TemporaryDirectory() as output:
        python = anchor_python(args.anchor) if path == "golden_stick" else sys.executable
        command = [python, os.path.abspath(__file__), *argv, "--worker", data, output, str(width), quant_type, path]
        done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode != 0:
        raise SystemExit(f"width {width} {quant_type} {path} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def configurations(args):
    for width in args.widths:
        yield width, "W32", "-"
        for bits in args.bits:
            for path in args.paths:
                yield width, f"W{bits}", path


def summarise(args, rounds):
    """Median step time and median ratio to W32 (with the rounds' range) per configuration."""
    rows = []
    for width, quant_type, path in configurations(args):
        steps = [measured[(width, quant_type, path)] for measured in rounds]
        ratios = [measured[(width, quant_type, path)] / measured[(width, "W32", "-")] for measured in rounds]
        rows.append({"width": width, "quant_type": quant_type, "path": path,
                     "step_ms": statistics.median(steps), "step_ms_rounds": steps,
                     "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)})
    return rows


def table(rows):
    lines = ["| width | weights | path | step (ms) | ratio to W32 | ratio range over rounds |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['width']} | {row['quant_type']} | {row['path']} | {row['step_ms']:.1f} "
                     f"| {row['ratio']:.2f}x | {row['ratio_min']:.2f}x - {row['ratio_max']:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        data, output, width, quant_type, path = args.worker
        if path == "golden_stick":
            serve_golden_stick(args.anchor)
        print(json.dumps(measure(args, data, output, int(width), quant_type, path)))
        return None
    with tempfile.TemporaryDirectory() as data:
        write_cifar10_binary(data)
        rounds = []
        for round_index in range(args.rounds):
            measured = {}
            for width, quant_type, path in configurations(args):
                print(f"round {round_index + 1}/{args.rounds}: width {width} {quant_type} {path} ...",
                      file=sys.stderr, flush=True)
                measured[(width, quant_type, path)] = run_configuration(args, argv, data, width, quant_type, path)
            rounds.append(measured)
    rows = summarise(args, rounds)
    print(f"recipe epochs: {args.image_size}x{args.image_size}, batch {args.batch_size}, {args.mode_name}, "
          f"{args.steps} steps per epoch, second epoch timed; median of {args.rounds} interleaved rounds; "
          f"{args.device_target}, {os.cpu_count()} CPU cores")
    print(table(rows))
    save_results(args.json, args, rows=rows)
    return rows


if __name__ == "__main__":
    main()
