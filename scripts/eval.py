"""Evaluate a trained checkpoint: top-1/top-5 of the quantized network and of its converted,
deployable form (plain convolutions with discrete weights), which must agree.

    python scripts/eval.py --config_path configs/resnet18_cifar10_config.yaml [--checkpoint_file_path CKPT]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.evaluate import main  # noqa: E402  (the recipe package lives beside scripts/)

if __name__ == "__main__":
    main()
