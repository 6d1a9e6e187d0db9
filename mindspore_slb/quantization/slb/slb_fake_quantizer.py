"""Golden Stick's ``slb_fake_quantizer`` path."""
from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer

__all__ = ["SlbFakeQuantizerPerLayer", "SlbActQuantizer"]
