"""Quantizing a trained network with the recipe (float_checkpoint), the schedule's t_end_val key, and
evaluation during the soft phase describing the hard network."""
import os
import re

import mindspore as ms
import numpy as np
import pytest

from recipe_data import interrupt_after_checkpoint, network_state, tiny_args

from slb_recipe import train
from slb_recipe.config import ConfigError, load_config
from mindspore_slb.quantizer import nearest_codes, normalized_weight


@pytest.fixture(scope="module")
def float_run(tmp_path_factory):
    """A finished W32 run of the tiny recipe: (its output folder, its last checkpoint)."""
    folder = tmp_path_factory.mktemp("float")
    result = train.main(tiny_args(folder, quant_type="W32"))
    return folder, result["checkpoint"]


@pytest.mark.parametrize("quant_type", ["W2", "W2_STE"])
def test_a_quantized_run_starts_from_the_float_checkpoint(float_run, tmp_path, quant_type):
    _, checkpoint = float_run
    stored = {name: value.asnumpy() for name, value in ms.load_checkpoint(checkpoint).items()
              if not isinstance(value, str)}
    seen = {}

    def look(net):
        for name, param in net.parameters_and_names():
            seen[name] = param.asnumpy().copy()
        seen["codes"] = {path: cell.weight_codes() for path, cell in net.cells_and_names()
                         if hasattr(cell, "weight_codes")}

    args = tiny_args(tmp_path, quant_type=quant_type, float_checkpoint=checkpoint, epoch_size=1)
    train.run(load_config(args), prepare_network=look)
    # BatchNorm statistics, BatchNorm and classifier parameters come from the float network ...
    for name in ("bn1.moving_mean", "bn1.gamma", "end_point.weight"):
        np.testing.assert_array_equal(seen[name], stored[name], err_msg=name)
    # ... and every quantized conv chose its trained float weight's nearest candidates.
    assert "layer1.0.conv1" in seen["codes"]
    for path, codes in seen["codes"].items():
        expected = nearest_codes(normalized_weight(stored[f"{path}.weight"], 2, False)[0], 2)
        np.testing.assert_array_equal(codes, expected, err_msg=path)


def test_a_float_start_of_another_recipe_or_precision_is_refused_before_training(float_run, tmp_path):
    folder, checkpoint = float_run
    for overrides, words in (({"width": 8}, "trained with width 4, a float start needs width 8"),
                             ({"class_num": 5}, "trained with class_num 10, a float start needs class_num 5")):
        with pytest.raises(SystemExit, match=words):
            train.main(tiny_args(tmp_path / str(len(words)), quant_type="W1", float_checkpoint=checkpoint,
                                 **overrides))
    quantized = train.main(tiny_args(tmp_path / "w1", quant_type="W1", epoch_size=1))["checkpoint"]
    with pytest.raises(SystemExit, match="float_checkpoint '.*' was trained with quant_type W1, a float start "
                                         "needs quant_type W32"):
        train.main(tiny_args(tmp_path / "again", quant_type="W1", float_checkpoint=quantized))
    with pytest.raises(SystemExit, match="float_checkpoint '.*none.ckpt' is not a file"):
        train.main(tiny_args(tmp_path / "missing", quant_type="W1",
                             float_checkpoint=os.path.join(folder, "none.ckpt")))
    assert not os.path.exists(tmp_path / "again" / "checkpoint" / "resnet18_W1-1.ckpt")


def test_t_end_val_sets_the_temperature_at_the_hard_switch(tmp_path):
    history = train.main(tiny_args(tmp_path, quant_type="W1", epoch_size=5, t_start_val=1.0, t_start_time=0.2,
                                   t_end_time=0.8, t_end_val=27.0))["history"]
    # Rising from epoch 2 to the hard switch at epoch 4: x3 per epoch reaches 27 there.
    assert [record["temperature"] for record in history] == pytest.approx([1.0, 3.0, 9.0, 27.0, 27.0])
    assert all(0.5 <= record["decidedness"] <= 1.0 for record in history)
    assert history[-1]["decidedness"] > history[0]["decidedness"]


@pytest.mark.parametrize("overrides, words", [
    ({"t_end_val": 8.0, "t_factor": 2.0}, "'t_factor' (2.0) is unused while t_end_val is 8.0"),
    ({"t_start_val": 1.0, "t_end_val": 0.5}, "'t_end_val' must be 0 or >= t_start_val (1.0), got 0.5"),
    ({"t_end_val": -1.0}, "'t_end_val' must be a finite number >= 0"),
])
def test_schedule_keys_of_the_recipe_are_checked(overrides, words, tmp_path):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_config(tiny_args(tmp_path, **overrides))


def test_t_factor_still_rises_by_its_factor_with_t_end_val_off(tmp_path):
    config = load_config(tiny_args(tmp_path, t_end_val=0.0, t_factor=2.0))
    assert (config.t_end_val, config.t_factor) == (0.0, 2.0)


