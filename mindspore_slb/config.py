"""The SLB configuration: defaults, validation and the temperature schedule it implies.

Each setting is declared once, in ``KEYS`` (name, default, check, doc); ``SlbConfig``'s attributes,
``CONFIG_KEYS`` and the checks and docstrings of ``SlbQuantAwareTraining``'s ``set_<name>`` setters
come from it, so a wrong value is reported the same way whether it came from the config dict or
from a setter.
"""
import copy
import math
from dataclasses import dataclass

from mindspore import nn
from mindspore.common.dtype import QuantDtype

from mindspore_slb.layers import SLB, WEIGHT_SEARCHES
from mindspore_slb.quant_dtypes import ACT_BITS, WEIGHT_BITS
from mindspore_slb.quantizer import FLOAT_START, MAX_TEMPERATURE, SEARCH_DTYPES, SEARCH_STARTS
from mindspore_slb.registry import registered_layers

__all__ = ["SlbConfig", "ConfigKey", "KEYS", "KEY_BY_NAME", "CONFIG_KEYS", "check_layer_types", "check_quant_dtype",
           "check_bool", "check_int", "check_float", "check_choice", "check_exclude_layers", "check_layer_bits",
           "split_quant_dtype", "temperature_at_epoch", "rise_start_epoch", "rise_epochs"]


def _type_name(value):
    return type(value).__name__


def check_quant_dtype(name, value, allowed):
    if not isinstance(value, QuantDtype):
        raise TypeError(f"'{name}' must be a QuantDtype, but got {value!r} of type {_type_name(value)}.")
    if value not in allowed:
        names = ", ".join(f"QuantDtype.{dtype.name}" for dtype in allowed)
        raise ValueError(f"'{name}' must be one of {names}, but got QuantDtype.{value.name}.")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"'{name}' must be a bool, but got {value!r} of type {_type_name(value)}.")
    return value


def check_int(name, value, minimum):
    # bool is an int subclass in Python; True epochs is almost certainly a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an int, but got {value!r} of type {_type_name(value)}.")
    if value < minimum:
        raise ValueError(f"'{name}' must be an int >= {minimum}, but got {value}.")
    return value


def check_float(name, value, low, high=None, low_inclusive=False):
    if not isinstance(value, float):
        raise TypeError(f"'{name}' must be a float, but got {value!r} of type {_type_name(value)}.")
    below = value < low if low_inclusive else value <= low
    if not math.isfinite(value) or below or (high is not None and value > high):
        bound = f">= {low}" if low_inclusive else f"> {low}"
        allowed = bound if high is None else f"in [{low}, {high}]" if low_inclusive else f"{bound} and <= {high:g}"
        raise ValueError(f"'{name}' must be a float {allowed}, but got {value}.")
    return value


def check_choice(name, value, allowed):
    if not isinstance(value, str):
        raise TypeError(f"'{name}' must be a str, one of {', '.join(map(repr, allowed))}, but got {value!r} "
                        f"of type {_type_name(value)}.")
    if value not in allowed:
        raise ValueError(f"'{name}' must be one of {', '.join(map(repr, allowed))}, but got {value!r}.")
    return value


