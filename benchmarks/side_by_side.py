"""Accuracy of this package's SLB against Golden Stick's, trained by the same recipe on the same data and seeds.

Golden Stick runs in its own virtual environment (MindSpore 2.7.1, mindspore-gs 1.4.1) with an import
shim that serves `mindspore_slb`'s names from Golden Stick, built by benchmarks/golden_stick_env.sh:

    bash benchmarks/golden_stick_env.sh /tmp/gs_anchor       # once: DIR/venv and DIR/shim
    python benchmarks/side_by_side.py --anchor /tmp/gs_anchor --quant_types W4 W2 W1 --seeds 1 2 3 \\
        -- --config_path configs/resnet18_fashion_mnist_config.yaml

Everything after `--` goes to the recipe (any config key). Each (implementation, quant type, seed) trains
in its own process into OUTPUT/<implementation>/<quant_type>/seed_<seed>/ and is evaluated as the
quantized network (Golden Stick's converted network has no CPU kernels). A finished run is read back
from its result file instead of being trained again, so an interrupted comparison resumes. The table
(mean, min and max top-1 over seeds per implementation) is printed and saved with every run as
side_by_side.md and side_by_side.json in OUTPUT.

With --same_start each Golden Stick run goes first and saves the state it starts from (its random
logits, BatchNorm and dense parameters); this package's run of the same quant type and seed starts
from that state instead of its own (see golden_stick_bridge.py). What then differs between the two is
only how each implementation computes its steps. Give it its own OUTPUT: runs are read back by
folder, whatever start they had.
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLEMENTATIONS = ("mindspore_slb", "golden_stick")
RESULT_FILE = "result.json"
RESULT_KEYS = ("implementation", "quant_type", "seed", "top_1_accuracy")  # what a finished run's RESULT_FILE holds
METRICS_FILE = "metrics.json"  # what a worker process leaves for run_one
START_FILE = "start_state.npz"  # a Golden Stick run's starting state, with --same_start


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchor", required=True, help="folder golden_stick_env.sh built (holds venv/ and shim/)")
    parser.add_argument("--quant_types", nargs="+", default=["W4", "W2", "W1"], choices=["W1", "W2", "W4"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--implementations", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS,
                        help="compare only these (a later run with both reads finished runs back)")
    parser.add_argument("--output", default="./output/side_by_side")
    parser.add_argument("--same_start", action="store_true",
                        help="this package's runs start from the state Golden Stick's run of the same quant type and "
                             "seed starts from (Golden Stick runs first)")
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "RUN_FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--start_state", help=argparse.SUPPRESS)  # a worker's START_FILE, with --same_start
    parser.add_argument("recipe_args", nargs="*", help="recipe arguments, after --")
    args = parser.parse_args(argv)
    if not args.worker:
        check_anchor(parser, args.anchor)
    return args


def anchor_python(anchor):
    """The interpreter of the environment golden_stick_env.sh built in `anchor` (DIR/venv, DIR/shim)."""
    return os.path.join(anchor, "venv", "bin", "python")


def check_anchor(parser, anchor):
    """Stop with a usage error unless `anchor` holds the environment golden_stick_env.sh builds."""
    if not os.access(anchor_python(anchor), os.X_OK):
        parser.error(f"--anchor '{anchor}' has no venv/bin/python: "
                     "build it with bash benchmarks/golden_stick_env.sh DIR")


def recipe_module(name):
    """A module of the recipe, imported in the comparing process only: a Golden Stick worker must
    import its shim before anything puts this repository on sys.path."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    return importlib.import_module(f"slb_recipe.{name}")


def write_atomically(path, text):
    """The recipe's atomic writer (slb_recipe.files)."""
    recipe_module("files").write_atomically(path, text)


def start_hook(implementation, start_state):
    """What a --same_start worker does with its network before training: Golden Stick's saves its
    starting state to start_state, this package's sets its own from it."""
    import golden_stick_bridge  # pylint: disable=import-outside-toplevel

    if implementation == "golden_stick":
        return lambda net: golden_stick_bridge.save_golden_stick_state(net, start_state)
    if not os.path.isfile(start_state):
        raise SystemExit(f"--same_start: no starting state {start_state}: that Golden Stick run was not made with "
                         "--same_start (give the comparison its own --output)")
    return lambda net: golden_stick_bridge.load_state_file(net, start_state)


def train_and_evaluate(recipe_args, run_folder, prepare_network=None):
    """Train as recipe_args say into run_folder, then top-1/top-5 of the quantized network."""
    from slb_recipe import train  # pylint: disable=import-outside-toplevel
    from slb_recipe.dataset import create_split  # pylint: disable=import-outside-toplevel
    from slb_recipe.metrics import evaluate  # pylint: disable=import-outside-toplevel
    from slb_recipe.network import load_trained_network  # pylint: disable=import-outside-toplevel
    from slb_recipe.runtime import setup_runtime  # pylint: disable=import-outside-toplevel
    from slb_recipe.config import parse_args as recipe_config  # pylint: disable=import-outside-toplevel

    config = recipe_config([*recipe_args, "--output_path", run_folder])
    start = time.perf_counter()
    train.run(config, prepare_network)
    train_time_s = time.perf_counter() - start
    setup_runtime(config)
    net, _, _ = load_trained_network(config)
    return {**evaluate(net, create_split(config, False), config), "train_time_s": train_time_s}


