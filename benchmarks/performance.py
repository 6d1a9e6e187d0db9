"""Every training-cost figure of the README in one run, as ratios to the float network of the same round.

It runs recipe_benchmark.py (the recipe's epochs, by default at widths 16 and 64: this package's
paths, and Golden Stick's with --anchor) and then benchmark.py (the isolated step and peak training
memory, by default at width 64, GRAPH and PyNative mode, for each optimizer), each in interleaved rounds, writes their
JSON files into --output, and prints four tables: recipe epochs, isolated step, peak memory, and
how many times faster than Golden Stick each step is. Each cell is the median over the rounds with
their range.

    python benchmarks/performance.py --anchor /tmp/gs_anchor      # everything, 3 rounds
    python benchmarks/performance.py --rounds 1 --recipe_steps 10 --paths fused --optimizers SlbMomentum --bits 4
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from resnet_step import OPTIMIZERS  # beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
BITS = (1, 2, 4)
RECIPE_PATHS = ("fused", "fused_bfloat16", "fused_nn_momentum")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recipe_steps", type=int, default=40, help="training steps per recipe epoch")
    parser.add_argument("--recipe_widths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--step_width", type=int, default=64, help="the isolated step's ResNet18 width")
    parser.add_argument("--bits", type=int, nargs="+", default=list(BITS), choices=BITS,
                        help="the weight bits measured (a table's other columns read '-')")
    parser.add_argument("--paths", nargs="+", default=list(RECIPE_PATHS), choices=RECIPE_PATHS,
                        help="this package's recipe paths (recipe_benchmark.py)")
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS,
                        help="the isolated step's optimizers (benchmark.py)")
    parser.add_argument("--anchor", help="Golden Stick's environment (benchmarks/golden_stick_env.sh): adds its column")
    parser.add_argument("--output", default="performance", help="folder for the two JSON files")
    parser.add_argument("--report_only", action="store_true",
                        help="measure nothing: print the tables of the JSON files already in --output")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.recipe_steps < 1:
        parser.error(f"--rounds and --recipe_steps must be at least 1, got {args.rounds} and {args.recipe_steps}")
    return args


def run(script, arguments):
    """Runs a benchmark script beside this one, its progress passing through; stops on failure."""
    done = subprocess.run([sys.executable, os.path.join(HERE, script), *arguments])
    if done.returncode != 0:
        raise SystemExit(f"{script} failed (exit {done.returncode})")


def spread(values):
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def table(title, row_label, rows):
    """rows: (label, {bits: cell}) pairs."""
    lines = [f"**{title}**", "", f"| {row_label} | W1 | W2 | W4 |", "|---|---|---|---|"]
    lines += [f"| {label} | " + " | ".join(cells.get(bits, "-") for bits in BITS) + " |" for label, cells in rows]
    return "\n".join(lines + [""])


def recipe_tables(recipe):
    by_key = {(row["width"], row["quant_type"], row["path"]): row for row in recipe["rows"]}
    widths = sorted({row["width"] for row in recipe["rows"]})
    paths = [path for path in recipe["settings"]["paths"] if path != "golden_stick"]
    epochs = [(f"{width}, {path}", {bits: spread(ratios(by_key, width, bits, path))
                                    for bits in BITS if (width, f"W{bits}", path) in by_key})
              for width in widths for path in paths]
    tables = [table("Recipe epochs: step time / float step", "width, path", epochs)]
    if "golden_stick" in recipe["settings"]["paths"]:
        faster = [(str(width), {bits: spread([theirs / ours for theirs, ours in zip(
            by_key[(width, f"W{bits}", "golden_stick")]["step_ms_rounds"],
            by_key[(width, f"W{bits}", "fused")]["step_ms_rounds"])])
            for bits in BITS if (width, f"W{bits}", "golden_stick") in by_key and (width, f"W{bits}", "fused") in by_key})
            for width in widths]
        tables.append(table("Golden Stick's step / this package's (fused), same recipe and rounds", "width", faster))
    return tables


def ratios(by_key, width, bits, path):
    """Per-round ratios of one recipe configuration to the float network of its round."""
    row, base = by_key[(width, f"W{bits}", path)], by_key[(width, "W32", "-")]
    return [ours / floats for ours, floats in zip(row["step_ms_rounds"], base["step_ms_rounds"])]


def step_tables(step):
    """Isolated step (GRAPH) and peak memory (both modes), from benchmark.py's rounds."""
    rounds = step["rounds"]

    def per_round(mode, bits, optimizer, key):
        values = []
        for measured in rounds:
            ours = [r for r in measured if (r["mode"], r["bits"], r["optimizer"]) == (mode, bits, optimizer)]
            base = [r for r in measured if (r["mode"], r["bits"], r["tree"]) == (mode, 0, "current")]
            if ours and base:
                values.append(ours[0][key] / base[0][key])
        return values

    modes = step["settings"]["modes"]
    optimizers = step["settings"]["optimizers"]
    steps = [(optimizer, {bits: spread(per_round("GRAPH", bits, optimizer, "step_s")) for bits in BITS
                          if per_round("GRAPH", bits, optimizer, "step_s")}) for optimizer in optimizers]
    memory = [(f"{mode}, {optimizer}", {bits: spread(per_round(mode, bits, optimizer, "peak_rss_gb")) for bits in BITS
                                        if per_round(mode, bits, optimizer, "peak_rss_gb")})
              for mode in modes for optimizer in optimizers]
    return [table("Isolated step, GRAPH: step time / float step", "optimizer", steps),
            table("Peak memory during training / float network's", "mode, optimizer", memory)]


def measure(args, paths, recipe_json, step_json):
    bits = ["--bits", *map(str, args.bits)]
    run("recipe_benchmark.py", ["--widths", *map(str, args.recipe_widths), "--rounds", str(args.rounds), "--steps",
                                str(args.recipe_steps), "--paths", *paths, *bits, "--json", recipe_json])
    run("benchmark.py", ["--width", str(args.step_width), "--modes", "GRAPH", "PYNATIVE", "--rounds", str(args.rounds),
                         "--optimizers", *args.optimizers, *bits, "--training_only", "--json", step_json])


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    recipe_json, step_json = os.path.join(args.output, "recipe.json"), os.path.join(args.output, "step.json")
    paths = args.paths + (["golden_stick", "--anchor", args.anchor] if args.anchor else [])
    if not args.report_only:
        measure(args, paths, recipe_json, step_json)
    with open(recipe_json, encoding="utf-8") as recipe, open(step_json, encoding="utf-8") as step:
        tables = recipe_tables(json.load(recipe)) + step_tables(json.load(step))
    print("\n".join(tables))
    return tables


if __name__ == "__main__":
    main()
