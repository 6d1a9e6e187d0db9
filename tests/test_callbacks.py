"""callbacks(), callback() and the temperature schedule they run."""
import logging

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from mindspore.train.callback import Callback

from mindspore_slb import BNCalibration, QuantDtype, SlbQuantAwareTraining, TemperatureScheduler, calibrate_batchnorm
from mindspore_slb.config import SlbConfig, temperature_at_epoch
from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer
from tiny_nets import ConvBnNet, batches, train_model


def schedule(epoch_size, **times):
    config = SlbConfig(epoch_size=epoch_size, has_trained_epoch=0, **times)
    return [temperature_at_epoch(epoch, config) for epoch in range(1, epoch_size + 1)]


def test_schedule_formula_with_defaults():
    temperatures = schedule(10)
    # t_start_epoch = 2, t_end_epoch = 6: flat, then x1.2 per epoch, then held and hard
    expected = [1.0, 1.0, 1.2, 1.44, 1.728, 2.0736, 2.0736, 2.0736, 2.0736, 2.0736]
    assert [t for t, _ in temperatures] == pytest.approx(expected)
    assert [hard for _, hard in temperatures] == [False] * 5 + [True] * 5


def test_schedule_with_start_equal_end_jumps_to_hard():
    temperatures = schedule(4, t_start_time=0.5, t_end_time=0.5, t_start_val=2.0, t_factor=3.0)
    assert temperatures == [(2.0, False), (2.0, True), (2.0, True), (2.0, True)]


class RecordTemperature(Callback):
    def __init__(self, network):
        super().__init__()
        self.network = network
        self.seen = []

    def on_train_epoch_begin(self, run_context):
        quantizer = self.network.stem.weight_quantizer()
        self.seen.append((round(float(quantizer.temperature), 6), quantizer.temperature_end_flag))


def train_and_record(mode, make_callbacks, has_trained_epoch=0, epoch_size=5, schedule_in_config=True):
    ms.set_context(mode=mode)
    config = {"quant_dtype": QuantDtype.INT1}
    if schedule_in_config:
        config.update(epoch_size=epoch_size, has_trained_epoch=has_trained_epoch, t_start_time=0.2, t_end_time=0.8,
                      t_factor=2.0)
    algo = SlbQuantAwareTraining(config)
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8, batch_size=8)
    model = train_model(network, dataset)
    recorder = RecordTemperature(network)
    model.train(epoch_size - has_trained_epoch, dataset, callbacks=make_callbacks(algo, model, dataset) + [recorder])
    return recorder.seen


def test_callbacks_drive_quantizers_during_training(mode):
    seen = train_and_record(mode, lambda algo, model, data: algo.callbacks(model, data))
    # epochs 1..5 with t_start_epoch 1, t_end_epoch 4
    assert seen == [(1.0, False), (2.0, False), (4.0, False), (8.0, True), (8.0, True)]


def test_resume_continues_the_schedule(mode):
    seen = train_and_record(mode, lambda algo, model, data: algo.callbacks(model, data), has_trained_epoch=2)
    assert seen == [(4.0, False), (8.0, True), (8.0, True)]


def seed_document_callbacks(algo, model, _data):
    """Golden Stick's older documented form: algo.callback() beside a hand-made TemperatureScheduler."""
    return [algo.callback(), TemperatureScheduler(model, 5, 0, 1.0, 0.2, 0.8, 2.0)]


@pytest.mark.parametrize("schedule_in_config", [False, True], ids=["as_written", "schedule_also_in_config"])
def test_seed_document_older_form(mode, caplog, schedule_in_config):
    """As written, its config sets no schedule and the hand-made scheduler alone runs it; with the
    same schedule in the config too, algo.callback() runs it as well and the two agree."""
    with caplog.at_level(logging.WARNING, logger="mindspore_slb"):
        seen = train_and_record(mode, seed_document_callbacks, schedule_in_config=schedule_in_config)
    assert seen == [(1.0, False), (2.0, False), (4.0, False), (8.0, True), (8.0, True)]
    assert "still soft" not in caplog.text


def test_callback_without_any_schedule_warns_at_the_end(mode, caplog):
    with caplog.at_level(logging.WARNING, logger="mindspore_slb"):
        seen = train_and_record(mode, lambda algo, model, data: [algo.callback()], epoch_size=2,
                                schedule_in_config=False)
    assert seen == [(1.0, False), (1.0, False)]
    assert "Training ended with 3 of 3 SLB quantizers still soft (temperature 1)" in caplog.text
    assert "'epoch_size' and 'has_trained_epoch' are unset" in caplog.text


