"""A deployable network that keeps its quantized weights bit-packed and unpacks them inside the graph.

Exported as MINDIR, each quantized weight is stored as uint8 codes (``8 // bits`` per byte) plus its
K candidate values, and the graph rebuilds it on every call with plain MindSpore ops: the 256
possible bytes are split into codes by shifts and masks and mapped to values (a [256, 8 // bits]
table), and one gather turns the packed bytes into the weight. A plain ``mindspore.load`` and
``nn.GraphCell`` run it; mindspore_slb is not needed there.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb.convert import QuantInputConv2d, convert_network
from mindspore_slb.packing import pack_codes, require_quantized_weights
from mindspore_slb.rewrite import replace_cells


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

    # Compiled also in PyNative mode, where op by op the small ops cost more than the gather itself
    # (ResNet18, batch 32, in PyNative: 3.0x the converted network's time op by op, 2.3x compiled;
    # in GRAPH mode and as MINDIR 1.0x to 1.2x).
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


class PackedConv2d(nn.Cell):
    """The convolution of a deployable ``nn.Conv2d`` with its weight unpacked in the graph."""

    def __init__(self, conv, layer):
        super().__init__()
        self.conv2d = conv.conv2d
        self.has_bias = conv.has_bias
        self.bias_add = ops.BiasAdd()
        self.bias = conv.bias
        self.unpack = UnpackWeight(layer)

    def construct(self, x):
        output = self.conv2d(x, self.unpack())
        if self.has_bias:
            output = self.bias_add(output, self.bias)
        return output


def packed_network(network):
    """A deployable copy of a trained quantized network, like ``convert``'s, whose quantized weights
    stay bit-packed and are unpacked inside the graph: export it as MINDIR for a small file. Its
    outputs equal the converted network's; ``network`` is left as it was.

    Args:
        network (Cell): the network returned by ``SlbQuantAwareTraining.apply`` (trained).
    """
    layers = require_quantized_weights(network)
    deployable = convert_network(network)
    cells = dict(deployable.cells_and_names())
    by_conv = {}
    for layer in layers:
        cell = cells[layer.path]
        by_conv[id(cell.conv if isinstance(cell, QuantInputConv2d) else cell)] = layer
    replace_cells(deployable, lambda cell: id(cell) in by_conv, lambda conv: PackedConv2d(conv, by_conv[id(conv)]))
    deployable.set_train(False)
    return deployable
