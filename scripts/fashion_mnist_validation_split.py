"""Write a Fashion-MNIST validation split: the recipe trains on the first training images and
evaluates on the last ones, so settings can be chosen without ever looking at the test set.

    python scripts/fashion_mnist_validation_split.py --data_path /usr/share/datasets/fashion-mnist \\
        --output ./data/fashion_mnist_validation
    python scripts/train.py --config_path configs/resnet18_fashion_mnist_config.yaml \\
        --data_path ./data/fashion_mnist_validation

The output holds the four standard file names: train-* with the first 50,000 training images,
t10k-* with the last 10,000 (--validation_count); the 10,000 test images are not copied.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from slb_recipe.dataset import DataPathError, write_fashion_mnist_validation_split  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", default="/usr/share/datasets/fashion-mnist",
                        help="folder with Fashion-MNIST's four idx files")
    parser.add_argument("--output", required=True, help="folder to write the split's four files to")
    parser.add_argument("--validation_count", type=int, default=10000,
                        help="last training images that become the evaluation split")
    args = parser.parse_args(argv)
    try:
        train_count, validation_count = write_fashion_mnist_validation_split(
            args.data_path, args.output, args.validation_count)
    except (DataPathError, ValueError) as error:
        sys.exit(f"error: {error}")
    print(f"{args.output}: {train_count} training images, {validation_count} validation images "
          f"(the last {validation_count} of {args.data_path}'s training split)")


if __name__ == "__main__":
    main()
