"""Train and evaluate several quantization types over several seeds with one recipe, and tabulate them.

    python scripts/sweep.py [--config_path configs/resnet18_digits_config.yaml] [--key value ...]
    python scripts/sweep.py --sweep_quant_types W32,W2 --sweep_seeds 1,2,3

Each (quant_type, seed) of sweep_quant_types x sweep_seeds trains into
output_path/<quant_type>/seed_<seed>/ and is evaluated; its result is saved there as
sweep_run.json. A run whose sweep_run.json exists is skipped, so a re-run of an interrupted sweep
continues where it stopped (delete a run's folder to redo it); a run without a readable
sweep_run.json starts over, replacing the checkpoints its interrupted attempt left. After every run the tables so far
are written: output_path/sweep_results.md (per quantization type: runs, mean, sample standard
deviation and min-max of top-1 and top-5 over the seeds, total training time; then every run),
sweep_results.json (the same, as {"summary": [...], "runs": [...]}) and, with matplotlib and
`plots` on, sweep_results.png.
"""
import json
import os
import statistics
import time

from slb_recipe import evaluate as evaluation
from slb_recipe import plots
from slb_recipe import train
from slb_recipe.checkpoints import checkpoint_dir, saved_checkpoints
from slb_recipe.config import parse_list, with_overrides
from slb_recipe.files import write_atomically
from slb_recipe.runtime import script_main

RUN_RESULT_NAME = "sweep_run.json"
MARKDOWN_NAME = "sweep_results.md"
JSON_NAME = "sweep_results.json"
METRICS = (("top_1", "top-1"), ("top_5", "top-5"))
# What a run's sweep_run.json holds (and "checkpoint").
ROW_KEYS = ("quant_type", "seed", "top_1_accuracy", "top_5_accuracy", "train_time_s")


def run_folder(output_path, quant_type, seed):
    return os.path.join(output_path, quant_type, f"seed_{seed}")


def planned_runs(config):
    """(quant_type, seed) pairs in table order: by quantization type, then seed."""
    return [(quant_type, seed) for quant_type in parse_list("sweep_quant_types", config.sweep_quant_types)
            for seed in parse_list("sweep_seeds", config.sweep_seeds)]


def grouped(rows, keys):
    """[(values of `keys`, the rows that have them)], in the order rows first show each group."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    return list(groups.items())


def spread(values):
    """{'mean', 'std' (sample standard deviation, None for one value), 'min', 'max'} of values."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def summarize(rows):
    """Per quantization type, in the order rows first name it: run count, mean, sample standard
    deviation (None for one run), min and max of top-1 and top-5, and total training seconds."""
    summary = []
    for (quant_type,), runs in grouped(rows, ("quant_type",)):
        record = {"quant_type": quant_type, "runs": len(runs)}
        for metric, _ in METRICS:
            record.update({f"{metric}_{name}": value
                           for name, value in spread([row[f"{metric}_accuracy"] for row in runs]).items()})
        record["train_time_s"] = sum(row["train_time_s"] for row in runs)
        summary.append(record)
    return summary


def _markdown_row(cells):
    return "| " + " | ".join(cells) + " |"


def _spread_cells(record, metric):
    std = record[f"{metric}_std"]
    return [f"{record[f'{metric}_mean']:.4f}", "n/a" if std is None else f"{std:.4f}",
            f"{record[f'{metric}_min']:.4f}–{record[f'{metric}_max']:.4f}"]


def markdown_tables(summary, rows):
    """The summary table (spread: sample standard deviation and min–max over seeds), then every run."""
    summary_header = ["quantization type", "runs"]
    for _, label in METRICS:
        summary_header += [f"{label} mean", f"{label} std", f"{label} min–max"]
    summary_header.append("training time (s)")
    lines = [_markdown_row(summary_header), _markdown_row(["---"] * len(summary_header))]
    for record in summary:
        cells = [record["quant_type"], str(record["runs"])]
        for metric, _ in METRICS:
            cells += _spread_cells(record, metric)
        lines.append(_markdown_row(cells + [f"{record['train_time_s']:.1f}"]))
    run_header = ["quantization type", "seed", "top-1 accuracy", "top-5 accuracy", "training time (s)"]
    lines += ["", _markdown_row(run_header), _markdown_row(["---"] * len(run_header))]
    lines += [_markdown_row([row["quant_type"], str(row["seed"]), f"{row['top_1_accuracy']:.4f}",
                             f"{row['top_5_accuracy']:.4f}", f"{row['train_time_s']:.1f}"]) for row in rows]
    return "\n".join(lines)


def read_finished_run(path, keys=ROW_KEYS):
    """The result a finished run saved at path (a JSON object with every one of `keys`), or None:
    when there is none, and, said so, when the file is not one (an interrupted write)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as stream:
            row = json.load(stream)
    except (ValueError, OSError) as error:  # an empty or cut file: the write was interrupted
        row = error
    if not isinstance(row, dict) or not all(key in row for key in keys):
        print(f"{path} is not a finished run's result ({type(row).__name__}): the run is done again")
        return None
    return row


def _train_and_evaluate(base, quant_type, seed, folder):
    config = with_overrides(base, quant_type=quant_type, seed=seed, output_path=folder, checkpoint_file_path="")
    # Checkpoints of an interrupted attempt: this sweep wrote them, and the run starts over.
    for _, path in saved_checkpoints(checkpoint_dir(config), quant_type):
        print(f"removed {path}, left by an interrupted attempt of this run")
        os.remove(path)
    started = time.perf_counter()
    checkpoint = train.run(config)["checkpoint"]
    train_time_s = time.perf_counter() - started
    # The checkpoint this training saved, not whatever is newest in a folder an earlier attempt used.
    metrics = evaluation.run(with_overrides(config, checkpoint_file_path=checkpoint or ""))["quantized"]
    row = {"quant_type": quant_type, "seed": seed, **metrics, "train_time_s": train_time_s, "checkpoint": checkpoint}
    write_atomically(os.path.join(folder, RUN_RESULT_NAME), json.dumps(row, indent=2))
    return row


def write_results(config, rows):
    """The Markdown tables, the JSON and (when enabled) the bar chart of the runs so far."""
    summary = summarize(rows)
    table = markdown_tables(summary, rows)
    os.makedirs(config.output_path, exist_ok=True)
    write_atomically(os.path.join(config.output_path, MARKDOWN_NAME), table + "\n")
    write_atomically(os.path.join(config.output_path, JSON_NAME),
                      json.dumps({"summary": summary, "runs": rows}, indent=2))
    if config.plots:
        plots.draw_sweep(config.output_path, summary)
    return summary, table


def run(base):
    """Returns {'summary': per quantization type, 'runs': per (quant_type, seed) row}."""
    plan = planned_runs(base)
    rows = []
    for index, (quant_type, seed) in enumerate(plan, start=1):
        folder = run_folder(base.output_path, quant_type, seed)
        row = read_finished_run(os.path.join(folder, RUN_RESULT_NAME))
        if row is not None:
            print(f"sweep run {index}/{len(plan)}: {quant_type} seed {seed} already finished ({folder}/"
                  f"{RUN_RESULT_NAME}), skipped; delete that folder to run it again")
        else:
            print(f"sweep run {index}/{len(plan)}: {quant_type} seed {seed}, into {folder}")
            row = _train_and_evaluate(base, quant_type, seed, folder)
        rows.append(row)
        summary, table = write_results(base, rows)
    print(table)
    return {"summary": summary, "runs": rows}


def main(argv=None):
    return script_main(run, argv)
