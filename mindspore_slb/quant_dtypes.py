"""The QuantDtype of each bit width the package quantizes to, and back.

``WEIGHT_DTYPES`` is the one table from a weight bit width to its ``QuantDtype`` (MindSpore's own
enum, which Golden Stick's configuration takes): the recipe, the scripts and the benchmarks build
their configurations from it.
"""
from mindspore.common.dtype import QuantDtype

__all__ = ["QuantDtype", "WEIGHT_DTYPES", "WEIGHT_BITS", "ACT_BITS"]

WEIGHT_DTYPES = {1: QuantDtype.INT1, 2: QuantDtype.INT2, 4: QuantDtype.INT4}
# The weight and the activation QuantDtypes a configuration accepts, with their bit widths.
WEIGHT_BITS = {dtype: bits for bits, dtype in WEIGHT_DTYPES.items()}
ACT_BITS = {QuantDtype.INT8: 8}
