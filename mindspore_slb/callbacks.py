"""Training callbacks: the temperature schedule and BatchNorm re-calibration."""
import contextlib
import itertools
import logging

import numpy as np

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindspore.train.callback import Callback

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.config import SlbConfig, rise_start_epoch, temperature_at_epoch
from mindspore_slb.quantizer import CandidateQuantizer, SlbFakeQuantizerPerLayer
from mindspore_slb.registry import is_quantized

__all__ = ["CALIBRATION_BATCHES", "TemperatureScheduler", "BNCalibration", "BatchNormCalibrator",
           "calibrate_batchnorm", "set_epoch_temperature"]

logger = logging.getLogger(__name__)

# Batches BNCalibration averages: 1,024 images at batch 32, enough for per-channel means and
# variances, at a small fraction of an epoch's cost (docs/design.md, BatchNorm calibration).
CALIBRATION_BATCHES = 32


def _quantizers(network):
    """The quantizers with a temperature: SLB's, whatever layer holds them."""
    return [cell for _, cell in network.cells_and_names() if isinstance(cell, SlbFakeQuantizerPerLayer)]


class _RunEpochCounter:
    """The 1-based epoch of the whole run, resumed epochs included, from a callback's run context.

    A resume is said either by ``has_trained_epoch`` or by ``Model.train(..., initial_epoch=N)``,
    whose epoch numbers already count the N epochs; said both ways with the same N it is counted
    once, with two different numbers it is an error.
    """

    def __init__(self, has_trained_epoch):
        self.has_trained_epoch = has_trained_epoch
        self.initial_epoch = None

    def reset(self):
        self.initial_epoch = None

    def epoch(self, run_context):
        current = run_context.original_args().cur_epoch_num
        if self.initial_epoch is None:
            # Called first within the process's first epoch, whose number is initial_epoch + 1.
            self.initial_epoch = current - 1
            if self.initial_epoch and self.has_trained_epoch not in (0, self.initial_epoch):
                raise ValueError(f"Model.train's initial_epoch ({self.initial_epoch}) and 'has_trained_epoch' "
                                 f"({self.has_trained_epoch}) both count the epochs trained before: give the "
                                 f"same number, or one of them.")
        return current if self.initial_epoch else current + self.has_trained_epoch


def set_epoch_temperature(network, epoch, config):
    """Sets every SLB quantizer in ``network`` to the schedule's state for 1-based ``epoch``
    (epochs before a resume included); returns (temperature, hard)."""
    temperature, hard = temperature_at_epoch(epoch, config)
    for quantizer in _quantizers(network):
        quantizer.set_temperature(temperature)
        quantizer.set_temperature_end_flag(hard)
    return temperature, hard


class TemperatureScheduler(Callback):
    """Sets every SLB quantizer's temperature at the start of each epoch (the straight-through
    baseline's quantizers have none and are left alone).

    Epochs are counted after ``has_trained_epoch``, so a resumed run continues the schedule of an
    uninterrupted one. The quantizers are found in the network being trained, so the same
    callback serves any model.

    Args:
        model (mindspore.train.Model, optional): kept for the signature Golden Stick's SLB documentation shows; the
            network comes from the training run itself.
        epoch_size, has_trained_epoch, t_start_val, t_start_time, t_end_time, t_factor: the schedule.
        t_end_val (float, optional): the temperature to reach when training turns hard, instead of
            ``t_factor`` (give one of the two; with neither, ``t_factor`` is 1.2).
    """

    def __init__(self, model=None, epoch_size=100, has_trained_epoch=0, t_start_val=1.0,
                 t_start_time=0.2, t_end_time=0.6, t_factor=None, t_end_val=None):
        super().__init__()
        self.model = model
        self.config = SlbConfig()
        for name, value in (("epoch_size", epoch_size), ("has_trained_epoch", has_trained_epoch),
                            ("t_start_val", t_start_val), ("t_start_time", t_start_time),
                            ("t_end_time", t_end_time), ("t_factor", t_factor), ("t_end_val", t_end_val)):
            if value is not None or name not in ("t_factor", "t_end_val"):
                self.config.set(name, value)
        self.config.check_schedule()
        self.epochs = _RunEpochCounter(self.config.has_trained_epoch)

    def on_train_begin(self, run_context):
        self.epochs.reset()
        config = self.config
        if temperature_at_epoch(1, config)[1]:
            # Legitimate for a resumed or float-first run entering the hard phase only if the schedule
            # had soft epochs before it; this one has none, so no epoch of the run ever searches.
            logger.warning("The temperature schedule is hard from epoch 1 (int(epoch_size * t_end_time) = "
                           "int(%d * %g) = %d): SLB trains no epoch of search and keeps its start's choices. "
                           "Train more epochs or raise 't_end_time'.", config.epoch_size, config.t_end_time,
                           int(config.epoch_size * config.t_end_time))

    def on_train_epoch_begin(self, run_context):
        set_epoch_temperature(run_context.original_args().network, self.epochs.epoch(run_context),
                              self.config)


