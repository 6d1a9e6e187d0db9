"""Conversion of a trained SLB network into a plain deployable one, in place.

The quantized layers are swapped for plain ones inside the network itself: no Cell of the user's is
copied (some third-party Cells cannot be deep-copied), and the network returned is the one given.
"""
from mindspore import nn

from mindspore_slb.layers import Conv2dSlbQuant
from mindspore_slb.rewrite import replace_cells


class QuantInputConv2d(nn.Cell):
    """A plain convolution whose input passes through a frozen 8-bit activation quantizer."""

    def __init__(self, input_quantizer, conv):
        super().__init__()
        self.input_quantizer = input_quantizer
        self.conv = conv

    def construct(self, x):
        return self.conv(self.input_quantizer(x))


def deployable_conv(quant_conv):
    """The ``nn.Conv2d`` (behind its input quantizer, if any) that computes what ``quant_conv``
    computes in evaluation: the weight is the chosen candidate values, nothing else."""
    quantizer = quant_conv.weight_quantizer()
    quantizer.set_train(False)
    bias = quant_conv.bias.value().copy() if quant_conv.has_bias else None
    conv = nn.Conv2d(quant_conv.in_channels, quant_conv.out_channels, quant_conv.kernel_size,
                     stride=quant_conv.stride, pad_mode=quant_conv.pad_mode, padding=quant_conv.padding,
                     dilation=quant_conv.dilation, group=quant_conv.group, has_bias=quant_conv.has_bias,
                     weight_init=quantizer.hard_weight(quant_conv.weight_logits), bias_init=bias)
    if quant_conv.input_quantizer is None:
        return conv
    # The quantized conv is discarded, so its frozen input quantizer moves over as it is.
    quant_conv.input_quantizer.set_train(False)
    return QuantInputConv2d(quant_conv.input_quantizer, conv)


def convert_network(network):
    """Replace, in ``network`` itself, every ``Conv2dSlbQuant`` by its deployable conv and set
    evaluation mode.

    Returns:
        Cell: the deployable network (``network``, or the deployable conv when ``network`` is a
        single quantized conv).
    """
    network, _ = replace_cells(
        network, lambda cell, path: deployable_conv(cell) if isinstance(cell, Conv2dSlbQuant) else None)
    network.set_train(False)
    return network
