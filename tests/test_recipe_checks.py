"""Hostile input to the recipe (issue 19): each refused with one line naming the key, path or value,
before data is loaded or work is lost."""
import pytest

from recipe_data import error_line

from slb_recipe.config import load_config


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
