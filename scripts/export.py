"""Convert a trained checkpoint to the deployable network and export it, with a size report.

    python scripts/export.py --config_path configs/resnet18_cifar10_config.yaml [--checkpoint_file_path CKPT]
        [--file_format MINDIR | MINDIR_PACKED | SLB | ONNX | ONNX_PACKED]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.export import main  # noqa: E402  (the recipe package lives beside scripts/)

if __name__ == "__main__":
    main()