@pytest.mark.parametrize("epoch_size, warned", [(2, True), (5, False)])
def test_a_schedule_with_no_soft_epoch_warns_when_training_begins(mode, caplog, epoch_size, warned):
    """With t_end_time 0.8, 2 epochs are hard from the first: the search never runs. A run resumed
    into its hard phase (epochs 4-5 of 5) trains hard epochs too, but its schedule had soft ones."""
    with caplog.at_level(logging.WARNING, logger="mindspore_slb"):
        seen = train_and_record(mode, lambda algo, model, data: algo.callbacks(model, data), epoch_size=epoch_size,
                                has_trained_epoch=epoch_size - 2)
    assert len(seen) == 2 and all(hard for _, hard in seen)
    assert ("hard from epoch 1 (int(epoch_size * t_end_time) = int(2 * 0.8) = 1)" in caplog.text) == warned
    assert ("SLB trains no epoch of search" in caplog.text) == warned


def test_callback_with_bn_calibration_needs_the_schedule():
    algo = SlbQuantAwareTraining({"enable_bn_calibration": True})
    with pytest.raises(RuntimeError, match="'epoch_size' must be set"):
        algo.callback()


def test_callbacks_content():
    algo = SlbQuantAwareTraining({"epoch_size": 4, "has_trained_epoch": 0})
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8)
    model = train_model(network, dataset)
    callbacks = algo.callbacks(model, dataset)
    assert [type(cb) for cb in callbacks] == [TemperatureScheduler]
    algo.set_enable_bn_calibration(True)
    assert [type(cb) for cb in algo.callbacks(model, dataset)] == [TemperatureScheduler, BNCalibration]


@pytest.mark.parametrize("config, error, words", [
    ({"has_trained_epoch": 0}, RuntimeError, "'epoch_size'"),
    ({"epoch_size": 3}, RuntimeError, "'has_trained_epoch'"),
    ({"epoch_size": 3, "has_trained_epoch": 3}, ValueError, "'epoch_size'"),
    ({"epoch_size": 3, "has_trained_epoch": 0, "t_start_time": 0.7, "t_end_time": 0.5}, ValueError, "'t_end_time'"),
    # 1e10 ** 4 is above the largest temperature; 1e100 ** 40 would even overflow a Python float.
    ({"epoch_size": 10, "has_trained_epoch": 0, "t_factor": 1e10}, ValueError,
     r"reaches t_start_val \* t_factor \*\* 4 \(1.0 \* 10000000000.0 \*\* 4\), above the largest temperature 1e\+30"),
    ({"epoch_size": 100, "has_trained_epoch": 0, "t_factor": 1e100}, ValueError, "lower 't_factor' or 't_start_val'"),
    ({"epoch_size": 10, "has_trained_epoch": 0, "t_start_val": 1e20, "t_factor": 1e3}, ValueError,
     r"\*\* 4 \(1e\+20 \*"),
])
def test_callbacks_schedule_errors(config, error, words):
    algo = SlbQuantAwareTraining(config)
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8)
    with pytest.raises(error, match=words):
        algo.callbacks(train_model(network, dataset), dataset)
    with pytest.raises(error, match=words):
        algo.callback()


def test_callbacks_type_errors():
    algo = SlbQuantAwareTraining({"epoch_size": 3, "has_trained_epoch": 0})
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8)
    model = train_model(network, dataset)
    with pytest.raises(TypeError, match="'model'"):
        algo.callbacks(network, dataset)
    with pytest.raises(TypeError, match="'dataset'"):
        algo.callbacks(model, [1, 2])


def test_temperature_scheduler_validates_its_arguments():
    with pytest.raises(ValueError, match="'t_factor'"):
        TemperatureScheduler(None, 10, 0, 1.0, 0.2, 0.6, -1.0)


def compiled_loss(network, images, labels):
    """A compiled training-style function, as MindSpore's functional training loops write it."""
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def forward(x, y):
        return loss_fn(network(x), y)
    value_and_grad = ms.value_and_grad(forward, None, network.trainable_params())

    @ms.jit
    def step(x, y):
        return value_and_grad(x, y)[0]
    return lambda: float(step(images, labels))


