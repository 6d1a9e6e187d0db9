"""Helpers of the recipe tests: tiny generated data sets, tiny runs."""
import gzip
import os

import numpy as np
import pytest
from PIL import Image

# MindSpore's Cifar10Dataset reads files of exactly this many records: smaller ones fail when iterated.
from slb_recipe.config import parse_args
from slb_recipe.dataset import CIFAR_RECORDS_PER_FILE, CIFAR_TRAIN_FILES, idx_bytes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS_DIR = os.path.join(REPO_ROOT, "scripts")

CIFAR_SIDE = 32


def class_images(labels, side, rng):
    """uint8 HWC images whose colour depends on the label, plus noise: learnable, yet not trivial."""
    palette = rng.integers(0, 256, size=(int(labels.max()) + 1, 3))
    noise = rng.normal(0, 40, size=(len(labels), side, side, 3))
    return np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)


def write_cifar10_binary(folder, seed=0):
    """A cifar-10-batches-bin folder: full-size files, data_batch_2..5.bin links to data_batch_1.bin
    (the loader wants all five; their content matters little to the tests)."""
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


def tiny_args(output_path, **overrides):
    """Command-line arguments of a tiny, deterministic run on the digits data."""
    settings = {
        "output_path": str(output_path), "device_target": "CPU", "width": 4, "batch_size": 8,
        "train_image_size": 16, "eval_image_size": 16, "train_num_samples": 16, "eval_num_samples": 16,
        "epoch_size": 2, "warmup_epochs": 1, "save_checkpoint_epochs": 1, "keep_checkpoint_max": 10,
        "num_parallel_workers": 1, "shuffle": False, "mode_name": "PYNATIVE",
        # Drawing costs seconds a run; tests/test_plots.py and the sweep test turn it on.
        "plots": False,
    }
    settings.update(overrides)
    args = []
    for key, value in settings.items():
        args += [f"--{key}", str(value)]
    return args


_GENERATED = {}


def shared_data(kind, tmp_path_factory):
    """Generate each kind of data ('cifar10', 'imagenet' or 'fashion_mnist') once per test session;
    digits needs no files."""
    if kind == "digits":
        return ""
    if kind not in _GENERATED:
        write = {"cifar10": write_cifar10_binary, "imagenet": write_image_folder,
                 "fashion_mnist": write_fashion_mnist}[kind]
        _GENERATED[kind] = write(str(tmp_path_factory.mktemp(kind)))
    return _GENERATED[kind]


def error_line(argv):
    """The one-line message with which parsing argv stops a script."""
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)
    message = str(raised.value.code)
    assert "\n" not in message
    return message


def exit_message(main, argv):
    """The one-line message with which a script's main(argv) stops."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    message = str(raised.value.code)
    assert "\n" not in message and message.startswith("error: ")
    return message
