"""Conversion of a trained SLB network into a plain deployable one."""
import copy

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
    input_quantizer = copy.deepcopy(quant_conv.input_quantizer)
    input_quantizer.set_train(False)
    return QuantInputConv2d(input_quantizer, conv)


def convert_network(network):
    """A copy of ``network`` with every ``Conv2dSlbQuant`` replaced by its deployable conv, in
    evaluation mode; ``network`` itself is left as it was."""
    # The quantized layers are replaced in the copy anyway: sharing them spares copying logits.
    quantized = {id(cell): cell for _, cell in network.cells_and_names() if isinstance(cell, Conv2dSlbQuant)}
    deployable = copy.deepcopy(network, memo=quantized)
    replace_cells(deployable, lambda cell: isinstance(cell, Conv2dSlbQuant), deployable_conv)
    deployable.set_train(False)
    return deployable
