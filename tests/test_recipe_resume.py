"""Resume, interruption, divergence, the output folder and progress: the run-control promises of train.py."""
import os
from types import SimpleNamespace

import mindspore as ms
import numpy as np
import pytest

from recipe_data import interrupt_after_checkpoint, network_state, tiny_args

from slb_recipe import callbacks
from slb_recipe import checkpoints as recipe
from slb_recipe import train
from slb_recipe.checkpoints import epoch_reached
from slb_recipe.config import ConfigError, load_config
from slb_recipe.output_folder import claimed_folder

# Shuffled: each epoch's data order must follow from (seed, epoch), not from the process's history.
RESUME_SETTINGS = {"quant_type": "W1", "epoch_size": 4, "t_start_time": 0.25, "t_end_time": 0.75, "shuffle": True}


def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    straight = train.main(tiny_args(tmp_path / "straight", **RESUME_SETTINGS))
    # The digits config's schedule: 16 at the start, x2 per epoch from epoch 2 to 64 at the hard switch.
    assert [record["temperature"] for record in straight["history"]] == pytest.approx([16.0, 32.0, 64.0, 64.0])

    split_args = tiny_args(tmp_path / "split", **RESUME_SETTINGS)
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, epoch=2)
        with pytest.raises(KeyboardInterrupt):
            train.main(split_args)
    second = os.path.join(tmp_path, "split", "checkpoint", "resnet18_W1-2.ckpt")
    assert epoch_reached(ms.load_checkpoint(second)) == 2
    resumed = train.main(split_args + ["--pre_trained", second])

    assert [record["epoch"] for record in resumed["history"]] == [3, 4]
    for expected, got in zip(straight["history"][2:], resumed["history"]):
        assert (got["temperature"], got["lr"], got["loss"]) == (expected["temperature"], expected["lr"],
                                                                 expected["loss"])
    want, have = network_state(straight["checkpoint"]), network_state(resumed["checkpoint"])
    assert set(want) == set(have) and any(name.startswith("moments.") for name in want)
    for name, value in want.items():
        np.testing.assert_array_equal(have[name], value, err_msg=name)


