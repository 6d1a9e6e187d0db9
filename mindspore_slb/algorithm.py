"""``SlbQuantAwareTraining``: the Golden Stick-compatible entry point of the package."""
import os

import mindspore as ms
from mindspore import nn
from mindspore.dataset import Dataset
from mindspore.train import Model

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.callbacks import BNCalibration, TemperatureScheduler, _CallbackGroup
from mindspore_slb.config import CONFIG_KEYS, SlbConfig, split_quant_dtype
from mindspore_slb.convert import convert_network
from mindspore_slb.layers import Conv2dSlbQuant
from mindspore_slb.rewrite import replace_cells


class SlbQuantAwareTraining:
    """SLB (Searching for Low-bit Weights) quantization-aware training.

    Args:
        config (dict, optional): any of ``quant_dtype`` (a weight QuantDtype, or [act, weight]),
            ``enable_act_quant``, ``enable_bn_calibration``, ``epoch_size``, ``has_trained_epoch``,
            ``t_start_val``, ``t_start_time``, ``t_end_time``, ``t_factor``. Each is validated
            like its setter; an unknown key is an error.

    Example:
        >>> algo = SlbQuantAwareTraining({"epoch_size": 100, "has_trained_epoch": 0})
        >>> algo.set_weight_quant_dtype(QuantDtype.INT2)
        >>> quant_net = algo.apply(net)
    """

    def __init__(self, config=None):
        self._config = SlbConfig()
        if config is None:
            return
        if not isinstance(config, dict):
            raise TypeError(f"'config' must be a dict, but got {config!r} of type {type(config).__name__}.")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"Unknown config key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed keys are {', '.join(CONFIG_KEYS)}.")
        for key, value in config.items():
            if key == "quant_dtype":
                act_dtype, weight_dtype = split_quant_dtype(value)
                self.set_act_quant_dtype(act_dtype)
                self.set_weight_quant_dtype(weight_dtype)
            else:
                self._config.set(key, value)

    def set_weight_quant_dtype(self, weight_quant_dtype):
        """QuantDtype.INT1, INT2 or INT4."""
        self._config.set("weight_quant_dtype", weight_quant_dtype)

    def set_act_quant_dtype(self, act_quant_dtype):
        """QuantDtype.INT8."""
        self._config.set("act_quant_dtype", act_quant_dtype)

    def set_enable_act_quant(self, enable_act_quant):
        self._config.set("enable_act_quant", enable_act_quant)

    def set_enable_bn_calibration(self, enable_bn_calibration):
        self._config.set("enable_bn_calibration", enable_bn_calibration)

    def set_epoch_size(self, epoch_size):
        """Total epochs of the training, resumed epochs included (int > 0)."""
        self._config.set("epoch_size", epoch_size)

    def set_has_trained_epoch(self, has_trained_epoch):
        """Epochs trained before this run, for a resume (int >= 0)."""
        self._config.set("has_trained_epoch", has_trained_epoch)

    def set_t_start_val(self, t_start_val):
        self._config.set("t_start_val", t_start_val)

    def set_t_start_time(self, t_start_time):
        self._config.set("t_start_time", t_start_time)

    def set_t_end_time(self, t_end_time):
        self._config.set("t_end_time", t_end_time)

    def set_t_factor(self, t_factor):
        self._config.set("t_factor", t_factor)

    def apply(self, network):
        """Replace, in place, every ``nn.Conv2d`` of ``network`` by a ``Conv2dSlbQuant``.

        Returns:
            Cell: ``network`` itself, now quantized.
        """
        if not isinstance(network, nn.Cell):
            raise TypeError(f"'network' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
        if any(isinstance(cell, Conv2dSlbQuant) for _, cell in network.cells_and_names()):
            raise ValueError("'network' already contains Conv2dSlbQuant layers: SLB was applied to it before.")
        bits = self._config.weight_bits
        with_act_quant = self._config.enable_act_quant

        def quantize(cell, path):
            if not isinstance(cell, nn.Conv2d):
                return None
            return Conv2dSlbQuant(cell, bits, SlbActQuantizer() if with_act_quant else None)

        network, replaced = replace_cells(network, quantize)
        if not replaced:
            raise ValueError(f"'network' ({type(network).__name__}) has no nn.Conv2d layer for SLB to quantize.")
        return network

    def callbacks(self, model, dataset):
        """The callbacks SLB training needs: the temperature schedule, and BatchNorm calibration
        when enabled.

        Args:
            model (mindspore.train.Model): the model being trained.
            dataset (mindspore.dataset.Dataset): its training data.
        """
        if not isinstance(model, Model):
            raise TypeError(f"'model' must be a mindspore.train.Model, but got {type(model).__name__}.")
        if not isinstance(dataset, Dataset):
            raise TypeError(f"'dataset' must be a mindspore.dataset.Dataset, but got {type(dataset).__name__}.")
        return self._make_callbacks(model, model.predict_network, dataset)

    def callback(self):
        """Golden Stick's documented older form: one callback that runs the temperature schedule (and
        BatchNorm calibration on the training data, when enabled)."""
        return _CallbackGroup(self._make_callbacks(None, None, None))

    def _make_callbacks(self, model, network, dataset):
        config = self._config
        config.check_schedule()
        callbacks = [TemperatureScheduler(model, config.epoch_size, config.has_trained_epoch,
                                          config.t_start_val, config.t_start_time, config.t_end_time,
                                          config.t_factor)]
        if config.enable_bn_calibration:
            callbacks.append(BNCalibration(network, dataset, config))
        return callbacks

    def convert(self, net_opt, ckpt_path=""):
        """Turn a trained SLB network, in place, into a deployable one: plain ``nn.Conv2d`` layers
        whose weights hold only the chosen candidate values, no logits, in evaluation mode.

        No Cell is copied: ``net_opt``'s quantized layers are replaced inside it, so afterwards
        ``net_opt`` is the deployable network (evaluate the quantized one before converting).

        Args:
            net_opt (Cell): the network returned by ``apply``.
            ckpt_path (str): a checkpoint to load into ``net_opt`` first; "" for none. It must hold
                every parameter of the quantized layers.

        Returns:
            Cell: the deployable network.
        """
        if not isinstance(net_opt, nn.Cell):
            raise TypeError(f"'net_opt' must be a mindspore.nn.Cell, but got {type(net_opt).__name__}.")
        if not isinstance(ckpt_path, str):
            raise TypeError(f"'ckpt_path' must be a str, but got {ckpt_path!r} of type {type(ckpt_path).__name__}.")
        quantized = [cell for _, cell in net_opt.cells_and_names() if isinstance(cell, Conv2dSlbQuant)]
        if not quantized:
            raise ValueError("'net_opt' has no Conv2dSlbQuant layer: pass the network returned by apply().")
        if ckpt_path:
            _load_covering(net_opt, quantized, ckpt_path)
        return convert_network(net_opt)

    def __repr__(self):
        return f"SlbQuantAwareTraining({self._config})"


def _load_covering(network, quantized_layers, ckpt_path):
    """Load ``ckpt_path`` into ``network``; every parameter of the quantized layers must be in it
    (MindSpore only logs a warning for a missing one, and converting would then silently deploy
    the untrained initial logits)."""
    if not os.path.isfile(ckpt_path):
        raise ValueError(f"'ckpt_path' must be an existing checkpoint file, but got '{ckpt_path}'.")
    not_loaded, _ = ms.load_param_into_net(network, ms.load_checkpoint(ckpt_path))
    needed = {parameter.name for layer in quantized_layers for parameter in layer.get_parameters()}
    missing = sorted(needed & set(not_loaded))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"'ckpt_path' ('{ckpt_path}') lacks {len(missing)} parameter(s) of the quantized "
                         f"layers: {shown}. Was it saved from this network after apply()?")
