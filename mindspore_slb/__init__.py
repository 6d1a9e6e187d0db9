"""mindspore_slb: SLB (Searching for Low-bit Weights) quantization for MindSpore.

A drop-in replacement for Golden Stick's ``SlbQuantAwareTraining`` that also runs on CPU.

The names below are imported on first use, so that ``mindspore_slb.slb_reader`` (the packed file
read with NumPy alone) runs where MindSpore is not installed, and ``save_onnx`` needs the optional
``onnx`` package only when it is called.
"""
import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it, grouped by what a user does with it.
_HOMES = {
    # configure and train
    "SlbQuantAwareTraining": "mindspore_slb.algorithm",
    "QuantDtype": "mindspore_slb.quant_dtypes",
    "WEIGHT_DTYPES": "mindspore_slb.quant_dtypes",
    "TemperatureScheduler": "mindspore_slb.callbacks",
    "BNCalibration": "mindspore_slb.callbacks",
    "BatchNormCalibrator": "mindspore_slb.callbacks",
    "calibrate_batchnorm": "mindspore_slb.callbacks",
    "CALIBRATION_BATCHES": "mindspore_slb.callbacks",
    "LayerSummary": "mindspore_slb.layer_plan",
    "SlbMomentum": "mindspore_slb.optimizer",
    # quantized layers and quantizers, and registering a layer type of one's own
    "SlbQuantLayer": "mindspore_slb.layers",
    "Conv2dSlbQuant": "mindspore_slb.layers",
    "DenseSlbQuant": "mindspore_slb.layers",
    "deployable_conv2d": "mindspore_slb.layers",
    "deployable_dense": "mindspore_slb.layers",
    "SlbFakeQuantizerPerLayer": "mindspore_slb.quantizer",
    "SteWeightQuantizer": "mindspore_slb.ste",
    "SlbActQuantizer": "mindspore_slb.act_quant",
    "LayerHandler": "mindspore_slb.registry",
    "register_layer": "mindspore_slb.registry",
    "unregister_layer": "mindspore_slb.registry",
    "registered_layers": "mindspore_slb.registry",
    "is_quantized": "mindspore_slb.registry",
    # where the search stands
    "decidedness": "mindspore_slb.quantizer",
    # deploy (quantized_weights and the codes functions: what a format of one's own writes)
    "export_network": "mindspore_slb.export",
    "ExportFormat": "mindspore_slb.export",
    "ExportFormatError": "mindspore_slb.export",
    "register_export_format": "mindspore_slb.export",
    "unregister_export_format": "mindspore_slb.export",
    "export_format": "mindspore_slb.export",
    "export_formats": "mindspore_slb.export",
    "quantized_weights": "mindspore_slb.packed_layers",
    "pack_codes": "mindspore_slb.codes",
    "unpack_codes": "mindspore_slb.codes",
    "decode_weight": "mindspore_slb.codes",
    "packed_network": "mindspore_slb.packed_layers",
    "save_packed": "mindspore_slb.packing",
    "load_packed": "mindspore_slb.packing",
    "size_rows": "mindspore_slb.packing",
    "PackedFileError": "mindspore_slb.slb_reader",
    "save_onnx": "mindspore_slb.onnx_export",
    "OnnxExportError": "mindspore_slb.onnx_export",
}

__all__ = list(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'mindspore_slb' has no attribute '{name}'")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
