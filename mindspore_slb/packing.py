"""Saving a quantized network to the ``.slb`` packed file, loading one, and what each part of it costs.

The file format itself lives in ``mindspore_slb.slb_reader`` (docs/slb_format.md), the packing of
codes in ``mindspore_slb.codes``; this module writes the file from a trained network
(``save_packed``), loads it into the user's float network (``load_packed``) and lists the bytes of
every stored item (``size_rows``). A quantized layer at ``path`` stores ``path.weight_codes`` (packed
uint8), ``path.weight_values`` (its K candidates, float32) and, when it has one,
``path.weight_scale`` (per output channel); every other parameter of the deployable network
(BatchNorm, float layers, biases, activation-quantizer ranges) is stored as it is, under its name.
"""
import os

import numpy as np
from mindspore import Parameter, Tensor, nn

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.codes import decode_weight, pack_codes
from mindspore_slb.convert import QuantInputCell
from mindspore_slb.packed_layers import require_quantized_weights
from mindspore_slb.rewrite import replace_cells
from mindspore_slb.slb_reader import PackedFileError, file_bytes, fspath, layer_codes, read_packed

__all__ = ["save_packed", "load_packed", "size_rows", "write_packed"]


def _kept_parameters(network, layers):
    """(name, Parameter) of every parameter stored as it is: all but the layers' replaced ones."""
    replaced = {id(param) for layer in layers for param in layer.replaced_parameters}
    return [(name, param) for name, param in network.parameters_and_names() if id(param) not in replaced]


def _layer_tensors(layer):
    """name -> ndarray of what stands for one quantized layer's weight: packed codes, values, scale."""
    tensors = {f"{layer.path}.weight_codes": pack_codes(layer.codes, layer.bits),
               f"{layer.path}.weight_values": np.asarray(layer.values, np.float32)}
    if layer.scale is not None:
        tensors[f"{layer.path}.weight_scale"] = layer.scale
    return tensors


def _stored_tensors(network, layers):
    """name -> ndarray of everything the file holds, in network order."""
    tensors = {}
    for layer in layers:
        tensors.update(_layer_tensors(layer))
    for name, param in _kept_parameters(network, layers):
        tensors[name] = param.asnumpy()
    return tensors


def size_rows(network, packed=True):
    """What each stored item of a quantized network costs: one row per quantized layer and per other
    parameter, as dicts with name, shape, bits, params, float_bytes, stored_bytes (``packed=False``:
    the quantized weights stored as float32, as a plain MINDIR does)."""
    layers = require_quantized_weights(network, "network")
    rows = []
    for layer in layers:
        count = layer.codes.size
        stored = sum(array.nbytes for array in _layer_tensors(layer).values()) if packed else count * 4
        rows.append({"name": f"{layer.path}.weight", "shape": tuple(layer.codes.shape), "bits": layer.bits,
                     "params": count, "float_bytes": count * 4, "stored_bytes": stored})
    for name, param in _kept_parameters(network, layers):
        array = param.asnumpy()
        rows.append({"name": name, "shape": array.shape, "bits": 8 * array.itemsize, "params": array.size,
                     "float_bytes": array.nbytes, "stored_bytes": array.nbytes})
    return rows


def save_packed(network, file_name):
    """Write a quantized network to ``file_name`` with every quantized weight packed to its bits.

    Args:
        network (Cell): the network returned by ``SlbQuantAwareTraining.apply`` (trained).
        file_name (str or os.PathLike): the file to write (conventionally ``*.slb``).

    Returns:
        str: ``file_name``.
    """
    layers = require_quantized_weights(network, "network")
    file_name = fspath(file_name)
    if not isinstance(file_name, str) or not file_name:
        raise TypeError(f"'file_name' must be a non-empty str or os.PathLike, but got {file_name!r}.")
    header_layers = [{"path": layer.path, "shape": list(layer.codes.shape), "bits": layer.bits,
                      "input_quantizer_bits": None if layer.input_quantizer is None else layer.input_quantizer.num_bits}
                     for layer in layers]
    return write_packed(file_name, header_layers, _stored_tensors(network, layers))


def write_packed(file_name, header_layers, tensors):
    """Write the packed file of the header's layer entries and the tensors (name -> ndarray, in
    network order), under a temporary name first; returns ``file_name``."""
    content = file_bytes({"layers": header_layers}, tensors)
    temporary = file_name + ".partial"
    with open(temporary, "wb") as stream:
        stream.write(content)
    os.replace(temporary, file_name)
    return file_name