def test_evaluation_in_the_soft_phase_calibrates_batchnorm_for_the_hard_network(tmp_path, monkeypatch):
    calls = []
    from mindspore_slb import BatchNormCalibrator  # pylint: disable=import-outside-toplevel
    calibrate = BatchNormCalibrator.calibrate

    def recording(self, dataset, num_batches=None):
        calls.append(num_batches)
        return calibrate(self, dataset, num_batches)

    monkeypatch.setattr(BatchNormCalibrator, "calibrate", recording)
    history = train.main(tiny_args(tmp_path, quant_type="W1", epoch_size=3, t_start_val=1.0, t_start_time=0.0,
                                   t_end_time=0.67, t_end_val=4.0, eval_interval=1))["history"]
    # Soft in epoch 1, hard from epoch 2 on: only the first evaluation needs the re-estimate.
    from mindspore_slb.callbacks import CALIBRATION_BATCHES  # pylint: disable=import-outside-toplevel
    assert calls == [CALIBRATION_BATCHES]
    assert all("eval" in record for record in history)


# float_epochs: the float network trains first, within the run's schedule, and the quantized one takes over.
FLOAT_FIRST = {"quant_type": "W2", "epoch_size": 3, "float_epochs": 2, "warmup_epochs": 1, "shuffle": True,
               "t_start_time": 0.67, "t_end_time": 1.0}


@pytest.mark.parametrize("mode_name", ["GRAPH", "PYNATIVE"])
def test_float_epochs_train_the_float_network_then_quantize_it_on_one_schedule(tmp_path, mode_name):
    seen = {}

    def look(net):
        seen.update({name: param.asnumpy().copy() for name, param in net.parameters_and_names()})
        seen["codes"] = {path: cell.weight_codes() for path, cell in net.cells_and_names()
                         if hasattr(cell, "weight_codes")}

    first = train.run(load_config(tiny_args(tmp_path / "first", mode_name=mode_name, **FLOAT_FIRST)),
                      prepare_network=look)
    float_run = train.main(tiny_args(tmp_path / "float", mode_name=mode_name,
                                     **{**FLOAT_FIRST, "quant_type": "W32"}))
    folder = tmp_path / "first" / "checkpoint"
    assert sorted(os.listdir(folder)) == [".train.lock", "resnet18_W2-3.ckpt", "resnet18_W32-1.ckpt",
                                          "resnet18_W32-2.ckpt"]
    # The float epochs are those of a W32 run (float_epochs is ignored there) with the same schedule ...
    assert [record["epoch"] for record in float_run["history"]] == [1, 2, 3]
    float_after_2 = network_state(folder / "resnet18_W32-2.ckpt")
    for name, value in network_state(tmp_path / "float" / "checkpoint" / "resnet18_W32-2.ckpt").items():
        np.testing.assert_array_equal(float_after_2[name], value, err_msg=name)
    # ... the quantized network starts from the float network they trained ...
    for name in ("bn1.moving_mean", "bn1.gamma", "end_point.weight"):
        np.testing.assert_array_equal(seen[name], float_after_2[name], err_msg=name)
    for path, codes in seen["codes"].items():
        expected = nearest_codes(normalized_weight(float_after_2[f"{path}.weight"], 2, False)[0], 2)
        np.testing.assert_array_equal(codes, expected, err_msg=path)
    # ... and trains the run's last epoch at the schedule's learning rate there.
    assert [record["epoch"] for record in first["history"]] == [3]
    assert first["history"][0]["lr"] == float_run["history"][2]["lr"]


@pytest.mark.parametrize("stopped_after", [1, 2])
def test_a_float_first_run_interrupted_in_either_part_resumes_to_the_same_network(tmp_path, monkeypatch,
                                                                                   stopped_after):
    straight = train.main(tiny_args(tmp_path / "straight", **FLOAT_FIRST))
    args = tiny_args(tmp_path / "split", **FLOAT_FIRST)
    with monkeypatch.context() as patch:
        interrupt_after_checkpoint(patch, epoch=stopped_after)
        with pytest.raises(KeyboardInterrupt):
            train.main(args)
    saved = str(tmp_path / "split" / "checkpoint" / f"resnet18_W32-{stopped_after}.ckpt")
    with pytest.raises(SystemExit, match=f"holds resnet18_W32-{stopped_after}.ckpt of an earlier W32 run"):
        train.main(args)
    resumed = train.main(args + ["--pre_trained", saved])
    assert [record["epoch"] for record in resumed["history"]] == [3]
    want, have = network_state(straight["checkpoint"]), network_state(resumed["checkpoint"])
    assert set(want) == set(have)
    for name, value in want.items():
        np.testing.assert_array_equal(have[name], value, err_msg=name)
    # Resuming the quantized network's checkpoint leaves the float part alone.
    with pytest.raises(SystemExit, match="already reached epoch 3 of epoch_size 3"):
        train.main(args + ["--pre_trained", resumed["checkpoint"]])


@pytest.mark.parametrize("overrides, words", [
    ({"float_epochs": 3}, "'float_epochs' must be < epoch_size (3), leaving the quantized network at least one "
                          "epoch, got 3"),
    ({"float_checkpoint": "float.ckpt"}, "'float_epochs' (2) trains a float network while float_checkpoint "
                                         "'float.ckpt' gives one (add --float_epochs 0 to start from it)"),
    ({"search_start": "random"}, "'float_epochs' (2) needs search_start 'float'"),
])
def test_float_epochs_is_checked_against_the_keys_it_depends_on(overrides, words, tmp_path):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config(tiny_args(tmp_path, **{**FLOAT_FIRST, **overrides}))
