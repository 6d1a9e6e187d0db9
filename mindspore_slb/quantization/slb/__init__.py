"""Golden Stick's ``quantization.slb`` path."""
from mindspore_slb.algorithm import SlbQuantAwareTraining

__all__ = ["SlbQuantAwareTraining"]
