"""Train and evaluate W32, W4, W2 and W1 with one recipe and print the accuracy table of Golden Stick's SLB documentation.

    python scripts/sweep.py [--config_path configs/resnet18_digits_config.yaml] [--key value ...]

Each quantization type trains into output_path/<type>/; the table is printed as Markdown and
saved as output_path/sweep_results.md and output_path/sweep_results.json.
"""
import json
import os

from slb_recipe import evaluate as evaluation
from slb_recipe import train
from slb_recipe.common import script_main, with_overrides

SWEEP_QUANT_TYPES = ("W32", "W4", "W2", "W1")


def markdown_table(rows):
    lines = ["| quantization type | top-1 accuracy | top-5 accuracy |", "| --- | --- | --- |"]
    lines += [f"| {row['quant_type']} | {row['top_1_accuracy']:.4f} | {row['top_5_accuracy']:.4f} |" for row in rows]
    return "\n".join(lines)


def run(base):
    """Returns one row per quantization type: quant_type, top-1, top-5 and the checkpoint."""
    rows = []
    for quant_type in SWEEP_QUANT_TYPES:
        config = with_overrides(base, quant_type=quant_type, checkpoint_file_path="",
                                output_path=os.path.join(base.output_path, quant_type))
        checkpoint = train.run(config)["checkpoint"]
        # eval.run picks the run's latest checkpoint; the converted network's figures equal these.
        metrics = evaluation.run(config)["quantized"]
        rows.append({"quant_type": quant_type, **metrics, "checkpoint": checkpoint})
    table = markdown_table(rows)
    print(table)
    os.makedirs(base.output_path, exist_ok=True)
    with open(os.path.join(base.output_path, "sweep_results.md"), "w", encoding="utf-8") as stream:
        stream.write(table + "\n")
    with open(os.path.join(base.output_path, "sweep_results.json"), "w", encoding="utf-8") as stream:
        json.dump(rows, stream, indent=2)
    return rows


def main(argv=None):
    return script_main(run, argv)
