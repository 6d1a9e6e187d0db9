"""mindspore_slb: SLB (Searching for Low-bit Weights) quantization for MindSpore.

A drop-in replacement for Golden Stick's ``SlbQuantAwareTraining`` that also runs on CPU.
"""
from mindspore.common.dtype import QuantDtype

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.algorithm import SlbQuantAwareTraining
from mindspore_slb.callbacks import BatchNormCalibrator, BNCalibration, TemperatureScheduler, calibrate_batchnorm
from mindspore_slb.layer_plan import LayerSummary
from mindspore_slb.layers import Conv2dSlbQuant, DenseSlbQuant, SlbQuantLayer
from mindspore_slb.packed_layers import packed_network
from mindspore_slb.packing import PackedFileError, load_packed, save_packed
from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer
from mindspore_slb.registry import LayerHandler, register_layer, registered_layers, unregister_layer
from mindspore_slb.ste import SteWeightQuantizer

__version__ = "0.1.0"

__all__ = ["SlbQuantAwareTraining", "QuantDtype", "Conv2dSlbQuant", "SlbFakeQuantizerPerLayer",
           "SlbActQuantizer", "TemperatureScheduler", "BNCalibration", "BatchNormCalibrator", "calibrate_batchnorm",
           "SlbQuantLayer", "DenseSlbQuant", "LayerHandler", "register_layer", "unregister_layer",
           "registered_layers", "LayerSummary", "save_packed", "load_packed", "packed_network", "PackedFileError",
           "SteWeightQuantizer"]
