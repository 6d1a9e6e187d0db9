"""The ``.slb`` packed file, read with NumPy alone (no MindSpore): docs/slb_format.md describes it.

    python -m mindspore_slb.slb_reader net.slb                  # list the layers and tensors
    python -m mindspore_slb.slb_reader net.slb --npz out.npz    # and write every array to out.npz

The file: ``b"SLBPACK\\n"`` | uint32 version | uint64 header length | header (UTF-8 JSON) | tensor data |
SHA-256 of all before, integers little-endian. A layer's codes (weights in row-major order) are
packed ``8 // bits`` to a byte as ``mindspore_slb.codes`` describes.

This module is the file format and nothing else: ``mindspore_slb.packing`` writes the file from a
network and loads it into one. It imports only NumPy, the standard library and
``mindspore_slb.codes`` (NumPy only), so it runs where MindSpore is not installed; copied out of the
package, it runs as ``python slb_reader.py`` beside a copy of ``codes.py``.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

try:
    from mindspore_slb.codes import SUPPORTED_BITS, decode_weight, unpack_codes
except ImportError:  # copied out of the package, next to codes.py
    from codes import SUPPORTED_BITS, decode_weight, unpack_codes  # pylint: disable=import-error

__all__ = ["FORMAT_VERSION", "MAGIC", "SUPPORTED_BITS", "LAYER_TENSORS", "PackedFileError", "file_bytes", "fspath",
           "read_packed", "layer_codes", "read_layers", "npz_arrays", "main"]

FORMAT_VERSION = 1
MAGIC = b"SLBPACK\n"
PREFIX = struct.Struct("<IQ")  # version, header length
DIGEST_BYTES = hashlib.sha256().digest_size
# The stored tensors of a quantized layer at path P: P + one of these.
LAYER_TENSORS = (".weight_codes", ".weight_values", ".weight_scale")


class PackedFileError(ValueError):
    """A packed file that cannot be read: truncated, corrupted or of another format version."""


def file_bytes(header, tensors):
    """The whole file for a header (dict) and its tensors (name -> ndarray, in the header's order):
    the tensor entries of the header are filled in here."""
    entries, blobs, offset = [], [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        entries.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                        "offset": offset, "nbytes": len(data)})
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps({**header, "tensors": entries}).encode("utf-8")
    body = MAGIC + PREFIX.pack(FORMAT_VERSION, len(encoded)) + encoded + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def fspath(value):
    """``value`` as a str when it is an ``os.PathLike`` path (``pathlib.Path``), else unchanged for the
    caller's own checks."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def read_packed(file_name):
    """The header (dict with 'layers') and tensors (name -> ndarray) of a packed file, after checking
    its magic, format version, checksum and header; ``PackedFileError`` for anything else."""
    file_name = fspath(file_name)
    if not isinstance(file_name, str) or not os.path.isfile(file_name):
        raise ValueError(f"'file_name' must be an existing packed file, but got {file_name!r}.")
    with open(file_name, "rb") as stream:
        content = stream.read()
    fixed = len(MAGIC) + PREFIX.size
    if len(content) < fixed + DIGEST_BYTES or not content.startswith(MAGIC):
        raise PackedFileError(f"'{file_name}' is not an SLB packed file, or is truncated "
                              f"({len(content)} bytes).")
    version, header_length = PREFIX.unpack_from(content, len(MAGIC))
    if version != FORMAT_VERSION:
        raise PackedFileError(f"'{file_name}' has packed format version {version}; this mindspore_slb "
                              f"reads version {FORMAT_VERSION} only.")
    body, digest = content[:-DIGEST_BYTES], content[-DIGEST_BYTES:]
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
    """Raise ValueError naming the first header entry that a reader could not use."""
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


def layer_codes(layer, tensors, file_name):
    """One header layer's integer codes (uint8, the weight's shape) and candidate values (float32, K),
    after checking that its stored values and scale fit the weight."""
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
    return codes, values


def read_layers(file_name):
    """Everything a packed file holds, unpacked.

    Returns:
        tuple: ``(layers, others)``. ``layers``: one dict per quantized layer, in network order, with
        path, bits, input_quantizer_bits (int or None), codes (uint8, the weight's shape), values
        (float32 [2**bits]), scale (float32 [out_channels] or None) and weight (float32, the decoded
        ``scale * values[codes]``). ``others``: name -> ndarray of every other stored tensor
        (BatchNorm, float layers, biases, activation-quantizer ranges).
    """
    header, tensors = read_packed(file_name)
    layers = []
    for layer in header["layers"]:
        codes, values = layer_codes(layer, tensors, file_name)
        scale = tensors.get(f"{layer['path']}.weight_scale")
        layers.append({"path": layer["path"], "bits": layer["bits"],
                       "input_quantizer_bits": layer["input_quantizer_bits"], "codes": codes, "values": values,
                       "scale": scale, "weight": decode_weight(codes, values, scale)})
    owned = {layer["path"] + suffix for layer in layers for suffix in LAYER_TENSORS}
    return layers, {name: array for name, array in tensors.items() if name not in owned}


def npz_arrays(layers, others):
    """name -> ndarray for ``numpy.savez``: ``<path>.codes``, ``.values``, ``.scale`` (when the layer has
    one) and ``.weight`` for each layer, every other tensor under its own name."""
    arrays = {}
    for layer in layers:
        for key in ("codes", "values", "scale", "weight"):
            if layer[key] is not None:
                arrays[f"{layer['path']}.{key}"] = layer[key]
    arrays.update(others)
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(description="Read an .slb packed file with NumPy alone.")
    parser.add_argument("file", help="the .slb file (written by mindspore_slb.save_packed)")
    parser.add_argument("--npz", help="write every array to this .npz file: per layer <path>.codes (integer "
                                      "codes), .values (candidates), .scale, .weight (decoded), and every "
                                      "other tensor under its name")
    args = parser.parse_args(argv)
    try:
        layers, others = read_layers(args.file)
    except ValueError as error:  # PackedFileError included
        raise SystemExit(f"error: {error}") from None
    for layer in layers:
        scale = "none" if layer["scale"] is None else f"[{layer['scale'].size}]"
        print(f"{layer['path']}: {layer['bits']} bits, codes {'x'.join(map(str, layer['codes'].shape))}, "
              f"values {np.array2string(layer['values'], precision=4)}, scale {scale}, "
              f"input quantizer bits {layer['input_quantizer_bits']}")
    for name, array in others.items():
        print(f"{name}: {array.dtype} {'x'.join(map(str, array.shape))}")
    if args.npz:
        np.savez(args.npz, **npz_arrays(layers, others))
        print(f"saved {args.npz}")


if __name__ == "__main__":
    sys.exit(main())
