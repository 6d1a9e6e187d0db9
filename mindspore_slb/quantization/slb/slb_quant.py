"""Golden Stick's ``slb_quant`` path."""
from mindspore_slb.layers import Conv2dSlbQuant

__all__ = ["Conv2dSlbQuant"]