def test_a_step_compiled_before_sees_each_new_temperature_and_the_hard_switch(mode):
    """The schedule changes the quantizers' state between steps that were compiled before: it must
    change it in place, or the compiled step goes on reading the first temperature."""
    network = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2}).apply(ConvBnNet())
    network.set_train(True)
    _, images, labels = batches(num_samples=8)
    labels = ms.Tensor(labels)
    quantizers = [cell for _, cell in network.cells_and_names() if isinstance(cell, SlbFakeQuantizerPerLayer)]
    step = compiled_loss(network, images, labels)
    loss_function = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    seen, expected = [], []
    for change in (lambda q: q.set_temperature(1.0), lambda q: q.set_temperature(8.0),
                   lambda q: q.set_temperature_end_flag()):
        for quantizer in quantizers:
            change(quantizer)
        seen.append(step())
        expected.append(float(loss_function(network(images), labels)))  # a fresh forward, not compiled before
    assert seen == pytest.approx(expected, rel=1e-5)
    assert len({round(loss, 5) for loss in seen}) == 3  # each change moved the loss


def test_own_training_loop_follows_the_schedule_with_set_epoch_temperature(mode):
    """No Model.train, so no callbacks: the loop sets each epoch's state, and its compiled step sees it."""
    algo = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT2, "epoch_size": 5, "has_trained_epoch": 0,
                                  "t_start_time": 0.2, "t_end_time": 0.8, "t_factor": 2.0})
    network = algo.apply(ConvBnNet())
    network.set_train(True)
    _, images, labels = batches(num_samples=8)
    labels = ms.Tensor(labels)
    step = compiled_loss(network, images, labels)
    loss_function = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    returned, seen, losses, expected = [], [], [], []
    for epoch in range(1, 6):
        returned.append(algo.set_epoch_temperature(network, epoch))
        quantizer = network.stem.weight_quantizer()
        seen.append((float(quantizer.temperature), quantizer.temperature_end_flag))
        losses.append(step())
        expected.append(float(loss_function(network(images), labels)))
    assert returned == seen == [(1.0, False), (2.0, False), (4.0, False), (8.0, True), (8.0, True)]
    assert losses == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"'epoch' must be an int in \[1, 5\] \(epoch_size\), but got 6"):
        algo.set_epoch_temperature(network, 6)
    with pytest.raises(TypeError, match="'epoch' must be an int, but got 1.0"):
        algo.set_epoch_temperature(network, 1.0)
    with pytest.raises(TypeError, match="'network' must be a mindspore.nn.Cell"):
        algo.set_epoch_temperature("net", 1)
    with pytest.raises(RuntimeError, match="'epoch_size' must be set"):
        SlbQuantAwareTraining().set_epoch_temperature(network, 1)


def test_set_epoch_temperature_warns_about_a_network_in_evaluation_mode(caplog):
    """A loop of one's own that never calls set_train(True) trains the hard network: no logit learns."""
    algo = SlbQuantAwareTraining({"epoch_size": 5, "has_trained_epoch": 0})
    network = algo.apply(ConvBnNet())
    with caplog.at_level(logging.WARNING, logger="mindspore_slb"):
        network.set_train(True)
        algo.set_epoch_temperature(network, 1)
        assert "evaluation mode" not in caplog.text
        network.set_train(False)
        algo.set_epoch_temperature(network, 2)
    assert "the network is in evaluation mode" in caplog.text and "set_train(True)" in caplog.text


def test_calibrated_statistics_reach_a_forward_compiled_before(mode):
    network = SlbQuantAwareTraining({"quant_dtype": QuantDtype.INT1}).apply(ConvBnNet())
    dataset, images, _ = batches(num_samples=16, batch_size=8)
    network.set_train(False)
    forward = ms.jit(network)
    before = forward(images).asnumpy()
    calibrate_batchnorm(network, dataset)
    network.set_train(False)
    after = forward(images).asnumpy()
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, network(images).asnumpy(), rtol=1e-5, atol=1e-6)


def test_t_end_val_reaches_its_temperature_at_the_hard_switch_whatever_the_length():
    for epoch_size in (8, 100):
        temperatures = schedule(epoch_size, t_end_time=0.9, t_end_val=64.0)
        switch = int(epoch_size * 0.9)
        assert temperatures[switch - 1] == (pytest.approx(64.0), True)
        assert temperatures[switch - 2][1] is False and temperatures[-1] == (pytest.approx(64.0), True)
    assert SlbConfig(epoch_size=8, has_trained_epoch=0, t_end_time=0.9, t_end_val=64.0).temperature_factor() == \
        pytest.approx(2.0)


