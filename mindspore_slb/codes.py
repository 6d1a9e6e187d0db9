"""A quantized weight as integer codes: packing them to the bit, and decoding them to the weight.

A layer quantized to ``bits`` bits chooses, for each weight, one of its K = 2**bits candidate values;
the index of that candidate is the weight's code. Everything that stores or rebuilds a hard weight
goes through this module: ``pack_codes``/``unpack_codes`` put ``8 // bits`` codes in each byte
(code ``i`` in byte ``i // (8 // bits)`` at bit ``(i % (8 // bits)) * bits``, lowest bits first, the
last byte padded with zeros), and ``decode_weight`` forms ``scale[:, None, ...] * values[codes]``.

It imports only NumPy, so that ``slb_reader`` reads the packed file without MindSpore.
"""
import numpy as np

__all__ = ["SUPPORTED_BITS", "pack_codes", "unpack_codes", "decode_weight"]

SUPPORTED_BITS = (1, 2, 4)


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
    """The float32 hard weight ``scale[:, None, ...] * values[codes]`` (no scale: ``values[codes]``).

    Args:
        codes (array of int): each weight's candidate index, the weight's shape.
        values (sequence of float): the K candidate values.
        scale (array of float or None): one factor per output channel (axis 0 of the weight).
    """
    weight = np.asarray(values, np.float32)[codes]
    if scale is None:
        return weight
    return np.asarray(scale, np.float32).reshape((-1,) + (1,) * (weight.ndim - 1)) * weight
