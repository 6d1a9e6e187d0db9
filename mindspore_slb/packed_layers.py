"""A trained quantized network's deployable weights, and the layer that keeps them bit-packed.

``quantized_weights`` reads, from a trained network, what every quantized layer deploys: its codes
(the candidate each weight takes), candidate values, optional per-channel scale and input
quantizer. ``save_packed``, ``size_rows``, ``save_onnx`` and ``packed_network`` all start from it.

``packed_network`` turns each quantized layer into a ``PackedLayer``: exported as MINDIR, each
quantized weight is stored as uint8 codes (``8 // bits`` per byte) plus its K candidate values, and
the graph rebuilds it on every call with plain MindSpore ops: the 256 possible bytes are split into
codes by shifts and masks and mapped to values (a [256, 8 // bits] table), and one gather turns the
packed bytes into the weight. A plain ``mindspore.load`` and ``nn.GraphCell`` run it; mindspore_slb
is not needed there.
"""
import collections

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb.codes import pack_codes
from mindspore_slb.registry import is_quantized
from mindspore_slb.rewrite import replace_cells

__all__ = ["QuantizedWeight", "quantized_weights", "require_quantized_weights", "refuse_packed", "UnpackWeight",
           "PackedLayer", "packed_network"]

QuantizedWeight = collections.namedtuple("QuantizedWeight",
                                         "path bits codes values scale input_quantizer replaced_parameters layer")
QuantizedWeight.__doc__ = """One quantized layer's hard weight ``scale[:, None, ...] * values[codes]``.

path (str): the layer's path in the network; bits (int); codes (ndarray of int, the weight's shape);
values (tuple of K floats); scale (float32 ndarray [out_channels] or None); input_quantizer
(SlbActQuantizer or None); replaced_parameters (tuple of the layer's Parameters that codes, values
and scale stand for, or that only training needs: logits or latent weights, temperature, scale);
layer (the quantized layer itself, or None for a weight that stands alone).
"""


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
    for path, cell in network.cells_and_names():
        if isinstance(cell, PackedLayer):
            raise ValueError(f"'{name}' is already packed (a PackedLayer at '{path or name}'): pack, save or "
                             "convert the trained quantized network, not the result of packed_network().")


class UnpackWeight(nn.Cell):
    """Rebuilds one layer's hard weight ``scale[:, None, ...] * values[codes]`` from its packed codes.

    Args:
        layer (QuantizedWeight): the layer's codes, values and optional per-output-channel scale.
    """

    def __init__(self, layer):
        super().__init__()
        per_byte = 8 // layer.bits
        self.shape = tuple(layer.codes.shape)
        self.count = int(layer.codes.size)
        self.padded = self.count % per_byte != 0
        self.mask = 2 ** layer.bits - 1
        self.shifts = Tensor(np.arange(per_byte, dtype=np.int32) * layer.bits)
        self.weight_codes = Parameter(Tensor(pack_codes(layer.codes, layer.bits)), name="weight_codes",
                                      requires_grad=False)
        self.weight_values = Parameter(Tensor(np.asarray(layer.values, np.float32)), name="weight_values",
                                       requires_grad=False)
        self.has_scale = layer.scale is not None
        self.weight_scale = None
        if self.has_scale:
            self.weight_scale = Parameter(Tensor(layer.scale.reshape((-1,) + (1,) * (len(self.shape) - 1))),
                                          name="weight_scale", requires_grad=False)

    # Compiled also in PyNative mode, where op by op the small ops cost more than the gather itself.
    @ms.jit
    def construct(self):
        every_byte = ops.arange(256, dtype=ms.int32).reshape((256, 1))
        byte_codes = ops.bitwise_and(ops.bitwise_right_shift(every_byte, self.shifts), self.mask)
        byte_values = ops.gather(self.weight_values, byte_codes, 0)
        weight = ops.gather(byte_values, ops.cast(self.weight_codes, ms.int32), 0).reshape((-1,))
        if self.padded:
            weight = weight[:self.count]
        weight = weight.reshape(self.shape)
        if self.has_scale:
            weight = self.weight_scale * weight
        return weight


class PackedLayer(nn.Cell):
    """A trained quantized layer computing with its weight unpacked in the graph.

    It computes as the quantized layer does in evaluation (the same ``compute``, behind the same
    frozen input quantizer), so every registered layer type packs without code of its own; the
    logits, the quantizer and the scale stay out of the graph, and so out of an exported file.

    Args:
        layer (SlbQuantLayer): the trained quantized layer.
        weight (QuantizedWeight): its codes, values and optional scale.
    """

    def __init__(self, layer, weight):
        super().__init__()
        layer.set_train(False)
        self.layer = layer
        self.unpack = UnpackWeight(weight)

    def construct(self, x):
        if self.layer.input_quantizer is not None:
            x = self.layer.input_quantizer(x)
        return self.layer.compute(x, self.unpack())


def packed_network(network):
    """Make a trained quantized network deployable with its quantized weights bit-packed: each
    quantized layer, in place as ``convert`` does, becomes a ``PackedLayer`` that rebuilds its weight
    inside the graph. Export the result as MINDIR for a small file; its outputs equal the converted
    network's.

    Args:
        network (Cell): the network returned by ``SlbQuantAwareTraining.apply`` (trained).

    Returns:
        Cell: the deployable network (``network`` itself, or the packed layer when ``network`` is a
        single quantized layer), in evaluation mode.
    """
    weights = {id(weight.layer): weight for weight in require_quantized_weights(network)}
    network, _ = replace_cells(
        network, lambda cell, path: PackedLayer(cell, weights[id(cell)]) if id(cell) in weights else None)
    network.set_train(False)
    return network