@pytest.mark.parametrize("config, words", [
    ({"t_factor": 2.0, "t_end_val": 64.0}, r"'t_factor' \(2.0\) and 't_end_val' \(64.0\) both set how the "
                                          r"temperature rises: give one"),
    ({"t_end_val": 0.5}, r"'t_end_val' \(0.5\) must not be less than 't_start_val' \(1.0\)"),
])
def test_t_end_val_errors(config, words):
    algo = SlbQuantAwareTraining({"epoch_size": 10, "has_trained_epoch": 0, **config})
    with pytest.raises(ValueError, match=words):
        algo.set_epoch_temperature(algo.apply(ConvBnNet()), 1)
    with pytest.raises(TypeError, match="'t_end_val' must be a float"):
        SlbQuantAwareTraining({"t_end_val": 64})


def test_t_end_val_with_no_epoch_to_rise_in_turns_hard_at_the_first_temperature():
    """A 1-epoch run (or t_start_time equal to t_end_time) has no epoch to rise in, as with t_factor."""
    assert schedule(1, t_start_val=16.0, t_end_time=0.9, t_end_val=64.0) == [(16.0, True)]
    assert schedule(4, t_start_time=0.5, t_end_time=0.5, t_start_val=2.0, t_end_val=8.0) == \
        [(2.0, False), (2.0, True), (2.0, True), (2.0, True)]


def test_t_end_val_through_setter_and_temperature_scheduler(mode):
    algo = SlbQuantAwareTraining({"epoch_size": 5, "has_trained_epoch": 0, "t_end_time": 0.8})
    algo.set_t_end_val(27.0)
    seen = train_and_record(mode, lambda _, model, dataset: algo.callbacks(model, dataset), schedule_in_config=False)
    assert seen == [(1.0, False), (3.0, False), (9.0, False), (27.0, True), (27.0, True)]
    scheduler = TemperatureScheduler(None, 5, 0, 1.0, 0.2, 0.8, t_end_val=27.0)
    assert scheduler.config.temperature_factor() == pytest.approx(3.0)


def test_setting_an_earlier_epoch_turns_the_search_soft_again():
    algo = SlbQuantAwareTraining({"epoch_size": 10, "has_trained_epoch": 0})
    network = algo.apply(ConvBnNet())
    network.set_train(True)
    assert algo.set_epoch_temperature(network, 10) == (pytest.approx(2.0736), True)
    assert algo.set_epoch_temperature(network, 1) == (1.0, False)
    assert not any(q.temperature_end_flag for _, q in network.cells_and_names()
                   if isinstance(q, SlbFakeQuantizerPerLayer))
    with pytest.raises(TypeError, match="'end' must be a bool"):
        network.stem.weight_quantizer().set_temperature_end_flag(1)


@pytest.mark.parametrize("has_trained_epoch", [0, 5])
def test_model_train_initial_epoch_counts_the_trained_epochs_once(mode, has_trained_epoch):
    ms.set_context(mode=mode)
    algo = SlbQuantAwareTraining({"epoch_size": 8, "has_trained_epoch": has_trained_epoch, "t_start_time": 0.125,
                                  "t_end_time": 1.0, "t_factor": 2.0})
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8, batch_size=8)
    model = train_model(network, dataset)
    recorder = RecordTemperature(network)
    model.train(8, dataset, callbacks=algo.callbacks(model, dataset) + [recorder], initial_epoch=5)
    # Epochs 6, 7 and 8 of the run: rising from epoch 2, hard at the last.
    assert recorder.seen == [(32.0, False), (64.0, False), (128.0, True)]


def test_model_train_initial_epoch_and_another_has_trained_epoch_are_refused():
    algo = SlbQuantAwareTraining({"epoch_size": 5, "has_trained_epoch": 2})
    network = algo.apply(ConvBnNet())
    dataset, _, _ = batches(num_samples=8, batch_size=8)
    model = train_model(network, dataset)
    with pytest.raises(ValueError, match=r"initial_epoch \(3\) and 'has_trained_epoch' \(2\) both count"):
        model.train(5, dataset, callbacks=algo.callbacks(model, dataset), initial_epoch=3)
