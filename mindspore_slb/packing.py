"""A quantized network packed to the bit: each weight's candidate index in exactly ``bits`` bits.

Bit packing: code ``i`` of a layer (weights in row-major order) sits in byte ``i // (8 // bits)`` at
bit ``(i % (8 // bits)) * bits``, lowest bits first; the last byte is padded with zeros.

File layout (format version ``FORMAT_VERSION``), all integers little-endian::

    b"SLBPACK\\n" | uint32 version | uint64 header length | header (UTF-8 JSON) | tensor data | SHA-256 of all before

The header lists the quantized layers (path, weight shape, bits, input quantizer bits or null) and
every stored tensor (name, dtype, shape, offset and size in the tensor data). A quantized layer at
``path`` stores ``path.weight_codes`` (packed uint8), ``path.weight_values`` (its K candidates,
float32) and, when it has one, ``path.weight_scale`` (per output channel); every other parameter of
the deployable network (BatchNorm, float layers, biases, activation-quantizer ranges) is stored as it
is, under its name.
"""
import collections
import hashlib
import json
import os
import struct

import numpy as np
from mindspore import Parameter, Tensor, nn

from mindspore_slb.act_quant import SlbActQuantizer
from mindspore_slb.convert import QuantInputCell
from mindspore_slb.registry import is_quantized
from mindspore_slb.rewrite import replace_cells

FORMAT_VERSION = 1
MAGIC = b"SLBPACK\n"
_PREFIX = struct.Struct("<IQ")  # version, header length
_DIGEST_BYTES = hashlib.sha256().digest_size
SUPPORTED_BITS = (1, 2, 4)

QuantizedWeight = collections.namedtuple("QuantizedWeight",
                                         "path bits codes values scale input_quantizer replaced_parameters layer")
QuantizedWeight.__doc__ = """One quantized layer's hard weight ``scale[:, None, ...] * values[codes]``.

path (str): the layer's path in the network; bits (int); codes (ndarray of int, the weight's shape);
values (tuple of K floats); scale (float32 ndarray [out_channels] or None); input_quantizer
(SlbActQuantizer or None); replaced_parameters (tuple of the layer's Parameters that codes, values
and scale stand for, or that only training needs: logits or latent weights, temperature, scale);
layer (the quantized layer itself, or None for a weight that stands alone).
"""


class PackedFileError(ValueError):
    """A packed file that cannot be read: truncated, corrupted or of another format version."""


def fspath(value):
    """``value`` as a str when it is an ``os.PathLike`` path (``pathlib.Path``), else unchanged for the
    caller's own checks."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _check_bits(bits):
    if isinstance(bits, bool) or bits not in SUPPORTED_BITS:
        raise ValueError(f"'bits' must be one of {SUPPORTED_BITS}, but got {bits!r}.")


def pack_codes(codes, bits):
    """Pack integer codes in [0, 2**bits) into uint8, ``8 // bits`` codes per byte (any shape, row-major)."""
    _check_bits(bits)
    flat = np.asarray(codes).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= 2 ** bits):
        raise ValueError(f"'codes' must lie in [0, {2 ** bits}) for {bits} bits, but range over "
                         f"[{flat.min()}, {flat.max()}].")
    per_byte = 8 // bits
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, np.uint8)
    padded[:flat.size] = flat
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(padded.reshape(-1, per_byte) << shifts, axis=1).astype(np.uint8)


def unpack_codes(packed, bits, count):
    """The first ``count`` codes held in ``packed`` (uint8), as a flat uint8 array."""
    _check_bits(bits)
    per_byte = 8 // bits
    packed = np.asarray(packed, np.uint8).reshape(-1)
    if packed.size != -(-count // per_byte):
        raise ValueError(f"'packed' must hold {-(-count // per_byte)} bytes for {count} codes of {bits} bits, "
                         f"but holds {packed.size}.")
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    return ((packed[:, None] >> shifts) & (2 ** bits - 1)).reshape(-1)[:count]


def decode_weight(codes, values, scale):
    """The float32 weight ``scale[:, None, ...] * values[codes]`` (no scale: ``values[codes]``)."""
    weight = np.asarray(values, np.float32)[codes]
    if scale is None:
        return weight
    return np.asarray(scale, np.float32).reshape((-1,) + (1,) * (weight.ndim - 1)) * weight


def quantized_weights(network):
    """Every quantized layer of ``network`` as a ``QuantizedWeight``, in network order.

    The one place that knows which layers are quantized and how their hard weight is formed: the
    layer's ``weight_codes()`` (the candidate each weight takes, as its hard weight chooses),
    ``weight_quantizer().values``, its optional ``weight_scale`` and ``input_quantizer``; the layer
    names the parameters these stand for (``replaced_parameters()``).
    """
    found = []
    for path, cell in network.cells_and_names():
        if not is_quantized(cell):
            continue
        quantizer = cell.weight_quantizer()
        scale = getattr(cell, "weight_scale", None)
        found.append(QuantizedWeight(
            path=path, bits=quantizer.num_bits, codes=cell.weight_codes(),
            values=tuple(quantizer.values), scale=None if scale is None else scale.asnumpy().astype(np.float32),
            input_quantizer=cell.input_quantizer, replaced_parameters=cell.replaced_parameters(), layer=cell))
    return found


def _kept_parameters(network, layers):
    """(name, Parameter) of every parameter stored as it is: all but the layers' replaced ones."""
    replaced = {id(param) for layer in layers for param in layer.replaced_parameters}
    return [(name, param) for name, param in network.parameters_and_names() if id(param) not in replaced]


def require_quantized_weights(network, name="network"):
    """``quantized_weights(network)``; a TypeError or ValueError naming the parameter ``name`` when
    ``network`` is no Cell, is already packed or has no quantized layer."""
    if not isinstance(network, nn.Cell):
        raise TypeError(f"'{name}' must be a mindspore.nn.Cell, but got {type(network).__name__}.")
    refuse_packed(network, name)
    layers = quantized_weights(network)
    if not layers:
        raise ValueError(f"'{name}' ({type(network).__name__}) has no quantized layer: pass the network "
                         "returned by SlbQuantAwareTraining.apply().")
    return layers


def refuse_packed(network, name):
    """A ValueError naming the parameter ``name`` when ``network`` holds a ``PackedLayer``.

    A packed layer keeps its trained quantized layer inside (it computes with it), so a second
    packing or a conversion would find that layer and pack or convert it again.
    """
    # Imported here: packed_layers builds on this module.
    from mindspore_slb.packed_layers import PackedLayer  # pylint: disable=import-outside-toplevel
    for path, cell in network.cells_and_names():
        if isinstance(cell, PackedLayer):
            raise ValueError(f"'{name}' is already packed (a PackedLayer at '{path or name}'): pack, save or "
                             "convert the trained quantized network, not the result of packed_network().")


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
    """Write the packed file of the header's layer entries and the tensors (name -> ndarray), in the
    layout ``read_packed`` reads; returns ``file_name``."""
    entries, blobs, offset = [], [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                        "offset": offset, "nbytes": len(data)})
        blobs.append(data)
        offset += len(data)
    header = json.dumps({"layers": header_layers, "tensors": entries}).encode("utf-8")
    body = MAGIC + _PREFIX.pack(FORMAT_VERSION, len(header)) + header + b"".join(blobs)
    temporary = file_name + ".partial"
    with open(temporary, "wb") as stream:
        stream.write(body + hashlib.sha256(body).digest())
    os.replace(temporary, file_name)
    return file_name


