"""The quant_type option, e.g. 'W2A8', parsed once into what it asks for."""
import re
from collections import namedtuple

FLOAT = "W32"
# _STE: the straight-through-estimator baseline on SLB's candidates, layers and schedule.
QUANT_TYPES = (FLOAT, "W1", "W2", "W4", "W1A8", "W2A8", "W4A8", "W1_STE", "W2_STE", "W4_STE")
# The pattern of a quant_type, also inside a checkpoint's name.
QUANT_TYPE_PATTERN = r"W\d+(?:A8|_STE)?"
ACTIVATION_SUFFIX = "A8"
STE_SUFFIX = "_STE"


class QuantType(namedtuple("QuantType", "weight_bits activation_bits search")):
    """weight_bits: 1, 2, 4, or 32 for the float network; activation_bits: 8, or None for float
    activations; search: 'slb', 'ste' (the straight-through baseline), or None for the float network."""

    @property
    def is_float(self):
        """The float baseline (W32): no SLB applied, nothing quantized."""
        return self.search is None


def parse_quant_type(text):
    """'W2A8' -> QuantType(2, 8, 'slb'); 'W1_STE' -> QuantType(1, None, 'ste'); 'W32' -> QuantType(32, None, None)."""
    match = re.fullmatch(r"W(\d+)(A8|_STE)?", text)
    if match is None:
        raise ValueError(f"quant_type must be one of {list(QUANT_TYPES)}, got {text!r}")
    bits, suffix = int(match.group(1)), match.group(2)
    if text == FLOAT:
        return QuantType(bits, None, None)
    return QuantType(bits, 8 if suffix == ACTIVATION_SUFFIX else None, "ste" if suffix == STE_SUFFIX else "slb")


def weight_bits(quant_type):
    """'W2A8' -> 2; 'W1_STE' -> 1; 'W32' (the float baseline) -> 32."""
    return parse_quant_type(quant_type).weight_bits
