"""Train ResNet18 with SLB weight quantization (or the float baseline, quant_type W32).

    python scripts/train.py --config_path configs/resnet18_cifar10_config.yaml [--key value ...]
    msrun --worker_num=2 --local_worker_num=2 --master_addr=127.0.0.1 scripts/train.py --run_distribute True

Resume with --pre_trained CKPT: the run continues at the epoch the checkpoint records as reached,
on the same temperature and learning-rate schedule as an uninterrupted run.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.train import main  # noqa: E402  (the recipe package lives beside scripts/)

if __name__ == "__main__":
    main()
