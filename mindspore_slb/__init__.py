"""mindspore_slb: SLB (Searching for Low-bit Weights) quantization for MindSpore.

A drop-in replacement for Golden Stick's ``SlbQuantAwareTraining`` that also runs on CPU.

The names below are imported on first use, so that ``mindspore_slb.slb_reader`` (the packed file
read with NumPy alone) runs where MindSpore is not installed, and ``save_onnx`` needs the optional
``onnx`` package only when it is called.
"""
import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_HOMES = {
    "QuantDtype": "mindspore.common.dtype",
    "SlbActQuantizer": "mindspore_slb.act_quant",
    "SlbQuantAwareTraining": "mindspore_slb.algorithm",
    "BNCalibration": "mindspore_slb.callbacks",
    "BatchNormCalibrator": "mindspore_slb.callbacks",
    "TemperatureScheduler": "mindspore_slb.callbacks",
    "calibrate_batchnorm": "mindspore_slb.callbacks",
    "LayerSummary": "mindspore_slb.layer_plan",
    "Conv2dSlbQuant": "mindspore_slb.layers",
    "DenseSlbQuant": "mindspore_slb.layers",
    "SlbQuantLayer": "mindspore_slb.layers",
    "packed_network": "mindspore_slb.packed_layers",
    "PackedFileError": "mindspore_slb.slb_reader",
    "load_packed": "mindspore_slb.packing",
    "save_packed": "mindspore_slb.packing",
    "save_onnx": "mindspore_slb.onnx_export",
    "OnnxExportError": "mindspore_slb.onnx_export",
    "SlbFakeQuantizerPerLayer": "mindspore_slb.quantizer",
    "LayerHandler": "mindspore_slb.registry",
    "register_layer": "mindspore_slb.registry",
    "registered_layers": "mindspore_slb.registry",
    "unregister_layer": "mindspore_slb.registry",
    "SteWeightQuantizer": "mindspore_slb.ste",
}

__all__ = ["SlbQuantAwareTraining", "QuantDtype", "Conv2dSlbQuant", "SlbFakeQuantizerPerLayer",
           "SlbActQuantizer", "TemperatureScheduler", "BNCalibration", "BatchNormCalibrator", "calibrate_batchnorm",
           "SlbQuantLayer", "DenseSlbQuant", "LayerHandler", "register_layer", "unregister_layer",
           "registered_layers", "LayerSummary", "save_packed", "load_packed", "packed_network", "PackedFileError",
           "SteWeightQuantizer", "save_onnx", "OnnxExportError"]


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'mindspore_slb' has no attribute '{name}'")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
