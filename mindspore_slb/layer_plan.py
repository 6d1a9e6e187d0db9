"""Per-layer decisions of ``apply``: which layers are quantized and with how many bits, and the
summary rows that report them.

A layer is a candidate when the registry has a handler for its type and that type is enabled
(``nn.Conv2d`` by default, ``nn.Dense`` with ``enable_dense_quant``, user types as registered).
``exclude_layers`` keeps matching candidates in float; ``layer_bits`` gives matching ones their own
bit width, the first matching pattern winning. Patterns are ``fnmatch`` patterns over the layer's
path (``"features.conv0"``; a shared Cell is matched by the first path it is reachable under).
"""
import fnmatch
from dataclasses import dataclass

from mindspore import nn

from mindspore_slb.config import WEIGHT_BITS

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
    """
    path: str
    cell_type: str
    weight_shape: tuple
    bits: object
    params: int


def type_enabled(handler, config):
    return handler.enabled_by_default or (config.enable_dense_quant and handler.float_type is nn.Dense)


def _matches(rule, path, cell):
    return rule(path, cell) if callable(rule) else fnmatch.fnmatchcase(path, rule)


def bits_for(path, cell, handler, config):
    """Weight bits for this layer, or None to leave it in float."""
    if handler is None or not type_enabled(handler, config):
        return None
    if any(_matches(rule, path, cell) for rule in config.exclude_layers):
        return None
    for pattern, dtype in config.layer_bits.items():
        if fnmatch.fnmatchcase(path, pattern):
            return WEIGHT_BITS[dtype]
    return config.weight_bits


def summary_row(path, cell, layer_after, bits):
    weight = getattr(cell, "weight", None)
    return LayerSummary(path, type(cell).__name__, tuple(weight.shape) if weight is not None else None,
                        FLOAT if bits is None else bits,
                        sum(int(parameter.size) for parameter in layer_after.trainable_params()))


def unused_patterns(config, rows):
    """The name patterns of ``exclude_layers`` and ``layer_bits`` that match no layer: likely typos."""
    patterns = [rule for rule in config.exclude_layers if isinstance(rule, str)] + list(config.layer_bits)
    return [pattern for pattern in patterns if not any(fnmatch.fnmatchcase(row.path, pattern) for row in rows)]


def format_summary(rows):
    """The rows as an aligned text table."""
    header = ("path", "type", "weight shape", "bits", "params")
    lines = [header] + [(row.path or "<network>", row.cell_type, str(row.weight_shape), str(row.bits),
                         str(row.params)) for row in rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip() for line in lines)