class _SearchLeftSoftWarning(Callback):
    """Warns when training ends with SLB quantizers that never turned hard: no temperature schedule
    reached its end, and the network trained is not the one ``convert`` deploys."""

    def on_train_end(self, run_context):
        quantizers = _quantizers(run_context.original_args().network)
        soft = sum(not quantizer.temperature_end_flag for quantizer in quantizers)
        if soft:
            logger.warning("Training ended with %d of %d SLB quantizers still soft (temperature %g): "
                           "algo.callback() runs no temperature schedule while 'epoch_size' and "
                           "'has_trained_epoch' are unset. Add a TemperatureScheduler, set both, or use "
                           "algo.callbacks(model, dataset).", soft, len(quantizers),
                           float(quantizers[0].temperature))


class BNCalibration(Callback):
    """Re-estimates BatchNorm statistics with the hard (argmax) weights at the end of each epoch
    once the temperature has started rising.

    Soft weights during training give BatchNorm statistics of a network that is never deployed;
    this replaces, for every BatchNorm downstream of a quantized layer, the stored mean and
    variance by their average over the training batches of the hard network, each BatchNorm
    normalising with its batch statistics as in training. Trainable parameters are untouched.

    Args:
        network (Cell, optional): the quantized network (without loss); by default the one
            being trained.
        dataset (Dataset, optional): data whose first column feeds the network; by default the
            training data.
        config (SlbConfig): for the schedule.
        num_batches (int, optional): batches per calibration (default CALIBRATION_BATCHES); all when None.
    """

    def __init__(self, network=None, dataset=None, config=None, num_batches=CALIBRATION_BATCHES):
        super().__init__()
        self.network = network
        self.dataset = dataset
        self.config = config
        self.num_batches = num_batches
        self.epochs = _RunEpochCounter(config.has_trained_epoch)
        self._calibrator = None

    def on_train_begin(self, run_context):
        self.epochs.reset()

    def on_train_epoch_end(self, run_context):
        if self.epochs.epoch(run_context) > rise_start_epoch(self.config):
            run = run_context.original_args()
            network = self.network or run.network
            if self._calibrator is None or self._calibrator.network is not network:
                self._calibrator = BatchNormCalibrator(network)
            self._calibrator.calibrate(self.dataset or run.train_dataset, self.num_batches)


def calibrate_batchnorm(network, dataset, num_batches=None):
    """Sets the moving mean and variance of every BatchNorm downstream of a quantized layer to the
    average of its batch statistics over ``dataset`` (its first ``num_batches`` batches; all when
    None) under the hard weights. To calibrate the same network again and again (every epoch), keep
    a ``BatchNormCalibrator``: it compiles its forward pass once.

    Returns:
        list[str]: the names of the re-estimated BatchNorm layers, in execution order.
    """
    return BatchNormCalibrator(network).calibrate(dataset, num_batches)