def read_packed(file_name):
    """The header (dict with 'layers') and tensors (name -> ndarray) of a packed file, after checking
    its magic, format version, checksum and header; ``PackedFileError`` for anything else."""
    file_name = fspath(file_name)
    if not isinstance(file_name, str) or not os.path.isfile(file_name):
        raise ValueError(f"'file_name' must be an existing packed file, but got {file_name!r}.")
    with open(file_name, "rb") as stream:
        content = stream.read()
    fixed = len(MAGIC) + _PREFIX.size
    if len(content) < fixed + _DIGEST_BYTES or not content.startswith(MAGIC):
        raise PackedFileError(f"'{file_name}' is not an SLB packed file, or is truncated "
                              f"({len(content)} bytes).")
    version, header_length = _PREFIX.unpack_from(content, len(MAGIC))
    if version != FORMAT_VERSION:
        raise PackedFileError(f"'{file_name}' has packed format version {version}; this mindspore_slb "
                              f"reads version {FORMAT_VERSION} only.")
    body, digest = content[:-_DIGEST_BYTES], content[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise PackedFileError(f"'{file_name}' fails its checksum: the file is truncated or corrupted.")
    try:
        header = json.loads(body[fixed:fixed + header_length].decode("utf-8"))
        _check_header(header)
        data = memoryview(body)[fixed + header_length:]
        tensors = {entry["name"]: np.frombuffer(data[entry["offset"]:entry["offset"] + entry["nbytes"]],
                                                np.dtype(entry["dtype"])).reshape(entry["shape"]).copy()
                   for entry in header["tensors"]}
    except (ValueError, KeyError, TypeError) as error:
        raise PackedFileError(f"'{file_name}' has a malformed header: {error}") from error
    return header, tensors


# What each entry of the header's 'layers' holds: its key, the types allowed and, in words, what is allowed.
_LAYER_ENTRY = (("path", (str,), "a str"), ("shape", (list,), "a list of sizes"),
                ("bits", (int,), f"one of {SUPPORTED_BITS}"),
                ("input_quantizer_bits", (int, type(None)), "an int or null"))


def _check_header(header):
    """Raise ValueError naming the first header entry that ``load_packed`` could not use."""
    if not isinstance(header, dict) or not all(isinstance(header.get(key), list) for key in ("layers", "tensors")):
        raise ValueError("it must be a JSON object with the lists 'layers' and 'tensors'")
    for index, layer in enumerate(header["layers"]):
        for key, kinds, allowed in _LAYER_ENTRY:
            if not isinstance(layer, dict) or key not in layer:
                raise ValueError(f"layer {index} lacks '{key}'")
            value = layer[key]
            if isinstance(value, bool) or not isinstance(value, kinds) or \
                    (key == "bits" and value not in SUPPORTED_BITS) or \
                    (key == "shape" and not all(isinstance(size, int) and size > 0 for size in value)):
                raise ValueError(f"layer {index} has '{key}' {value!r}, not {allowed}")


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
    path, shape, bits = layer["path"], tuple(layer["shape"]), layer["bits"]
    try:
        codes = unpack_codes(tensors[f"{path}.weight_codes"], bits, int(np.prod(shape))).reshape(shape)
        values = tensors[f"{path}.weight_values"]
        if values.shape != (2 ** bits,):
            raise ValueError(f"weight_values has shape {values.shape}, {bits} bits need {2 ** bits} candidate values")
        scale = tensors.get(f"{path}.weight_scale")
        if scale is not None and scale.shape != shape[:1]:
            raise ValueError(f"weight_scale has shape {scale.shape}, the weight's {shape[0]} output channels "
                             f"need {shape[:1]}")
    except (KeyError, ValueError) as error:
        raise PackedFileError(f"'{file_name}' is inconsistent at layer '{path}': {error}") from error
    return decode_weight(codes, values, scale)


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
