"""Export formats: how a trained network is written to a file for deployment, looked up by name.

Each format is registered once, here or by the user, with ``register_export_format``; everything
that offers a choice of formats (``export_network``, the recipe's ``file_format`` option) takes its
names from this registry. Built in:

- ``MINDIR``: the converted network (``convert``), discrete weights stored as float32;
- ``MINDIR_PACKED``: a MINDIR whose quantized weights are bit-packed codes unpacked in the graph
  (``packed_network``);
- ``SLB``: mindspore_slb's packed file (``save_packed``; docs/slb_format.md);
- ``ONNX`` and ``ONNX_PACKED``: the converted network for onnxruntime, with float32 or bit-packed
  weights (``save_onnx``; needs the optional ``onnx`` package, imported only when written).

A writer is called as ``write(network, inputs, file_name)``: the trained network (quantized, or a
float one for the formats that do not pack), a tuple of sample input Tensors and the whole file
name, ending included. The writers import what they use when called, so that looking the formats
up costs no import of MindSpore or of an optional package.
"""
import collections
import types

__all__ = ["ExportFormat", "ExportFormatError", "register_export_format", "unregister_export_format",
           "export_format", "export_formats", "export_network"]

ExportFormat = collections.namedtuple("ExportFormat", "name ending packed write description")
ExportFormat.__doc__ = """One registered export format.

name (str): what it is chosen by; ending (str): what follows the file name given to
``export_network`` (formats differ, so that writing several keeps all); packed (bool): whether it
stores quantized weights packed to their bits, so it needs a quantized network; write (callable):
``write(network, inputs, file_name)``; description (str): one line for help texts.
"""


class ExportFormatError(RuntimeError):
    """A format that cannot be written here: its optional package is missing, or the network holds
    an operator the format cannot express (the message says which)."""


_FORMATS = {}  # name -> ExportFormat, in registration order


def register_export_format(name, write, ending, packed=False, description=""):
    """Register (or replace) the export format ``name``; see ``ExportFormat``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"'name' must be a non-empty str, but got {name!r}.")
    if not callable(write):
        raise TypeError(f"'write' must be callable as write(network, inputs, file_name), but got {write!r}.")
    if not isinstance(ending, str) or not ending:
        raise TypeError(f"'ending' must be a non-empty str (such as '.mindir'), but got {ending!r}.")
    if not isinstance(packed, bool):
        raise TypeError(f"'packed' must be a bool, but got {packed!r}.")
    if not isinstance(description, str):
        raise TypeError(f"'description' must be a str, but got {description!r}.")
    _FORMATS[name] = ExportFormat(name, ending, packed, write, description)


def unregister_export_format(name):
    """Forget the export format ``name``; an unregistered name is an error."""
    export_format(name)
    del _FORMATS[name]


def export_format(name):
    """The ``ExportFormat`` registered as ``name``; a ValueError naming it and the registered ones
    when there is none."""
    if name not in _FORMATS:
        raise ValueError(f"unknown export format {name!r}: registered are {', '.join(_FORMATS)}.")
    return _FORMATS[name]


def export_formats():
    """name -> ``ExportFormat`` of every registered format, in registration order (a read-only view
    that follows later registrations)."""
    return types.MappingProxyType(_FORMATS)


def export_network(network, inputs, file_name, file_format="MINDIR"):
    """Write ``network`` in the format ``file_format`` to ``file_name`` + the format's ending.

    Like ``convert``, the formats turn the quantized layers into deployable ones inside ``network``:
    export a network once.

    Args:
        network (Cell): the network returned by ``SlbQuantAwareTraining.apply`` (trained); a float
            network for a format that does not pack.
        inputs (Tensor or tuple of Tensor): sample inputs, as for ``mindspore.export``.
        file_name (str): the file's name without the format's ending.
        file_format (str): a registered format's name.

    Returns:
        str: the name of the file written.

    Raises:
        ExportFormatError: the format cannot be written here (missing package, unsupported operator).
    """
    chosen = export_format(file_format)
    if not isinstance(file_name, str) or not file_name:
        raise TypeError(f"'file_name' must be a non-empty str, but got {file_name!r}.")
    path = file_name + chosen.ending
    chosen.write(network, inputs if isinstance(inputs, (tuple, list)) else (inputs,), path)
    return path


# pylint: disable=import-outside-toplevel
def _write_mindir(network, inputs, file_name):
    import mindspore as ms
    from mindspore_slb.convert import convert_network
    ms.export(convert_network(network), *inputs, file_name=file_name, file_format="MINDIR")


def _write_packed_mindir(network, inputs, file_name):
    import mindspore as ms
    from mindspore_slb.packed_layers import packed_network
    ms.export(packed_network(network), *inputs, file_name=file_name, file_format="MINDIR")


def _write_slb(network, _inputs, file_name):
    from mindspore_slb.packing import save_packed
    save_packed(network, file_name)


def _onnx_writer(packed):
    def write(network, inputs, file_name):
        try:
            from mindspore_slb.onnx_export import OnnxExportError, save_onnx
        except ImportError as error:
            raise ExportFormatError(f"ONNX export needs the onnx package ({error}): pip install "
                                    "'mindspore_slb[onnx]'") from None
        try:
            save_onnx(network, inputs, file_name, packed=packed)
        except OnnxExportError as error:
            raise ExportFormatError(str(error)) from None
    return write
# pylint: enable=import-outside-toplevel


register_export_format("MINDIR", _write_mindir, ".mindir", False,
                       "the converted network, discrete weights as float32")
register_export_format("MINDIR_PACKED", _write_packed_mindir, "_packed.mindir", True,
                       "bit-packed weights unpacked in the graph")
register_export_format("SLB", _write_slb, ".slb", True, "mindspore_slb's packed file (load_packed, slb_reader)")
register_export_format("ONNX", _onnx_writer(packed=False), ".onnx", False, "the converted network, float32 weights")
register_export_format("ONNX_PACKED", _onnx_writer(packed=True), "_packed.onnx", True,
                       "bit-packed weights rebuilt in the graph by standard ONNX operators")