class BatchNormCalibrator:
    """Re-estimates ``network``'s BatchNorm statistics for its hard weights (see ``calibrate_batchnorm``).

    The forward passes run in the context's mode, compiled once in GRAPH mode, each BatchNorm
    storing its batch's statistics. Which BatchNorms follow a quantized layer is found once, by one
    batch in PyNative mode, whose hooks see the order in which layers run; both are found again
    when the network's layers change.

    Args:
        network (Cell): the quantized network (without loss).
    """

    def __init__(self, network):
        if not isinstance(network, nn.Cell):
            raise TypeError(f"'network' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
        self.network = network
        self._layers = None
        self._calibrated = None
        self._forward = None

    def calibrate(self, dataset, num_batches=None):
        """Calibrate on ``dataset``'s first ``num_batches`` batches (all when None); returns the
        names of the re-estimated BatchNorm layers, in execution order."""
        if num_batches is not None and (isinstance(num_batches, bool) or not isinstance(num_batches, int)
                                        or num_batches < 1):
            raise ValueError(f"'num_batches' must be None or an int >= 1, but got {num_batches!r}.")
        network = self.network
        batches = dataset.create_tuple_iterator(num_epochs=1)
        first = next(batches, None)
        if first is None:
            return []
        batchnorms = [cell for _, cell in network.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
        # Training-mode forwards move every BatchNorm's statistics; only the calibrated ones may change.
        saved_statistics = [(cell, cell.moving_mean.asnumpy().copy(), cell.moving_variance.asnumpy().copy())
                            for cell in batchnorms]
        was_training = network.training
        try:
            layers = tuple(id(cell) for _, cell in network.cells_and_names())
            with _hard_flags_set(network):
                if layers != self._layers:
                    self._calibrated = _batchnorms_after_quantized_layers(network, first[0])
                    self._forward, self._layers = _HardForward(network), layers
                averages = [_BatchStatisticsAverage(cell) for _, cell in self._calibrated]
                _set_calibration_modes(self._forward)
                self._average_batches(averages, itertools.chain([first], batches), num_batches)
        finally:
            network.set_train(was_training)
            for cell, mean, variance in saved_statistics:
                ops.assign(cell.moving_mean, Tensor(mean))
                ops.assign(cell.moving_variance, Tensor(variance))
        for average in averages:
            average.store()
        logger.info("re-estimated %d BatchNorm layers with the hard weights", len(averages))
        return [name for name, _ in self._calibrated]

    def _average_batches(self, averages, batches, num_batches):
        with _storing_batch_statistics(cell for _, cell in self._calibrated):
            for index, batch in enumerate(batches):
                if num_batches is not None and index >= num_batches:
                    break
                self._forward(batch[0])
                for average in averages:
                    average.add_stored()


def _set_calibration_modes(network):
    """Training mode, so that BatchNorms normalise with their batch statistics, except for the
    quantizers: hard weights, and activation ranges as observed in training, not moved. A weight
    quantizer whose ``hard_in_training_mode`` says so (SLB's fused kernel) stays in training mode
    with its hard flag set (``_hard_flags_set``)."""
    network.set_train(True)
    for _, cell in network.cells_and_names():
        if isinstance(cell, SlbActQuantizer) or (isinstance(cell, CandidateQuantizer)
                                                 and not cell.hard_in_training_mode):
            cell.set_train(False)


@contextlib.contextmanager
def _hard_flags_set(network):
    """Within it, every SLB quantizer of ``network`` left in training mode for calibration computes its
    hard weight there."""
    quantizers = [cell for cell in _quantizers(network) if cell.hard_in_training_mode]
    flags = [quantizer.temperature_end_flag for quantizer in quantizers]
    try:
        for quantizer in quantizers:
            quantizer.set_temperature_end_flag(True)
        yield
    finally:
        for quantizer, flag in zip(quantizers, flags):
            quantizer.set_temperature_end_flag(flag)


def _batchnorms_after_quantized_layers(network, inputs):
    """(name, cell) of the BatchNorm2d layers that run after a quantized layer, in execution order,
    seen through hooks in one PyNative forward pass of ``inputs``."""
    found = []
    state = {"after_quantized_layer": False}

    def watch_quantized(cell, hook_inputs):
        state["after_quantized_layer"] = True

    def watch_batchnorm(name):
        def hook(cell, hook_inputs):
            if state["after_quantized_layer"] and all(cell is not seen for _, seen in found):
                found.append((name, cell))
        return hook

    handles = []
    for name, cell in network.cells_and_names():
        if is_quantized(cell):
            handles.append(cell.register_forward_pre_hook(watch_quantized))
        elif isinstance(cell, nn.BatchNorm2d):
            handles.append(cell.register_forward_pre_hook(watch_batchnorm(name)))
    previous_mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        _set_calibration_modes(network)
        network(inputs)
    finally:
        ms.set_context(mode=previous_mode)
        for handle in handles:
            handle.remove()
    return found


@contextlib.contextmanager
def _storing_batch_statistics(batchnorms):
    """Within it, each of ``batchnorms`` replaces its moving mean and variance by its last batch's
    mean and unbiased variance in training mode: a moving-average momentum of 1."""
    replaced = []
    try:
        for cell in batchnorms:
            replaced.append((cell, cell.bn_train))
            cell.bn_train = ops.BatchNorm(is_training=True, epsilon=cell.eps, momentum=1.0, data_format=cell.format)
        yield
    finally:
        for cell, operator in replaced:
            cell.bn_train = operator


class _HardForward(nn.Cell):
    """The network's forward pass as a Cell of its own, compiled apart from the training step with
    calibration's modes (see ``_set_calibration_modes``); its parameters keep their names."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, x):
        return self.network(x)


class _BatchStatisticsAverage:
    """Average over batches of one BatchNorm's batch means and unbiased variances."""

    def __init__(self, batchnorm):
        self.batchnorm = batchnorm
        self.batches = 0
        self.mean_sum = 0.0
        self.variance_sum = 0.0

    def add_stored(self):
        """Add the batch statistics the BatchNorm stored in its last forward pass."""
        self.batches += 1
        self.mean_sum = self.mean_sum + self.batchnorm.moving_mean.asnumpy().astype(np.float64)
        self.variance_sum = self.variance_sum + self.batchnorm.moving_variance.asnumpy().astype(np.float64)

    def store(self):
        # In place, as the quantizer's temperature, so that every graph holding these parameters
        # reads the new statistics.
        ops.assign(self.batchnorm.moving_mean, Tensor((self.mean_sum / self.batches).astype(np.float32)))
        ops.assign(self.batchnorm.moving_variance, Tensor((self.variance_sum / self.batches).astype(np.float32)))


class _CallbackGroup(Callback):
    """Several callbacks behind one object, for Golden Stick's older single ``algo.callback()``."""

    def __init__(self, callbacks):
        super().__init__()
        self.callbacks = callbacks

    def on_train_begin(self, run_context):
        for callback in self.callbacks:
            callback.on_train_begin(run_context)

    def on_train_epoch_begin(self, run_context):
        for callback in self.callbacks:
            callback.on_train_epoch_begin(run_context)

    def on_train_epoch_end(self, run_context):
        for callback in self.callbacks:
            callback.on_train_epoch_end(run_context)

    def on_train_end(self, run_context):
        for callback in self.callbacks:
            callback.on_train_end(run_context)
