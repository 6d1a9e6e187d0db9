"""Hostile input to the recipe (issue 19): each refused with one line naming the key, path or value,
before data is loaded or work is lost."""
import errno
import gzip
import os

import mindspore as ms
import numpy as np
import pytest

from recipe_data import error_line, exit_message, shared_data, tiny_args, write_fashion_mnist

from slb_recipe import checkpoints as common
from slb_recipe import evaluate as evaluation
from slb_recipe import export
from slb_recipe import sweep
from slb_recipe import train
from slb_recipe.checkpoints import checkpoint_record, epoch_reached
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


@pytest.mark.parametrize("overrides, shown", [
    ({"t_factor": 10, "t_end_val": 0.0, "epoch_size": 100, "warmup_epochs": 0}, "above the largest temperature 1e+30"),
    ({"exclude_layers": "*"}, "has no layer for SLB to quantize"),
], ids=["t_factor", "exclude_everything"])
def test_settings_slb_refuses_stop_training_before_data_is_read(tmp_path, overrides, shown):
    # The data folder does not exist: had the data been read first, the error would be about it.
    args = tiny_args(tmp_path, dataset="cifar10", data_path=str(tmp_path / "no_data"), quant_type="W1", **overrides)
    message = exit_message(train.main, args)
    assert message.startswith("error: SLB refuses these settings: ") and shown in message


def test_checkpoint_records_the_settings_that_decide_slbs_parameters(tmp_path):
    args = tiny_args(tmp_path, quant_type="W1", epoch_size=1, warmup_epochs=0, enable_weight_scale=True)
    checkpoint = train.main(args)["checkpoint"]
    assert bool(ms.load_checkpoint(checkpoint)["enable_weight_scale"].asnumpy())
    without_scale = tiny_args(tmp_path, quant_type="W1", enable_weight_scale=False, checkpoint_file_path=checkpoint)
    expected = f"'{checkpoint}' was trained with enable_weight_scale True, this run has enable_weight_scale False"
    for main in (evaluation.main, export.main):
        assert f"checkpoint_file_path {expected}" in exit_message(main, without_scale)
    resumed = tiny_args(tmp_path / "resumed", quant_type="W1", epoch_size=2, enable_weight_scale=False,
                        pre_trained=checkpoint)
    assert f"pre_trained {expected}" in exit_message(train.main, resumed)


def test_recorded_settings_compare_in_a_canonical_form():
    config = load_config(["--quant_type", "W2", "--exclude_layers", " conv1 ,end_point", "--layer_bits",
                          "layer4.*: 4"])
    record = checkpoint_record(config)
    assert (record["exclude_layers"], record["layer_bits"], record["enable_dense_quant"]) == \
        ("conv1,end_point", "layer4.*:4", False)
    # The float baseline has no SLB parameters: none of SLB's settings matters to its checkpoint.
    assert "enable_weight_scale" not in checkpoint_record(load_config(["--quant_type", "W32"]))


def checkpoint_names(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".ckpt"))


def test_new_run_in_a_folder_holding_another_runs_checkpoints_is_refused(tmp_path):
    first = tiny_args(tmp_path, quant_type="W32", epoch_size=3, keep_checkpoint_max=1)
    checkpoint = train.main(first)["checkpoint"]
    folder = tmp_path / "checkpoint"
    second = tiny_args(tmp_path, quant_type="W32", epoch_size=2, keep_checkpoint_max=1, seed=7)
    assert exit_message(train.main, second) == (
        f"error: checkpoint folder '{folder}' holds resnet18_W32-3.ckpt of an earlier W32 run: resume it "
        f"(pre_trained {checkpoint}) or choose another output_path")
    assert checkpoint_names(folder) == ["resnet18_W32-3.ckpt"]


def test_resume_never_overwrites_later_checkpoints_nor_deletes_ones_it_did_not_write(tmp_path):
    folder = tmp_path / "checkpoint"
    train.main(tiny_args(tmp_path, quant_type="W32", epoch_size=2))
    earlier = str(folder / "resnet18_W32-1.ckpt")
    message = exit_message(train.main, tiny_args(tmp_path, quant_type="W32", epoch_size=3, pre_trained=earlier))
    assert "holds resnet18_W32-2.ckpt, beyond epoch 1 that pre_trained reached, which this run would overwrite" \
        in message
    os.remove(folder / "resnet18_W32-2.ckpt")
    # Rotation to one checkpoint deletes this run's own epoch 2, not epoch 1 of the run it resumed.
    train.main(tiny_args(tmp_path, quant_type="W32", epoch_size=3, keep_checkpoint_max=1, pre_trained=earlier))
    assert checkpoint_names(folder) == ["resnet18_W32-1.ckpt", "resnet18_W32-3.ckpt"]


def test_full_disk_at_a_checkpoint_is_one_line_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    save = ms.save_checkpoint

    def disk_full_at_epoch_2(cell, path, **kwargs):
        if "-2." in os.path.basename(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(cell, path, **kwargs)

    monkeypatch.setattr(common.ms, "save_checkpoint", disk_full_at_epoch_2)
    folder = tmp_path / "checkpoint"
    assert exit_message(train.main, tiny_args(tmp_path, quant_type="W32")) == (
        f"error: checkpoint '{folder / 'resnet18_W32-2.ckpt'}' could not be written (No space left on device); "
        f"the previous checkpoint '{folder / 'resnet18_W32-1.ckpt'}' is intact")
    assert checkpoint_names(folder) == ["resnet18_W32-1.ckpt"]


def test_export_into_an_output_path_that_is_a_file_is_one_line(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert exit_message(export.main, tiny_args(taken, quant_type="W32")) == \
        f"error: output_path '{taken}' is not a writable folder: File exists"


def test_sweep_reruns_a_run_whose_result_file_is_unreadable(tmp_path, capsys):
    folder = tmp_path / "W32" / "seed_1"
    (folder / "checkpoint").mkdir(parents=True)
    (folder / sweep.RUN_RESULT_NAME).write_text("")
    stale = folder / "checkpoint" / "resnet18_W32-1.ckpt"
    stale.write_bytes(b"an interrupted attempt's")
    result = sweep.main(tiny_args(tmp_path, epoch_size=1, warmup_epochs=0, sweep_quant_types="W32", sweep_seeds="1"))
    printed = capsys.readouterr().out
    assert f"{folder / sweep.RUN_RESULT_NAME} is not a finished run's result (JSONDecodeError)" in printed
    assert f"removed {stale}, left by an interrupted attempt of this run" in printed
    assert result["runs"][0]["checkpoint"] == str(stale)
    assert epoch_reached(ms.load_checkpoint(str(stale))) == 1