def check_exclude_layers(name, value):
    """A list (or tuple) of fnmatch patterns over layer paths and predicates ``f(path, cell) -> bool``."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"'{name}' must be a list of name patterns (str) or predicates f(path, cell) -> bool, "
                        f"but got {value!r} of type {_type_name(value)}.")
    for item in value:
        if not (isinstance(item, str) or callable(item)):
            raise TypeError(f"'{name}' items must be name patterns (str) or predicates f(path, cell) -> bool, "
                            f"but got {item!r} of type {_type_name(item)}.")
    return tuple(value)


def check_layer_bits(name, value):
    """A dict {fnmatch pattern over layer paths: weight QuantDtype (INT1, INT2, INT4)}."""
    if not isinstance(value, dict):
        raise TypeError(f"'{name}' must be a dict {{layer name pattern: QuantDtype}}, but got {value!r} "
                        f"of type {_type_name(value)}.")
    for pattern, dtype in value.items():
        if not isinstance(pattern, str):
            raise TypeError(f"'{name}' keys must be layer name patterns (str), but got {pattern!r} "
                            f"of type {_type_name(pattern)}.")
        check_quant_dtype(f"{name}['{pattern}']", dtype, WEIGHT_BITS)
    return dict(value)


def check_layer_types(name, value):
    """A dict {registered float layer type: bool}: which layer types ``apply`` quantizes."""
    if not isinstance(value, dict):
        raise TypeError(f"'{name}' must be a dict {{registered layer type: bool}}, but got {value!r} "
                        f"of type {_type_name(value)}.")
    registered = [handler.float_type for handler in registered_layers()]
    for cell_type, enabled in value.items():
        if not isinstance(cell_type, type):
            raise TypeError(f"'{name}' keys must be layer types (classes), but got {cell_type!r} "
                            f"of type {_type_name(cell_type)}.")
        if cell_type not in registered:
            raise ValueError(f"'{name}' key {cell_type.__name__} is not a registered layer type; registered: "
                             f"{', '.join(t.__name__ for t in registered)} (register_layer adds one).")
        check_bool(f"{name}[{cell_type.__name__}]", enabled)
    return dict(value)


@dataclass(frozen=True)
class ConfigKey:
    """One setting of the algorithm, declared once: the config dict key, the ``SlbConfig`` attribute,
    the ``set_<name>`` setter's check and documentation all come from it.

    Attributes:
        name (str): the attribute, config key and setter suffix.
        default: the value before any is set (copied per configuration).
        check (callable): ``check(name, value)`` returns the value to store or raises, naming
            ``name``, the value and what is allowed.
        doc (str): what it does; the setter's docstring.
        config_key (bool): accepted in the config dict under its own name (the two dtypes come in
            ``quant_dtype`` there, as in Golden Stick).
        store (callable, optional): ``store(config, value)`` instead of setting the attribute, for
            a key that merges into its value or is a view of another key.
        view (bool): no attribute of its own: ``SlbConfig`` reads it from another key (a property).
    """
    name: str
    default: object
    check: object
    doc: str
    config_key: bool = True
    store: object = None
    view: bool = False


def _store_dense(config, enabled):
    # enable_dense_quant is layer_types[nn.Dense]: one setting, two names (Golden Stick's and the general one).
    config.layer_types = {**config.layer_types, nn.Dense: enabled}


def _merge_layer_types(config, layer_types):
    config.layer_types = {**config.layer_types, **layer_types}


# Every setting, in the order the configuration is shown.
KEYS = (
    ConfigKey("weight_quant_dtype", QuantDtype.INT1, lambda name, value: check_quant_dtype(name, value, WEIGHT_BITS),
              "QuantDtype.INT1, INT2 or INT4.", config_key=False),
    ConfigKey("act_quant_dtype", QuantDtype.INT8, lambda name, value: check_quant_dtype(name, value, ACT_BITS),
              "QuantDtype.INT8.", config_key=False),
    ConfigKey("enable_act_quant", False, check_bool, "Fake-quantize the quantized layers' inputs to 8 bits."),
    ConfigKey("enable_bn_calibration", False, check_bool,
              "Re-estimate BatchNorm statistics with the hard weights at the end of each epoch once the "
              "temperature rises."),
    ConfigKey("epoch_size", None, lambda name, value: check_int(name, value, 1),
              "Total epochs of the training, resumed epochs included (int > 0)."),
    ConfigKey("has_trained_epoch", None, lambda name, value: check_int(name, value, 0),
              "Epochs trained before this run, for a resume (int >= 0)."),
    ConfigKey("t_start_val", 1.0, lambda name, value: check_float(name, value, 0.0, MAX_TEMPERATURE),
              "The temperature of the first epochs (float > 0)."),
    ConfigKey("t_start_time", 0.2, lambda name, value: check_float(name, value, 0.0, 1.0, low_inclusive=True),
              "The fraction of the epochs after which the temperature starts rising (float in [0, 1])."),
    ConfigKey("t_end_time", 0.6, lambda name, value: check_float(name, value, 0.0, 1.0, low_inclusive=True),
              "The fraction of the epochs from which training uses the hard weights (float in [0, 1])."),
    ConfigKey("t_factor", 1.2, lambda name, value: check_float(name, value, 0.0),
              "The temperature's factor per epoch while it rises (float > 0; default 1.2, Golden Stick's)."),
    ConfigKey("t_end_val", None, lambda name, value: check_float(name, value, 0.0),
              "The temperature reached when training turns hard (float >= t_start_val), instead of a "
              "``t_factor``: the factor is then the one that gets there in the schedule's rising epochs, so "
              "the search ends as decided whatever the run's length. Give this or ``t_factor``."),
    ConfigKey("enable_dense_quant", False, check_bool,
              "Also quantize ``nn.Dense`` layers (off by default, as in Golden Stick); the same setting as "
              "``layer_types[nn.Dense]``.", store=_store_dense, view=True),
    ConfigKey("layer_types", {}, check_layer_types,
              "``{registered float layer type: bool}``: quantize the layers of that type (True) or leave "
              "them in float (False), as with torch.ao's ``set_object_type``. Each call updates the types it "
              "names; a type never named keeps its registration's ``enabled_by_default`` (``nn.Conv2d`` on, "
              "``nn.Dense`` off).", store=_merge_layer_types),
    ConfigKey("enable_weight_scale", True, check_bool,
              "Learn a per-output-channel scale of the candidates (default True); False gives Golden Stick's "
              "bare candidates."),
    ConfigKey("exclude_layers", (), check_exclude_layers,
              "Keep in float the layers whose path matches one of these fnmatch patterns, or for which one "
              "of these predicates ``f(path, cell)`` returns True."),
    ConfigKey("layer_bits", {}, check_layer_bits,
              "``{path pattern: QuantDtype}``: weight bits of matching layers (first match wins)."),
    ConfigKey("weight_search", SLB, lambda name, value: check_choice(name, value, WEIGHT_SEARCHES),
              "How the quantized layers learn their candidates: \"slb\" (default, SLB as Golden Stick does) "
              "or \"ste\", a straight-through-estimator baseline on the same candidates and layers, to compare "
              "SLB against; it has no temperature, so the temperature schedule leaves it alone."),
    ConfigKey("search_start", FLOAT_START, lambda name, value: check_choice(name, value, SEARCH_STARTS),
              "Where SLB's search starts: \"float\" (default), logits whose soft weight at ``t_start_val`` is "
              "the layer's float weight and whose hard weight is its nearest candidate, for quantizing a "
              "trained network; or \"random\", small random logits (every candidate about equally likely, as "
              "in the SLB paper and Golden Stick), for training from scratch, where the float weights are "
              "only an initialisation and an undecided search learns faster. The straight-through baseline "
              "always starts from the float weight."),
    ConfigKey("search_dtype", "float32", lambda name, value: check_choice(name, value, tuple(SEARCH_DTYPES)),
              "How SLB's logits are stored: \"float32\" (default) or \"bfloat16\", half the memory of the "
              "logits and, trained with ``SlbMomentum``, of their momentum, whose updates it rounds "
              "stochastically; the fused kernel computes in float32 either way. bfloat16 needs the fused CPU "
              "kernel and ``SlbMomentum`` (``nn.Momentum`` cannot step bfloat16 logits on CPU); the "
              "straight-through baseline keeps float32."),
    ConfigKey("quantize_frozen_layers", False, check_bool,
              "Also quantize layers whose weight is frozen (``requires_grad=False``; default False: such a "
              "layer is a fixed operator, such as a detector's integral conv, and stays in float)."),
)
KEY_BY_NAME = {key.name: key for key in KEYS}

# The config dict's keys: Golden Stick's ``quant_dtype`` (both dtypes) and every key declared as one.
CONFIG_KEYS = ("quant_dtype",) + tuple(key.name for key in KEYS if key.config_key)


class SlbConfig:
    """The algorithm's settings, one attribute per ``KEYS`` entry (``epoch_size`` and
    ``has_trained_epoch`` stay None until set). Keyword arguments are set as by ``set``."""

    def __init__(self, **values):
        for key in KEYS:
            if not key.view:
                setattr(self, key.name, copy.copy(key.default))
        # The keys a user set, as opposed to defaults: t_factor and t_end_val exclude each other.
        self.given = set()
        for name, value in values.items():
            if name not in KEY_BY_NAME:
                raise TypeError(f"SlbConfig got an unknown setting {name!r}; settings are "
                                f"{', '.join(KEY_BY_NAME)}.")
            self.set(name, value)

    def set(self, name, value):
        """Validate ``value`` for setting ``name`` and store it."""
        key = KEY_BY_NAME[name]
        value = key.check(name, value)
        if key.store is None:
            setattr(self, name, value)
        else:
            key.store(self, value)
        self.given.add(name)

    def type_enabled(self, float_type, enabled_by_default):
        """Whether ``apply`` quantizes layers of the registered ``float_type``."""
        return self.layer_types.get(float_type, enabled_by_default)

    @property
    def enable_dense_quant(self):
        dense = [handler for handler in registered_layers() if handler.float_type is nn.Dense]
        return self.type_enabled(nn.Dense, bool(dense) and dense[0].enabled_by_default)

    @property
    def weight_bits(self):
        return WEIGHT_BITS[self.weight_quant_dtype]

    def check_schedule(self):
        """The schedule needs both epoch counts, more epochs than already trained, and an end
        no earlier than its start."""
        for name in ("epoch_size", "has_trained_epoch"):
            if getattr(self, name) is None:
                raise RuntimeError(f"'{name}' must be set (config key or set_{name}) before the "
                                   f"temperature schedule can run.")
        if self.epoch_size <= self.has_trained_epoch:
            raise ValueError(f"'epoch_size' ({self.epoch_size}) must be greater than "
                             f"'has_trained_epoch' ({self.has_trained_epoch}).")
        if self.t_end_time < self.t_start_time:
            raise ValueError(f"'t_end_time' ({self.t_end_time}) must not be less than "
                             f"'t_start_time' ({self.t_start_time}).")
        rises = rise_epochs(self)
        if self.t_end_val is not None:
            if "t_factor" in self.given:
                raise ValueError(f"'t_factor' ({self.t_factor}) and 't_end_val' ({self.t_end_val}) both set how the "
                                 f"temperature rises: give one.")
            if self.t_end_val < self.t_start_val:
                raise ValueError(f"'t_end_val' ({self.t_end_val}) must not be less than 't_start_val' "
                                 f"({self.t_start_val}).")
            if self.t_end_val > MAX_TEMPERATURE:
                raise ValueError(f"'t_end_val' ({self.t_end_val}) is above the largest temperature "
                                 f"{MAX_TEMPERATURE:g}.")
            return
        # In logarithms: t_factor ** rises can overflow a Python float.
        factor = self.temperature_factor()
        if math.log(self.t_start_val) + rises * math.log(factor) > math.log(MAX_TEMPERATURE):
            raise ValueError(f"the temperature schedule reaches t_start_val * t_factor ** {rises} "
                             f"({self.t_start_val} * {factor} ** {rises}), above the largest "
                             f"temperature {MAX_TEMPERATURE:g}; lower 't_factor' or 't_start_val'.")

    def temperature_factor(self):
        """The temperature's factor per epoch while it rises: ``t_factor``, or the one that reaches
        ``t_end_val`` at the epoch training turns hard (1 when no epoch rises, as in a 1-epoch run:
        the search turns hard at its first temperature, as with ``t_factor``)."""
        if self.t_end_val is None:
            return self.t_factor
        rises = rise_epochs(self)
        return (self.t_end_val / self.t_start_val) ** (1.0 / rises) if rises else 1.0

    def __str__(self):
        def shown(value):
            if isinstance(value, QuantDtype):
                return f"QuantDtype.{value.name}"
            if isinstance(value, type):
                return value.__name__
            if isinstance(value, dict):
                return "{" + ", ".join(f"{shown(key)}: {shown(item)}" for key, item in value.items()) + "}"
            return repr(value)
        return ", ".join(f"{key.name}={shown(getattr(self, key.name))}" for key in KEYS)


def split_quant_dtype(value):
    """``quant_dtype`` is one QuantDtype (the weight's) or a pair [act, weight] as in Golden Stick."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"'quant_dtype' as a list must be [act_dtype, weight_dtype], "
                             f"but got {len(value)} items: {value!r}.")
        return value[0], value[1]
    if isinstance(value, QuantDtype):
        return QuantDtype.INT8, value
    raise TypeError(f"'quant_dtype' must be a QuantDtype or a list [act_dtype, weight_dtype], "
                    f"but got {value!r} of type {_type_name(value)}.")


def temperature_at_epoch(epoch, config):
    """Temperature for 1-based ``epoch`` (epochs before a resume included) and whether the
    hard forward is used in this epoch, per the SLB schedule."""
    t_start_epoch = rise_start_epoch(config)
    t_end_epoch = int(config.epoch_size * config.t_end_time)
    temperature = config.t_start_val
    if epoch > t_start_epoch:
        temperature *= config.temperature_factor() ** (min(epoch, t_end_epoch) - t_start_epoch)
    return temperature, epoch >= t_end_epoch


def rise_start_epoch(config):
    """Last epoch before the temperature starts rising."""
    return int(config.epoch_size * config.t_start_time)


def rise_epochs(config):
    """How many times the temperature rises: from the epoch after ``rise_start_epoch`` to the
    epoch training turns hard, where it reaches its last value."""
    return max(int(config.epoch_size * config.t_end_time) - rise_start_epoch(config), 0)