def _check_network(network, layers, tensors):
    """Raise ValueError naming the first layer or parameter of ``network`` that does not match the file."""
    cells = dict(network.cells_and_names())
    own = set()
    for layer in layers:
        path, shape = layer["path"], tuple(layer["shape"])
        cell = cells.get(path)
        weight = getattr(cell, "weight", None)
        if not isinstance(weight, Parameter):
            raise ValueError(f"'network' does not match the packed file: it has no layer with a weight at "
                             f"'{path}' (found {type(cell).__name__ if cell is not None else 'nothing'}); "
                             f"the file's layer has weight shape {shape}.")
        if tuple(weight.shape) != shape:
            raise ValueError(f"'network' does not match the packed file at layer '{path}': the network's weight "
                             f"has shape {tuple(weight.shape)}, the file's {shape}.")
        own.add(id(weight))
    names = set()
    for name, param in network.parameters_and_names():
        if id(param) in own:
            continue
        names.add(name)
        if name not in tensors:
            raise ValueError(f"'network' does not match the packed file: the file holds no parameter "
                             f"'{name}' (network shape {tuple(param.shape)}).")
        if tuple(param.shape) != tensors[name].shape:
            raise ValueError(f"'network' does not match the packed file at '{name}': the network's shape is "
                             f"{tuple(param.shape)}, the file's {tensors[name].shape}.")
    layer_owned = tuple(f"{layer['path']}.{part}" for layer in layers
                        for part in ("weight_codes", "weight_values", "weight_scale", "input_quantizer."))
    extra = [name for name in tensors if name not in names and not name.startswith(layer_owned)]
    if extra:
        raise ValueError(f"'network' does not match the packed file: the network has no parameter '{extra[0]}' "
                         f"(file shape {tensors[extra[0]].shape}).")


def _decoded(layer, tensors, file_name):
    codes, values = layer_codes(layer, tensors, file_name)
    return decode_weight(codes, values, tensors.get(f"{layer['path']}.weight_scale"))


def _input_quantizer(layer, tensors, file_name):
    quantizer = SlbActQuantizer(num_bits=layer["input_quantizer_bits"])
    for local_name, param in quantizer.parameters_and_names():
        name = f"{layer['path']}.input_quantizer.{local_name}"
        if name not in tensors or tensors[name].shape != tuple(param.shape):
            raise PackedFileError(f"'{file_name}' lacks '{name}' of shape {tuple(param.shape)}.")
        param.set_data(Tensor(tensors[name]))
    quantizer.set_train(False)
    return quantizer


def load_packed(network, file_name):
    """Load a packed file into a network built by the user's own (float) model code, in place.

    Each stored layer's weight becomes its decoded discrete weight (behind its frozen input
    quantizer when activation quantization was on) and every other parameter takes its stored
    value; the network is set to evaluation mode and its outputs equal those of the converted
    quantized network. Everything is checked before anything is changed: a file that does not match
    ``network`` is a ValueError naming the first mismatching layer or parameter and both shapes, an
    unreadable file (truncated, corrupted, other format version) a ``PackedFileError``, and
    ``network`` is then left as it was.

    Args:
        network (Cell): the float architecture the quantized network was made from.
        file_name (str or os.PathLike): a file written by ``save_packed``.

    Returns:
        Cell: the deployable network (``network``, or the wrapped layer when ``network`` is itself the
        one stored layer and its input was quantized).
    """
    if not isinstance(network, nn.Cell):
        raise TypeError(f"'network' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
    header, tensors = read_packed(file_name)
    layers = header["layers"]
    _check_network(network, layers, tensors)
    weights = {layer["path"]: _decoded(layer, tensors, file_name) for layer in layers}
    quantizers = {layer["path"]: _input_quantizer(layer, tensors, file_name)
                  for layer in layers if layer["input_quantizer_bits"] is not None}
    cells = dict(network.cells_and_names())
    for path, weight in weights.items():
        cells[path].weight.set_data(Tensor(weight))
    for name, param in network.parameters_and_names():
        if name in tensors:
            param.set_data(Tensor(tensors[name]))
    wrapped = {id(cells[path]): quantizer for path, quantizer in quantizers.items()}
    network, _ = replace_cells(
        network, lambda cell, path: QuantInputCell(wrapped[id(cell)], cell) if id(cell) in wrapped else None)
    network.set_train(False)
    return network
