"""``QuantDtype`` where older Golden Stick releases had it; it is MindSpore's own enum."""
from mindspore.common.dtype import QuantDtype

__all__ = ["QuantDtype"]
