"""``SlbQuantAwareTraining``: the Golden Stick-compatible entry point of the package."""
import logging
import os

import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.dataset import Dataset
from mindspore.train import Model

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.callbacks import (BNCalibration, TemperatureScheduler, _CallbackGroup, _SearchLeftSoftWarning,
                                    set_epoch_temperature)
from mindspore_slb.config import CONFIG_KEYS, KEYS, SlbConfig, split_quant_dtype
from mindspore_slb.convert import convert_network
from mindspore_slb.layer_plan import (bits_for, check_plan, float_reason, format_summary, summary_row, type_enabled,
                                      unused_patterns)
from mindspore_slb.layers import SLB
from mindspore_slb.optimizer import SlbMomentum
from mindspore_slb.packed_layers import refuse_packed
from mindspore_slb.quantizer import RANDOM_START, drawing_random_start
from mindspore_slb.registry import handler_for, is_quantized, registered_layers
from mindspore_slb.rewrite import replace_cells
from mindspore_slb.slb_reader import fspath

__all__ = ["SlbQuantAwareTraining"]

logger = logging.getLogger(__name__)


class SlbQuantAwareTraining:
    """SLB (Searching for Low-bit Weights) quantization-aware training.

    Args:
        config (dict, optional): any of ``config.CONFIG_KEYS``: ``quant_dtype`` (a weight
            QuantDtype, or [act, weight]), ``enable_act_quant``, ``enable_bn_calibration``,
            ``epoch_size``, ``has_trained_epoch``, ``t_start_val``, ``t_start_time``, ``t_end_time``,
            ``t_factor``, and beyond Golden Stick ``t_end_val``, ``enable_dense_quant``,
            ``layer_types``, ``enable_weight_scale``, ``exclude_layers``, ``layer_bits``,
            ``weight_search``, ``quantize_frozen_layers``. Each is validated like its setter
            (``set_<key>``, documented there); an unknown key is an error.

    Example:
        >>> algo = SlbQuantAwareTraining({"epoch_size": 100, "has_trained_epoch": 0})
        >>> algo.set_weight_quant_dtype(QuantDtype.INT2)
        >>> quant_net = algo.apply(net)
    """

    def __init__(self, config=None):
        self._config = SlbConfig()
        self._summary = []
        if config is None:
            return
        if not isinstance(config, dict):
            raise TypeError(f"'config' must be a dict, but got {config!r} of type {type(config).__name__}.")
        if "custom_policies" in config:
            raise ValueError("Config key 'custom_policies' (Golden Stick) is not supported: register a layer "
                             "type with mindspore_slb.register_layer(float_type, quantized_type, deploy) and "
                             "choose layers with 'exclude_layers' and 'layer_bits'.")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"Unknown config key(s) {', '.join(map(repr, unknown))}; "
                             f"allowed keys are {', '.join(CONFIG_KEYS)}.")
        for key, value in config.items():
            if key == "quant_dtype":
                self._set_quant_dtype(value)
            else:
                self._config.set(key, value)

    def _set_quant_dtype(self, value):
        act_dtype, weight_dtype = split_quant_dtype(value)
        # The setters name their own keys; the user wrote 'quant_dtype', so say which part of it is wrong.
        for setter, dtype, part in ((self.set_act_quant_dtype, act_dtype, "activation dtype (first of the pair)"),
                                    (self.set_weight_quant_dtype, weight_dtype, "weight dtype")):
            try:
                setter(dtype)
            except (TypeError, ValueError) as error:
                raise type(error)(f"'quant_dtype' [act_dtype, weight_dtype] or weight_dtype: its {part} is "
                                  f"wrong: {error}") from None

    # Golden Stick's setter names, one per setting of config.KEYS; each setter's check and docstring
    # come from its KEYS entry (see the end of this module).
    def set_weight_quant_dtype(self, weight_quant_dtype):
        self._config.set("weight_quant_dtype", weight_quant_dtype)

    def set_act_quant_dtype(self, act_quant_dtype):
        self._config.set("act_quant_dtype", act_quant_dtype)

    def set_enable_act_quant(self, enable_act_quant):
        self._config.set("enable_act_quant", enable_act_quant)

    def set_enable_bn_calibration(self, enable_bn_calibration):
        self._config.set("enable_bn_calibration", enable_bn_calibration)

    def set_epoch_size(self, epoch_size):
        self._config.set("epoch_size", epoch_size)

    def set_has_trained_epoch(self, has_trained_epoch):
        self._config.set("has_trained_epoch", has_trained_epoch)

    def set_t_start_val(self, t_start_val):
        self._config.set("t_start_val", t_start_val)

    def set_t_start_time(self, t_start_time):
        self._config.set("t_start_time", t_start_time)

    def set_t_end_time(self, t_end_time):
        self._config.set("t_end_time", t_end_time)

    def set_t_factor(self, t_factor):
        self._config.set("t_factor", t_factor)

    def set_t_end_val(self, t_end_val):
        self._config.set("t_end_val", t_end_val)

    def set_enable_dense_quant(self, enable_dense_quant):
        self._config.set("enable_dense_quant", enable_dense_quant)

    def set_layer_types(self, layer_types):
        self._config.set("layer_types", layer_types)

    def set_enable_weight_scale(self, enable_weight_scale):
        self._config.set("enable_weight_scale", enable_weight_scale)

    def set_exclude_layers(self, exclude_layers):
        self._config.set("exclude_layers", exclude_layers)

    def set_layer_bits(self, layer_bits):
        self._config.set("layer_bits", layer_bits)

    def set_weight_search(self, weight_search):
        self._config.set("weight_search", weight_search)

    def set_search_start(self, search_start):
        self._config.set("search_start", search_start)

    def set_search_dtype(self, search_dtype):
        self._config.set("search_dtype", search_dtype)

    def set_quantize_frozen_layers(self, quantize_frozen_layers):
        self._config.set("quantize_frozen_layers", quantize_frozen_layers)

    def layer_summary(self):
        """The layers the last ``apply`` found quantizable, in network order.

        Returns:
            list[LayerSummary]: path, cell type, weight shape, bits or "float", params, and why a
            layer left in float was.
        """
        return list(self._summary)

    def apply(self, network):
        """Replace, in place, every layer SLB quantizes (``nn.Conv2d`` by default) by its quantized
        layer, per the registry and the per-layer settings; logs a per-layer summary
        (``layer_summary()`` returns it).

        Returns:
            Cell: ``network`` itself, now quantized (the quantized layer when ``network`` is one
            quantizable layer, such as a bare ``nn.Conv2d``).
        """
        if not isinstance(network, nn.Cell):
            raise TypeError(f"'network' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
        if any(is_quantized(cell) for _, cell in network.cells_and_names()):
            raise ValueError("'network' already contains SLB-quantized layers: SLB was applied to it before.")
        config = self._config
        check_plan(network, config)
        rows = []
        enabled_layers = []
        # Seeded by MindSpore's global seed (mindspore.set_seed), so that a seeded run starts alike.
        rng = np.random.default_rng(ms.get_seed()) if config.search_start == RANDOM_START else None

        def quantize(cell, path):
            handler = handler_for(cell)
            if handler is None:
                return None
            if type_enabled(handler, config):
                enabled_layers.append(path)
            bits = bits_for(path, cell, handler, config)
            replacement = None
            if bits is not None:
                act_quantizer = SlbActQuantizer() if config.enable_act_quant else None
                replacement = handler.build(cell, bits, act_quantizer, config.enable_weight_scale,
                                            config.weight_search)
                replacement.start_at_temperature(config.t_start_val)
                if config.weight_search == SLB:
                    replacement.weight_quantizer().store_logits_in(replacement.searched_weight(), config.search_dtype)
            rows.append(summary_row(path, cell, cell if replacement is None else replacement, bits,
                                    None if bits is not None else float_reason(path, cell, handler, config)))
            return replacement

        with drawing_random_start(rng):
            network, replaced = replace_cells(network, quantize)
        self._summary = rows
        if not replaced:
            enabled = ", ".join(handler.float_type.__name__ for handler in registered_layers()
                                if type_enabled(handler, config))
            found = (f"its {len(enabled_layers)} layer(s) of the enabled types ({enabled}) are all excluded or frozen"
                     if enabled_layers else f"it has no layer of the enabled types ({enabled})")
            raise ValueError(f"'network' ({type(network).__name__}) has no layer for SLB to quantize: {found}.")
        logger.info("SLB quantized %d of %d layers:\n%s", len(replaced), len(rows), format_summary(rows))
        for pattern in unused_patterns(config, rows):
            logger.warning("SLB layer pattern '%s' matches no quantizable layer.", pattern)
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
        optimizer = getattr(model, "_optimizer", None)
        if self._config.search_dtype != "float32" and optimizer is not None and not isinstance(optimizer, SlbMomentum):
            raise TypeError(f"search_dtype '{self._config.search_dtype}' trains with mindspore_slb.SlbMomentum only, "
                            f"but the model's optimizer is {type(optimizer).__name__}.")
        return self._make_callbacks(model, model.predict_network, dataset)

    def callback(self):
        """Golden Stick's documented older form: one callback.

        With ``epoch_size`` and ``has_trained_epoch`` set it runs the temperature schedule (and
        BatchNorm calibration on the training data, when enabled). With neither set, as in that
        form, the schedule is the caller's own ``TemperatureScheduler``; the callback then only
        warns at the end of training if the search never turned hard, so that a run with no
        schedule at all does not pass unnoticed.
        """
        config = self._config
        if config.epoch_size is None and config.has_trained_epoch is None and not config.enable_bn_calibration:
            return _CallbackGroup([_SearchLeftSoftWarning()])
        return _CallbackGroup(self._make_callbacks(None, None, None))

    def check_schedule(self):
        """Raise, as ``callbacks()`` and ``set_epoch_temperature`` would, when the temperature schedule
        cannot run: ``epoch_size`` or ``has_trained_epoch`` unset, no epoch left, ``t_end_time`` before
        ``t_start_time``, or a temperature beyond the largest. For checking settings before training."""
        self._config.check_schedule()

    def set_epoch_temperature(self, network, epoch):
        """For a training loop of one's own (no ``Model.train``, so no callbacks): set every SLB
        quantizer in ``network`` to the schedule's temperature for ``epoch`` and, from the schedule's
        end on, to its hard weights, as the callbacks do at the start of each epoch. Call it before
        each epoch; a step compiled before sees the change.

        Args:
            network (Cell): the network returned by ``apply`` (or one containing it).
            epoch (int): 1-based, counting the epochs before a resume (1 .. epoch_size).

        Returns:
            tuple: (temperature, hard) for that epoch.
        """
        if not isinstance(network, nn.Cell):
            raise TypeError(f"'network' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
        self._config.check_schedule()
        epoch_size = self._config.epoch_size
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(f"'epoch' must be an int, but got {epoch!r} of type {type(epoch).__name__}.")
        if not 1 <= epoch <= epoch_size:
            raise ValueError(f"'epoch' must be an int in [1, {epoch_size}] (epoch_size), but got {epoch}.")
        if not network.training:
            logger.warning("set_epoch_temperature: the network is in evaluation mode, where SLB computes with the "
                           "hard weights and its logits get no gradient; call network.set_train(True) before "
                           "training (Model.train does it).")
        return set_epoch_temperature(network, epoch, self._config)

    def _make_callbacks(self, model, network, dataset):
        config = self._config
        config.check_schedule()
        callbacks = [TemperatureScheduler(model, config.epoch_size, config.has_trained_epoch,
                                          config.t_start_val, config.t_start_time, config.t_end_time,
                                          None if config.t_end_val else config.t_factor, config.t_end_val)]
        if config.enable_bn_calibration:
            callbacks.append(BNCalibration(network, dataset, config))
        return callbacks

    def convert(self, net_opt, ckpt_path=""):
        """Turn a trained SLB network, in place, into a deployable one: plain layers (``nn.Conv2d``,
        ``nn.Dense``, or as registered) whose weights hold only the chosen candidate values times
        their channel's scale, no logits, in evaluation mode.

        No Cell is copied: ``net_opt``'s quantized layers are replaced inside it, so afterwards
        ``net_opt`` is the deployable network (evaluate the quantized one before converting).

        Args:
            net_opt (Cell): the network returned by ``apply``.
            ckpt_path (str or os.PathLike): a checkpoint to load into ``net_opt`` first; "" for none.
                It must hold every parameter of the quantized layers.

        Returns:
            Cell: the deployable network.
        """
        if not isinstance(net_opt, nn.Cell):
            raise TypeError(f"'net_opt' must be a mindspore.nn.Cell, but got {type(net_opt).__name__}.")
        ckpt_path = fspath(ckpt_path)
        if not isinstance(ckpt_path, str):
            raise TypeError(f"'ckpt_path' must be a str or os.PathLike, but got {ckpt_path!r} "
                            f"of type {type(ckpt_path).__name__}.")
        refuse_packed(net_opt, "net_opt")
        quantized = [cell for _, cell in net_opt.cells_and_names() if is_quantized(cell)]
        if not quantized:
            raise ValueError("'net_opt' has no SLB-quantized layer: pass the network returned by apply() "
                             "(convert works in place, so a network converted once has none left).")
        if ckpt_path:
            _load_covering(net_opt, quantized, ckpt_path)
        return convert_network(net_opt)

    def __repr__(self):
        return f"SlbQuantAwareTraining({self._config})"


for _key in KEYS:
    getattr(SlbQuantAwareTraining, f"set_{_key.name}").__doc__ = _key.doc
del _key


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
