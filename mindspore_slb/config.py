"""The SLB configuration: defaults, validation and the temperature schedule it implies.

Every public setter of ``SlbQuantAwareTraining`` funnels through the validators here, so a wrong
value is reported the same way whether it came from the config dict or from a setter.
"""
import math
from dataclasses import dataclass, field, fields

from mindspore.common.dtype import QuantDtype

from mindspore_slb.layers import SLB, WEIGHT_SEARCHES
from mindspore_slb.quant_dtypes import ACT_BITS, WEIGHT_BITS
from mindspore_slb.quantizer import MAX_TEMPERATURE

__all__ = ["SlbConfig", "CONFIG_KEYS", "check_quant_dtype", "check_bool", "check_int", "check_float", "check_choice",
           "check_exclude_layers", "check_layer_bits", "split_quant_dtype", "temperature_at_epoch",
           "rise_start_epoch", "rise_epochs"]


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


_FIELD_CHECKS = {
    "weight_quant_dtype": lambda name, value: check_quant_dtype(name, value, WEIGHT_BITS),
    "act_quant_dtype": lambda name, value: check_quant_dtype(name, value, ACT_BITS),
    "enable_act_quant": check_bool,
    "enable_bn_calibration": check_bool,
    "epoch_size": lambda name, value: check_int(name, value, 1),
    "has_trained_epoch": lambda name, value: check_int(name, value, 0),
    "t_start_val": lambda name, value: check_float(name, value, 0.0, MAX_TEMPERATURE),
    "t_start_time": lambda name, value: check_float(name, value, 0.0, 1.0, low_inclusive=True),
    "t_end_time": lambda name, value: check_float(name, value, 0.0, 1.0, low_inclusive=True),
    "t_factor": lambda name, value: check_float(name, value, 0.0),
    "t_end_val": lambda name, value: check_float(name, value, 0.0),
    "enable_dense_quant": check_bool,
    "enable_weight_scale": check_bool,
    "exclude_layers": check_exclude_layers,
    "layer_bits": check_layer_bits,
    "weight_search": lambda name, value: check_choice(name, value, WEIGHT_SEARCHES),
    "quantize_frozen_layers": check_bool,
}


@dataclass
class SlbConfig:
    """The algorithm's settings; ``epoch_size`` and ``has_trained_epoch`` stay None until set."""
    weight_quant_dtype: QuantDtype = QuantDtype.INT1
    act_quant_dtype: QuantDtype = QuantDtype.INT8
    enable_act_quant: bool = False
    enable_bn_calibration: bool = False
    epoch_size: int = None
    has_trained_epoch: int = None
    t_start_val: float = 1.0
    t_start_time: float = 0.2
    t_end_time: float = 0.6
    t_factor: float = 1.2
    # An alternative to t_factor (a user sets one of the two): the temperature at the hard switch.
    t_end_val: float = None
    enable_dense_quant: bool = False
    enable_weight_scale: bool = True
    exclude_layers: tuple = ()
    layer_bits: dict = field(default_factory=dict)
    weight_search: str = SLB
    quantize_frozen_layers: bool = False

    def __post_init__(self):
        # The fields a user set, as opposed to defaults: t_factor and t_end_val exclude each other.
        self.given = set()

    def set(self, name, value):
        """Validate ``value`` for field ``name`` and store it."""
        setattr(self, name, _FIELD_CHECKS[name](name, value))
        self.given.add(name)

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
            if isinstance(value, dict):
                return "{" + ", ".join(f"{key!r}: {shown(item)}" for key, item in value.items()) + "}"
            return repr(value)
        return ", ".join(f"{field.name}={shown(getattr(self, field.name))}" for field in fields(self))


CONFIG_KEYS = ("quant_dtype", "enable_act_quant", "enable_bn_calibration", "epoch_size",
               "has_trained_epoch", "t_start_val", "t_start_time", "t_end_time", "t_factor", "t_end_val",
               "enable_dense_quant", "enable_weight_scale", "exclude_layers", "layer_bits", "weight_search",
               "quantize_frozen_layers")


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
