"""Train and evaluate W32, W4, W2 and W1 with one recipe and print the accuracy table of Golden Stick's SLB documentation.

    python scripts/sweep.py [--config_path configs/resnet18_digits_config.yaml] [--key value ...]

Each quantization type trains into output_path/<type>/; the table is printed as Markdown and
saved as output_path/sweep_results.md and output_path/sweep_results.json.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.sweep import main  # noqa: E402  (the recipe package lives beside scripts/)

if __name__ == "__main__":
    main()