def serve_golden_stick(anchor):
    """Import the anchor's shim as `mindspore_slb`: imported before the recipe puts this repository
    first on sys.path, the shim (Golden Stick underneath) is the one every later import gets."""
    sys.path.insert(0, os.path.join(anchor, "shim"))
    import mindspore_slb  # pylint: disable=import-outside-toplevel
    print(f"mindspore_slb served from {mindspore_slb.__file__}", file=sys.stderr)


def worker(implementation, run_folder, recipe_args, anchor, start_state=None):
    """Train and evaluate one run; its metrics go to run_folder/METRICS_FILE."""
    if implementation == "golden_stick":
        serve_golden_stick(anchor)
    sys.path.insert(0, REPO_ROOT)
    prepare_network = start_hook(implementation, start_state) if start_state else None
    metrics = train_and_evaluate(recipe_args, run_folder, prepare_network)
    with open(os.path.join(run_folder, METRICS_FILE), "w", encoding="utf-8") as stream:
        json.dump(metrics, stream)
    return metrics


def run_one(args, implementation, quant_type, seed):
    """The result of one run, from its result file when an earlier comparison finished it."""
    folder = os.path.join(args.output, implementation, quant_type, f"seed_{seed}")
    result_path = os.path.join(folder, RESULT_FILE)
    # The sweep's resume: a result file that is not one (an interrupted write) is said so, and the run done again.
    result = recipe_module("sweep").read_finished_run(result_path, RESULT_KEYS)
    if result is not None:
        print(f"{implementation} {quant_type} seed {seed}: finished before, read back", flush=True)
        return result
    python = sys.executable if implementation == "mindspore_slb" else anchor_python(args.anchor)
    # No figures: they read this package's layers, which Golden Stick's networks do not have.
    recipe_args = [*args.recipe_args, "--quant_type", quant_type, "--seed", str(seed), "--plots", "False"]
    command = [python, os.path.abspath(__file__), "--anchor", args.anchor, "--worker", implementation, folder]
    if args.same_start:
        command += ["--start_state", os.path.join(args.output, "golden_stick", quant_type, f"seed_{seed}", START_FILE)]
    command += ["--", *recipe_args]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "log.txt"), "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{implementation} {quant_type} seed {seed} failed: see {folder}/log.txt")
    with open(os.path.join(folder, METRICS_FILE), encoding="utf-8") as stream:
        result = {"implementation": implementation, "quant_type": quant_type, "seed": seed, **json.load(stream)}
    write_atomically(result_path, json.dumps(result, indent=2))
    return result


def summary_rows(results):
    """Per implementation (in IMPLEMENTATIONS' order) and quant type: seeds, mean, min and max top-1."""
    sweep = recipe_module("sweep")
    groups = sorted(sweep.grouped(results, ("implementation", "quant_type")),
                    key=lambda group: IMPLEMENTATIONS.index(group[0][0]))
    rows = []
    for (implementation, quant_type), runs in groups:
        top1 = sweep.spread([run["top_1_accuracy"] for run in runs])
        rows.append({"implementation": implementation, "quant_type": quant_type, "seeds": len(runs),
                     "top_1_mean": top1["mean"], "top_1_min": top1["min"], "top_1_max": top1["max"]})
    return rows


def table(rows):
    lines = ["| implementation | weights | seeds | top-1 mean | top-1 min - max |", "|---|---|---|---|---|"]
    lines += [f"| {row['implementation']} | {row['quant_type']} | {row['seeds']} | {row['top_1_mean']:.4f} "
              f"| {row['top_1_min']:.4f} - {row['top_1_max']:.4f} |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.recipe_args, args.anchor, args.start_state)))
        return None
    implementations = list(args.implementations)
    if args.same_start:
        # Golden Stick's run saves the state this package's run of the same quant type and seed starts from.
        implementations.sort(key=lambda implementation: implementation != "golden_stick")
    runs = [(implementation, quant_type, seed) for seed in args.seeds for quant_type in args.quant_types
            for implementation in implementations]
    results = []
    for index, run in enumerate(runs, 1):
        print(f"run {index}/{len(runs)}: {run[0]} {run[1]} seed {run[2]}", flush=True)
        results.append(run_one(args, *run))
        rows = summary_rows(results)
        write_atomically(os.path.join(args.output, "side_by_side.json"),
                         json.dumps({"runs": results, "summary": rows, "recipe_args": args.recipe_args,
                                     "same_start": args.same_start}, indent=2))
        write_atomically(os.path.join(args.output, "side_by_side.md"), table(rows) + "\n")
    print(table(summary_rows(results)))
    return results


if __name__ == "__main__":
    main()
