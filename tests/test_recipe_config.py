"""Recipe configuration: YAML files, command-line overrides, one-line errors; lr schedules."""
import glob
import os

import mindspore as ms
import numpy as np
import pytest
import yaml

from recipe_data import REPO_ROOT, error_line

from slb_recipe import config as recipe_config
from slb_recipe.lr_schedule import get_lr
from slb_recipe import runtime as common
from slb_recipe.errors import RecipeError
from slb_recipe.runtime import resolve_device_target

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "resnet18_*_config.yaml")))


def test_shipped_configs_list_every_key_and_load():
    assert len(CONFIG_FILES) == 6
    for path in CONFIG_FILES:
        with open(path, encoding="utf-8") as stream:
            assert set(yaml.safe_load(stream)) == set(recipe_config.OPTIONS), path
        loaded = recipe_config.load_config(["--config_path", path])
        assert loaded.config_path == path


def test_cifar10_config_holds_the_seed_recipe():
    loaded = recipe_config.load_config(["--config_path", os.path.join(REPO_ROOT, "configs",
                                                                      "resnet18_cifar10_config.yaml")])
    assert (loaded.epoch_size, loaded.batch_size, loaded.lr_decay_mode) == (100, 32, "poly")
    assert (loaded.lr_init, loaded.lr_max, loaded.lr_end, loaded.warmup_epochs) == (0.01, 0.1, 0.00001, 5)
    assert (loaded.momentum, loaded.weight_decay, loaded.label_smooth_factor) == (0.9, 0.0001, 0.1)
    assert (loaded.train_image_size, loaded.quant_type) == (224, "W1")
    assert (loaded.t_start_val, loaded.t_start_time, loaded.t_end_time, loaded.t_factor) == (1.0, 0.2, 0.6, 1.2)


def test_command_line_overrides_convert_to_the_key_type():
    loaded = recipe_config.load_config(["--quant_type", "W4", "--epoch_size=2", "--shuffle", "false",
                                        "--lr_max", "1e-3", "--loss_scale", "1"])
    assert loaded.quant_type == "W4" and loaded.epoch_size == 2 and loaded.shuffle is False
    assert loaded.lr_max == 0.001 and loaded.loss_scale == 1.0 and isinstance(loaded.loss_scale, float)
    assert loaded.dataset == "digits"  # the default configuration


@pytest.mark.parametrize("argv, expected", [
    (["--epochs", "3"], ["'epochs'", "epoch_size", "known keys"]),
    (["--epoch_size", "two"], ["'epoch_size'", "an integer", "'two'"]),
    (["--quant_type", "W3"], ["'quant_type'", "W32, W1, W2, W4, W1A8, W2A8, W4A8", "'W3'"]),
    (["--device_target", "TPU"], ["'device_target'", "auto, CPU, GPU"]),
    (["--shuffle", "maybe"], ["'shuffle'", "True or False"]),
    (["--t_start_time", "1.5"], ["'t_start_time'", "<= 1"]),
    (["--t_start_time", "0.7", "--t_end_time", "0.5"], ["'t_end_time'", ">= t_start_time"]),
    (["--batch_size", "0"], ["'batch_size'", ">= 1"]),
    (["--t_start_val", "inf"], ["'t_start_val'", "a finite number >= 1e-12", "inf"]),
    (["--loss_scale", "nan"], ["'loss_scale'", "a finite number", "nan"]),
    (["--dataset", "cifar10"], ["'data_path'"]),
    (["--epoch_size"], ["'epoch_size'", "no value"]),
    (["W4"], ["expected --key value"]),
    (["--layer_bits", "conv1:3"], ["'layer_bits'", "1, 2 or 4", "'conv1:3'"]),
    (["--layer_bits", "conv1"], ["'layer_bits'", "pattern:bits"]),
    (["--search_start", "zero"], ["'search_start'", "float, random", "zero"]),
])
def test_bad_command_line_is_a_one_line_error(argv, expected):
    message = error_line(argv)
    assert message.startswith("error: ")
    for part in expected:
        assert part in message


def test_per_layer_keys_reach_the_algorithm():
    from slb_recipe.network import build_slb_algorithm  # pylint: disable=import-outside-toplevel
    loaded = recipe_config.load_config(["--exclude_layers", "conv1, end_point", "--layer_bits", "layer4.*:2,layer1.*:4",
                                        "--enable_weight_scale", "true", "--enable_dense_quant", "true"])
    text = repr(build_slb_algorithm(loaded, 0))
    assert "exclude_layers=('conv1', 'end_point')" in text
    assert "layer_bits={'layer4.*': QuantDtype.INT2, 'layer1.*': QuantDtype.INT4}" in text
    assert "enable_weight_scale=True" in text and "enable_dense_quant=True" in text


def test_search_start_reaches_the_algorithm():
    from slb_recipe.network import build_slb_algorithm  # pylint: disable=import-outside-toplevel
    assert "search_start='float'" in repr(build_slb_algorithm(recipe_config.load_config([]), 0))
    loaded = recipe_config.load_config(["--search_start", "random"])
    assert "search_start='random'" in repr(build_slb_algorithm(loaded, 0))


