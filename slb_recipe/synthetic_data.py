"""Small generated data sets in each on-disk layout the recipe reads, for the tests and benchmarks.

Images are coloured by their label, plus noise: learnable, yet not trivial.
"""
import gzip
import os

import numpy as np
from PIL import Image

from slb_recipe.dataset import CIFAR_RECORDS_PER_FILE, CIFAR_TRAIN_FILES, idx_bytes

CIFAR_SIDE = 32


def class_images(labels, side, rng):
    """uint8 HWC images whose colour depends on the label, plus noise."""
    palette = rng.integers(0, 256, size=(int(labels.max()) + 1, 3))
    noise = rng.normal(0, 40, size=(len(labels), side, side, 3))
    return np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)


def write_cifar10_binary(folder, seed=0):
    """A cifar-10-batches-bin folder: full-size files (MindSpore's Cifar10Dataset fails on smaller
    ones when iterated), data_batch_2..5.bin links to data_batch_1.bin (the loader wants all five;
    their content matters little to a test or a timing)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in (CIFAR_TRAIN_FILES[0], "test_batch.bin"):
        labels = rng.integers(0, 10, size=CIFAR_RECORDS_PER_FILE).astype(np.uint8)
        # Records are a label byte then the image in CHW order.
        pixels = class_images(labels, CIFAR_SIDE, rng).transpose(0, 3, 1, 2).reshape(len(labels), -1)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(os.path.join(folder, name))
    for name in CIFAR_TRAIN_FILES[1:]:
        os.symlink(CIFAR_TRAIN_FILES[0], os.path.join(folder, name))
    return folder


def write_image_folder(root, class_num=3, per_class=4, side=24, seed=0):
    """An ImageNet-style tree: root/{train,val}/<class>/<n>.JPEG."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(class_num), per_class)
    for split in ("train", "val"):
        for index, (label, image) in enumerate(zip(labels, class_images(labels, side, rng))):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{index}.JPEG"))
    return root


def write_fashion_mnist(folder, train_count=40, test_count=20, seed=0):
    """The four gzip-compressed idx files of Fashion-MNIST, with few 28x28 grey images."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        labels = rng.integers(0, 10, size=count).astype(np.uint8)
        grey = class_images(labels, 28, rng)[..., 0]
        for kind, array in (("images-idx3", grey), ("labels-idx1", labels)):
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as stream:
                stream.write(idx_bytes(array))
    return folder