def test_interrupted_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    args = tiny_args(tmp_path, quant_type="W32")
    save = ms.save_checkpoint

    def save_then_die(cell, path, **kwargs):
        save(cell, path, **kwargs)
        if "-2." in os.path.basename(path):
            with open(path, "r+b") as stream:  # a file cut short by the kill
                stream.truncate(100)
            raise KeyboardInterrupt

    monkeypatch.setattr(recipe.ms, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.main(args)
    folder = os.path.join(tmp_path, "checkpoint")
    assert [epoch for epoch, _ in recipe.saved_checkpoints(folder, "W32")] == [1]
    assert not [name for name in os.listdir(folder) if ".partial." in name]
    assert epoch_reached(ms.load_checkpoint(os.path.join(folder, "resnet18_W32-1.ckpt"))) == 1


def test_diverging_loss_stops_with_epoch_and_step(tmp_path):
    args = tiny_args(tmp_path, quant_type="W32", lr_init=1e30, lr_max=1e30, loss_scale=1.0)
    with pytest.raises(SystemExit) as raised:
        train.main(args)
    message = str(raised.value.code)
    assert "\n" not in message
    assert message.startswith("error: training stopped: loss is ")
    assert "at epoch 1, step 2 of 2" in message or "at epoch 2, step" in message


def test_resume_from_a_finished_run_is_refused(tmp_path):
    args = tiny_args(tmp_path, quant_type="W32", epoch_size=1, warmup_epochs=0)
    checkpoint = train.main(args)["checkpoint"]
    with pytest.raises(SystemExit, match="already reached epoch 1 of epoch_size 1"):
        train.main(args + ["--pre_trained", checkpoint])


def test_output_path_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    output = tmp_path / "taken"
    output.write_text("not a folder")
    with pytest.raises(SystemExit) as raised:
        train.main(tiny_args(output, quant_type="W32"))
    message = str(raised.value.code)
    assert "\n" not in message and str(output) in message and "is not a writable folder" in message
    assert "epoch" not in capsys.readouterr().out


def test_a_second_run_on_the_same_output_is_refused_until_the_first_ends(tmp_path):
    folder = str(tmp_path / "checkpoint")
    with claimed_folder(folder):
        with pytest.raises(SystemExit, match="is in use by another training run"):
            train.main(tiny_args(tmp_path, quant_type="W32"))
    with claimed_folder(folder):
        pass


def test_stale_partial_checkpoints_are_removed_when_a_run_claims_the_folder(tmp_path):
    stale = tmp_path / "resnet18_W1-3.partial.ckpt"
    stale.write_bytes(b"cut short")
    kept = tmp_path / "resnet18_W1-2.ckpt"
    kept.write_bytes(b"complete")
    with claimed_folder(str(tmp_path)):
        assert not stale.exists() and kept.exists()


def report_steps(report, losses, clock):
    """Drive an EpochReport through one epoch's steps without training; returns the progress lines."""
    args = SimpleNamespace(cur_epoch_num=1, cur_step_num=0, net_outputs=None)
    context = SimpleNamespace(original_args=lambda: args)
    report.on_train_epoch_begin(context)
    for loss in losses:
        clock["now"] += 10.0
        args.cur_step_num += 1
        args.net_outputs = ms.Tensor(np.float32(loss))
        report.on_train_step_end(context)


def test_progress_lines_within_an_epoch(capsys):
    clock = {"now": 0.0}
    report = callbacks.EpochReport(None, np.zeros(6, np.float32), 6, has_trained_epoch=2, epoch_size=5,
                                   batch_size=8, progress_interval_s=25.0, clock=lambda: clock["now"])
    report_steps(report, [4.0, 2.0, 3.0, 1.0, 5.0, 6.0], clock)
    # A step every 10 s: a line at 30 s; the one due at 60 s is the last step's, left to the epoch summary.
    assert capsys.readouterr().out.splitlines() == [
        "epoch 3/5 step 3/6: mean loss 3.000000, 0.8 images/s, about 30 s left in the epoch",
    ]
    silent = callbacks.EpochReport(None, np.zeros(6, np.float32), 6, 0, 5, batch_size=8, progress_interval_s=0.0,
                                   clock=lambda: clock["now"])
    report_steps(silent, [1.0] * 5, clock)
    assert capsys.readouterr().out == ""


def test_epoch_line_times_batchnorm_calibration_apart_from_the_training_steps(capsys):
    """The callbacks before the report (BatchNorm calibration) run after the epoch's last step: their
    time is shown apart, not folded into the epoch time and the time per step."""
    clock = {"now": 0.0}
    report = callbacks.EpochReport(ms.nn.Dense(2, 2), np.full(3, 0.1, np.float32), 3, has_trained_epoch=0,
                                   epoch_size=2, clock=lambda: clock["now"], epoch_end_work="BatchNorm calibration")
    report_steps(report, [1.0, 1.0, 1.0], clock)
    clock["now"] += 4.5  # the calibration
    report.on_train_epoch_end(SimpleNamespace(original_args=lambda: SimpleNamespace(cur_epoch_num=1)))
    record = report.history[-1]
    assert (record["epoch_time_s"], record["step_time_ms"], record["epoch_end_s"]) == (30.0, 10000.0, 4.5)
    assert record["decidedness"] is None
    assert ("epoch time 30.00 s, per step 10000.0 ms, temperature n/a, lr 0.1, then BatchNorm calibration 4.50 s"
            in capsys.readouterr().out)


@pytest.mark.parametrize("mode_name", ["GRAPH", "PYNATIVE"])
def test_fused_logit_update_trains_what_nn_momentum_trains(tmp_path, mode_name):
    """The recipe's default optimizer (SlbMomentum) against nn.Momentum: the same checkpoint entries,
    so either resumes the other's run, and the same weights to float32 rounding."""
    settings = dict(RESUME_SETTINGS, epoch_size=2, quant_type="W2", mode_name=mode_name)
    fused = train.main(tiny_args(tmp_path / "fused", **settings))
    plain = train.main(tiny_args(tmp_path / "plain", fused_logit_update=False, **settings))
    want, have = network_state(plain["checkpoint"]), network_state(fused["checkpoint"])
    assert set(want) == set(have) and any(name.endswith("weight_logits") for name in want)
    for name, value in want.items():
        np.testing.assert_allclose(have[name], value, rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("overrides", [{"fused_logit_update": False}, {"run_distribute": True}])
def test_bfloat16_search_state_needs_the_fused_update(tmp_path, overrides):
    with pytest.raises(ConfigError, match="'search_dtype' 'bfloat16' needs fused_logit_update True and "
                                          "run_distribute False"):
        load_config(tiny_args(tmp_path, search_dtype="bfloat16", **overrides))


def test_bfloat16_search_state_run_saves_and_resumes(tmp_path):
    """search_dtype bfloat16: the checkpoint holds the logits and their momentum in bfloat16, and a run
    resumes from it (rounding draws follow the optimizer's step count, so not bit for bit)."""
    settings = dict(RESUME_SETTINGS, epoch_size=3, quant_type="W2", search_dtype="bfloat16")
    first = train.main(tiny_args(tmp_path / "run", **dict(settings, epoch_size=2)))
    saved = ms.load_checkpoint(first["checkpoint"])
    logits = [name for name in saved if name.endswith("weight_logits") and not name.startswith("moments.")]
    assert logits and all(saved[name].dtype == ms.bfloat16 and saved["moments." + name].dtype == ms.bfloat16
                          for name in logits)
    resumed = train.main(tiny_args(tmp_path / "resumed", **settings) + ["--pre_trained", first["checkpoint"]])
    assert [record["epoch"] for record in resumed["history"]] == [3]
    assert np.isfinite(resumed["history"][0]["loss"])
