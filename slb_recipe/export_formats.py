"""The recipe's export formats: name -> how the file is named and written.

A new format is one ``register_format`` call; the ``file_format`` option's choices and help come
from ``EXPORT_FORMATS``.
"""
from collections import namedtuple

import mindspore as ms

# Names looked up when a file is written: benchmarks/side_by_side.py runs the recipe on Golden
# Stick through a shim serving mindspore_slb's training names only.
import mindspore_slb

ExportFormat = namedtuple("ExportFormat", "ending packed write description")
ExportFormat.__doc__ = """ending: what follows file_name in the file's name (formats differ, so that exporting
several keeps all); packed: whether quantized weights are stored packed (W32 has none to pack);
write(net, algo, sample, path): writes the file from the trained network (algo is None for W32);
description: one line for the option's help."""

EXPORT_FORMATS = {}


class FormatError(RuntimeError):
    """A format that cannot be written here (its package missing, an operator it cannot express)."""


def register_format(name, ending, packed, write, description):
    EXPORT_FORMATS[name] = ExportFormat(ending, packed, write, description)


def _write_mindir(net, algo, sample, path):
    ms.export(net if algo is None else algo.convert(net), sample, file_name=path, file_format="MINDIR")


def _write_packed_mindir(net, _algo, sample, path):
    ms.export(mindspore_slb.packed_network(net), sample, file_name=path, file_format="MINDIR")


def _write_packed_file(net, _algo, _sample, path):
    mindspore_slb.save_packed(net, path)


def _onnx_writer(packed):
    def write(net, _algo, sample, path):
        try:
            save_onnx, error_type = mindspore_slb.save_onnx, mindspore_slb.OnnxExportError
        except ImportError as error:
            raise FormatError(f"ONNX export needs the onnx package ({error}): pip install "
                              "'mindspore_slb[onnx]'") from None
        try:
            save_onnx(net, sample, path, packed=packed)
        except error_type as error:
            raise FormatError(str(error)) from None
    return write


register_format("MINDIR", ".mindir", False, _write_mindir, "the converted network, discrete weights as float32")
register_format("MINDIR_PACKED", "_packed.mindir", True, _write_packed_mindir,
                "bit-packed weights unpacked in the graph")
register_format("SLB", ".slb", True, _write_packed_file, "mindspore_slb's packed file (load_packed, slb_reader)")
register_format("ONNX", ".onnx", False, _onnx_writer(packed=False), "the converted network, float32 weights")
register_format("ONNX_PACKED", "_packed.onnx", True, _onnx_writer(packed=True),
                "bit-packed weights rebuilt in the graph by standard ONNX operators")
