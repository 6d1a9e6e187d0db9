"""Helpers of the recipe tests: tiny generated data sets, tiny runs."""
import os

import mindspore as ms
import pytest

from slb_recipe import callbacks
from slb_recipe.config import parse_args
# The data writers live with the recipe, shared with benchmarks/recipe_benchmark.py.
from slb_recipe.synthetic_data import write_cifar10_binary, write_fashion_mnist, write_image_folder  # noqa: F401

from tiny_nets import REPO_ROOT

SCRIPTS_DIR = os.path.join(REPO_ROOT, "scripts")
# The first bytes of every PNG file.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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


# Both differ between a straight and a resumed run by design: the resumed optimizer holds only the
# remaining slice of the learning-rate array and counts its steps from zero.
SCHEDULE_STATE = ("learning_rate", "global_step")


def network_state(checkpoint):
    """A checkpoint's network and momentum arrays, without SCHEDULE_STATE."""
    return {name: value.asnumpy() for name, value in ms.load_checkpoint(str(checkpoint)).items()
            if name not in SCHEDULE_STATE and not isinstance(value, str)}


def interrupt_after_checkpoint(monkeypatch, epoch):
    """Make the run stop like Ctrl-C right after it saved the checkpoint of `epoch`."""
    save = callbacks.CheckpointSaver.on_train_epoch_end

    def save_then_interrupt(self, run_context):
        save(self, run_context)
        if self.has_trained_epoch + run_context.original_args().cur_epoch_num == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.CheckpointSaver, "on_train_epoch_end", save_then_interrupt)


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
