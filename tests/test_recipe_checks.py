"""Hostile input to the recipe (issue 19): each refused with one line naming the key, path or value,
before data is loaded or work is lost."""
import gzip
import os

import numpy as np
import pytest

from recipe_data import error_line, shared_data, write_fashion_mnist

from slb_recipe.config import load_config
from slb_recipe.dataset import CIFAR_TRAIN_FILES, DataPathError, create_dataset, idx_bytes


def test_yaml_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("epoch_size: 2\nwidth: 4\nepoch_size: 3\n")
    assert error_line(["--config_path", str(path)]) == (
        f"error: config_path '{path}' gives the key 'epoch_size' twice (lines 1 and 3); give each key once")


@pytest.mark.parametrize("argv", [["--seed", "4294967296"], ["--sweep_seeds", "1,4294967296"]])
def test_seed_beyond_32_bits_is_refused(argv):
    assert "an integer >= 0 <= 4294967295" in error_line(argv)


@pytest.mark.parametrize("file_name", ["", ".hidden", "sub/name"])
def test_file_name_must_name_a_visible_file(file_name):
    assert f"config key 'file_name' must be a file name not starting with '.' and without '/', got {file_name!r}" \
        in error_line(["--file_name", file_name, "--file_format", "SLB"])


@pytest.mark.parametrize("key, value", [("output_path", "my runs"), ("file_name", "net#1")])
def test_mindir_path_characters_mindspore_refuses_are_refused_before_any_work(key, value):
    message = error_line([f"--{key}", value, "--file_format", "MINDIR"])
    assert f"config key '{key}' must hold only letters, digits and @ _ - . : / \\ " in message
    assert message.endswith(f"got {value!r}")
    # The packed file is written by mindspore_slb itself, which takes any name.
    assert getattr(load_config([f"--{key}", value, "--file_format", "SLB"]), key) == value


def test_cifar10_training_file_beyond_the_five_is_refused(tmp_path, tmp_path_factory):
    cifar10 = shared_data("cifar10", tmp_path_factory)
    for name in CIFAR_TRAIN_FILES + ("test_batch.bin",):
        os.symlink(os.path.join(cifar10, name), tmp_path / name)
    os.symlink(os.path.join(cifar10, CIFAR_TRAIN_FILES[0]), tmp_path / "data_batch_6.bin")
    with pytest.raises(DataPathError, match=r"holds data_batch_6.bin besides the five CIFAR-10 training files "
                                            r"data_batch_1..5.bin, and MindSpore's reader would train on it too"):
        create_dataset("cifar10", str(tmp_path), True, batch_size=4, image_size=16)


@pytest.mark.parametrize("shape", [(300, 0, 28), (0, 28, 28)], ids=["empty_dimension", "no_images"])
def test_fashion_mnist_images_with_an_empty_dimension_are_refused(tmp_path, shape):
    folder = write_fashion_mnist(str(tmp_path), train_count=6, test_count=4)
    for name, array in (("images-idx3", np.zeros(shape, np.uint8)), ("labels-idx1", np.zeros(shape[0], np.uint8))):
        with gzip.open(tmp_path / f"train-{name}-ubyte.gz", "wb") as stream:
            stream.write(idx_bytes(array))
    with pytest.raises(DataPathError) as raised:
        create_dataset("fashion_mnist", folder, True, batch_size=4, image_size=16)
    assert str(raised.value) == (f"idx file '{tmp_path / 'train-images-idx3-ubyte.gz'}' declares shape {shape}: "
                                 "an empty dimension, so it holds no data")
