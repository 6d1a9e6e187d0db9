"""Per-layer decisions of ``apply``: which layers are quantized and with how many bits, and the
summary rows that report them.

A layer is a candidate when the registry has a handler for its type and that type is enabled
(``nn.Conv2d`` by default, ``nn.Dense`` with ``enable_dense_quant``, user types as registered;
``layer_types`` turns any registered type on or off).
``exclude_layers`` keeps matching candidates in float, and so is a layer whose weight is frozen
(``requires_grad=False``, a fixed operator) unless ``quantize_frozen_layers``; ``layer_bits`` gives
matching ones their own bit width, the first matching pattern winning. Patterns are ``fnmatch``
patterns over the layer's path (``"features.conv0"``; a shared Cell is matched by the first path it
is reachable under).
"""
import fnmatch
from dataclasses import dataclass

import numpy as np
from mindspore import Parameter, nn

from mindspore_slb.quant_dtypes import WEIGHT_BITS
from mindspore_slb.registry import handler_for, registered_layers

__all__ = ["FLOAT", "LayerSummary", "type_enabled", "float_reason", "bits_for", "summary_row", "check_plan",
           "unused_patterns", "format_summary"]

FLOAT = "float"


@dataclass(frozen=True)
class LayerSummary:
    """One quantizable layer after ``apply``.

    Attributes:
        path (str): where it is in the network ("" for the network itself).
        cell_type (str): the type of the layer ``apply`` found.
        weight_shape (tuple): its float weight's shape (None when it has no ``weight``).
        bits (int or str): weight bits, or "float" when it was left in float.
        params (int): trainable parameter elements of the layer after ``apply`` (K logits per weight).
        reason (str): why a layer left in float was, "" for a quantized one.
    """
    path: str
    cell_type: str
    weight_shape: tuple
    bits: object
    params: int
    reason: str = ""


def type_enabled(handler, config):
    """Whether ``apply`` quantizes the layers ``handler`` handles: ``layer_types`` says, else the handler's default."""
    return config.type_enabled(handler.float_type, handler.enabled_by_default)


def _matches(rule, path, cell):
    return rule(path, cell) if callable(rule) else fnmatch.fnmatchcase(path, rule)


def float_reason(path, cell, handler, config):
    """Why this layer of a registered type stays in float, or None when it is quantized."""
    if not type_enabled(handler, config):
        return (f"{handler.float_type.__name__} quantization is off"
                + (" (enable_dense_quant)" if handler.float_type is nn.Dense else " (layer_types)"))
    if any(_matches(rule, path, cell) for rule in config.exclude_layers):
        return "excluded (exclude_layers)"
    weight = getattr(cell, "weight", None)
    if isinstance(weight, Parameter) and not weight.requires_grad and not config.quantize_frozen_layers:
        return "frozen weight, requires_grad=False (quantize_frozen_layers)"
    return None


def bits_for(path, cell, handler, config):
    """Weight bits for this layer, or None to leave it in float."""
    if handler is None or float_reason(path, cell, handler, config) is not None:
        return None
    for pattern, dtype in config.layer_bits.items():
        if fnmatch.fnmatchcase(path, pattern):
            return WEIGHT_BITS[dtype]
    return config.weight_bits


def summary_row(path, cell, layer_after, bits, reason=None):
    weight = getattr(cell, "weight", None)
    return LayerSummary(path, type(cell).__name__, tuple(weight.shape) if weight is not None else None,
                        FLOAT if bits is None else bits,
                        sum(int(parameter.size) for parameter in layer_after.trainable_params()), reason or "")


def check_plan(network, config):
    """Refuse, before any layer is replaced, a ``layer_types`` entry for a type unregistered since it was
    set, a layer whose quantized type cannot be built with ``weight_search``, a ``layer_bits``
    pattern that matches only layers left in float, and a layer to quantize whose float weight is not finite (its logits would be garbage).
    """
    registered = [handler.float_type for handler in registered_layers()]
    for cell_type in config.layer_types:
        if cell_type not in registered:
            raise ValueError(f"'layer_types' names {cell_type.__name__}, which is no longer a registered layer type; "
                             f"registered: {', '.join(t.__name__ for t in registered)}.")
    quantized, left_float = [], []
    for path, cell in network.cells_and_names():
        handler = handler_for(cell)
        # apply replaces a quantized layer whole: what is inside it is not a layer of its own.
        if handler is None or any(not outer or path.startswith(f"{outer}.") for outer in quantized):
            continue
        reason = float_reason(path, cell, handler, config)
        if reason is not None:
            left_float.append((path, reason))
            continue
        quantized.append(path)
        handler.check_search(config.weight_search)
        weight = getattr(cell, "weight", None)
        if weight is not None:
            values = weight.asnumpy()
            bad = values.size - int(np.isfinite(values).sum())
            if bad:
                raise ValueError(f"'network' layer '{path or '<network>'}' ({type(cell).__name__}) has {bad} "
                                 f"non-finite (NaN or infinite) float weight value(s); SLB needs finite weights to "
                                 f"start its search from: fix or exclude the layer.")
    for pattern in config.layer_bits:
        if any(fnmatch.fnmatchcase(path, pattern) for path in quantized):
            continue
        for path, reason in left_float:
            if fnmatch.fnmatchcase(path, pattern):
                raise ValueError(f"'layer_bits' pattern '{pattern}' matches layer '{path}', which stays in float: "
                                 f"{reason}; remove the pattern or quantize the layer.")


def unused_patterns(config, rows):
    """The name patterns of ``exclude_layers`` and ``layer_bits`` that match no layer: likely typos."""
    patterns = [rule for rule in config.exclude_layers if isinstance(rule, str)] + list(config.layer_bits)
    return [pattern for pattern in patterns if not any(fnmatch.fnmatchcase(row.path, pattern) for row in rows)]


def format_summary(rows):
    """The rows as an aligned text table."""
    header = ("path", "type", "weight shape", "bits", "params", "why float")
    lines = [header] + [(row.path or "<network>", row.cell_type, str(row.weight_shape), str(row.bits),
                         str(row.params), row.reason) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in lines)
