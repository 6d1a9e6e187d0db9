"""Train and evaluate W32, W4, W2 and W1 (sweep_quant_types) over sweep_seeds with one recipe and
print the accuracy table of Golden Stick's SLB documentation, with mean and spread over the seeds.

    python scripts/sweep.py [--config_path configs/resnet18_digits_config.yaml] [--key value ...]
    python scripts/sweep.py --sweep_quant_types W32,W2 --sweep_seeds 1,2,3

Each run trains into output_path/<quant_type>/seed_<seed>/; a run already finished there is
skipped. The tables are saved as output_path/sweep_results.md and sweep_results.json, the bar
chart as sweep_results.png (see slb_recipe/sweep.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.sweep import main  # noqa: E402  (the recipe package lives beside scripts/)

if __name__ == "__main__":
    main()