def test_bad_yaml_values_are_one_line_errors(tmp_path):
    cases = {"unknown: 1\n": "'unknown'", "epoch_size: true\n": "'epoch_size'", "use_label_smooth: 1\n":
             "'use_label_smooth'", "- a list\n": "mapping", "epoch_size: [\n": "not valid YAML"}
    for text, expected in cases.items():
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        assert expected in error_line(["--config_path", str(path)])
    assert "is not a file" in error_line(["--config_path", str(tmp_path / "missing.yaml")])


def test_yaml_that_is_not_utf8_or_has_a_non_string_key_is_a_one_line_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# r\u00e9glages\nepoch_size: 2\n".encode("latin-1"))
    assert "is not UTF-8 text" in error_line(["--config_path", str(path)])
    path.write_text("1: 2\n")
    assert "has the key 1; keys must be option names" in error_line(["--config_path", str(path)])
    path.write_text("loss_scale: .inf\n")
    assert "'loss_scale' must be a finite number" in error_line(["--config_path", str(path)])


def test_int_is_accepted_for_float_keys_in_yaml(tmp_path):
    path = tmp_path / "ints.yaml"
    path.write_text("dataset: digits\nlr_end: 0\nloss_scale: 128\n")
    loaded = recipe_config.load_config(["--config_path", str(path)])
    assert loaded.lr_end == 0.0 and loaded.loss_scale == 128.0
    assert loaded.epoch_size == recipe_config.OPTIONS["epoch_size"].default


def test_help_lists_every_key(capsys):
    with pytest.raises(SystemExit) as raised:
        recipe_config.parse_args(["--help"])
    assert raised.value.code == 0
    printed = capsys.readouterr().out
    assert all(f"--{key}:" in printed for key in recipe_config.OPTIONS)
    # The values a run with these arguments would use: the digits recipe's, not the options' own defaults.
    assert "; value 'digits'" in printed and "; value 10\n" in printed


def test_help_shows_the_values_of_the_given_config_and_command_line(capsys):
    cifar10 = os.path.join(REPO_ROOT, "configs", "resnet18_cifar10_config.yaml")
    with pytest.raises(SystemExit):
        recipe_config.parse_args(["--config_path", cifar10, "--epoch_size", "3", "-h"])
    printed = capsys.readouterr().out
    assert "--dataset: " in printed and "; value 'cifar10'" in printed and "; value 224" in printed
    assert "--epoch_size: total epochs of the run; an integer >= 1; value 3" in printed
    with pytest.raises(SystemExit, match="error: unknown config key 'epochs'"):
        recipe_config.parse_args(["--epochs", "3", "--help"])


def test_auto_device_target_follows_what_mindspore_can_use():
    assert resolve_device_target("auto") == ("GPU" if ms.hal.is_available("GPU") else "CPU")
    assert resolve_device_target("CPU") == "CPU"


def test_gpu_that_mindspore_cannot_use_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(common.ms.hal, "is_available", lambda _target: False)
    with pytest.raises(RecipeError, match="device_target is GPU but this MindSpore cannot use a GPU here"):
        resolve_device_target("GPU")
    assert resolve_device_target("auto") == "CPU"


def test_parallel_workers_are_capped_at_the_cpu_count(monkeypatch, capsys):
    config = recipe_config.load_config(["--num_parallel_workers", "4"])
    monkeypatch.setattr(common.os, "cpu_count", lambda: 2)
    assert common.fit_workers_to_machine(config).num_parallel_workers == 2
    assert capsys.readouterr().out == "num_parallel_workers 4 lowered to 2, the CPU count of this machine\n"
    config = recipe_config.load_config(["--num_parallel_workers", "2"])
    assert common.fit_workers_to_machine(config) is config and capsys.readouterr().out == ""


def test_poly_schedule_warms_up_then_decays_to_lr_end():
    lrs = get_lr(0.01, 0.0001, 0.1, warmup_epochs=2, total_epochs=10, steps_per_epoch=5, lr_decay_mode="poly")
    assert lrs.dtype == np.float32 and lrs.shape == (50,)
    np.testing.assert_allclose(lrs[:10], np.linspace(0.01, 0.1, 11)[:10], rtol=1e-6)
    assert lrs[10] == pytest.approx(0.1)
    assert np.all(np.diff(lrs[10:]) < 0)
    assert lrs[-1] == pytest.approx(0.0001 + 0.0999 * (1 / 40) ** 2, rel=1e-5)


@pytest.mark.parametrize("mode", ["cosine", "linear"])
def test_smooth_schedules_fall_monotonically_from_lr_max(mode):
    lrs = get_lr(0.0, 0.0, 1.0, warmup_epochs=0, total_epochs=4, steps_per_epoch=10, lr_decay_mode=mode)
    assert lrs[0] == pytest.approx(1.0) and np.all(np.diff(lrs) < 0) and lrs[-1] < 0.1


def test_steps_schedule_divides_by_ten_at_30_60_80_percent():
    lrs = get_lr(0.0, 0.0, 1.0, warmup_epochs=0, total_epochs=10, steps_per_epoch=1, lr_decay_mode="steps")
    np.testing.assert_allclose(lrs, [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="lr_decay_mode"):
        get_lr(0.0, 0.0, 1.0, 0, 2, 2, "exp")
    with pytest.raises(ValueError, match="warmup_epochs"):
        get_lr(0.0, 0.0, 1.0, 3, 2, 2, "poly")
