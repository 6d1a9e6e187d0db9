"""The quantized convolution that replaces ``nn.Conv2d`` during SLB training."""
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer, logits_from_weight


class Conv2dSlbQuant(nn.Cell):
    """A 2-D convolution whose weight is searched among 2**bits values by SLB.

    It holds the logits ``[K, out_channels, in_channels / group, kh, kw]`` as ``weight_logits``
    and no float weight; the bias, if any, stays a float parameter under its original name.

    Args:
        conv (nn.Conv2d): the convolution to quantize; its hyper-parameters and bias are taken
            over and its weight initialises the logits.
        num_bits (int): weight bits, 1, 2 or 4.
        act_quantizer (SlbActQuantizer, optional): fake-quantizes the input when given.
    """

    def __init__(self, conv, num_bits, act_quantizer=None):
        super().__init__()
        if conv.data_format != "NCHW":
            raise ValueError(f"Conv2dSlbQuant supports data_format 'NCHW' only, but the conv has "
                             f"'{conv.data_format}'.")
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.pad_mode = conv.pad_mode
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.group = conv.group
        self.has_bias = conv.has_bias
        self.weight_bit_num = num_bits
        self.conv2d = conv.conv2d
        self.bias_add = ops.BiasAdd()
        self.bias = conv.bias
        self.weight_logits = Parameter(Tensor(logits_from_weight(conv.weight.asnumpy(), num_bits)),
                                       name="weight_logits")
        self.fake_quant_weight = SlbFakeQuantizerPerLayer(num_bits)
        self.input_quantizer = act_quantizer

    def weight_quantizer(self):
        return self.fake_quant_weight

    def construct(self, x):
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        output = self.conv2d(x, self.fake_quant_weight(self.weight_logits))
        if self.has_bias:
            output = self.bias_add(output, self.bias)
        return output

    def extend_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, weight_bit_num={self.weight_bit_num}, "
                f"stride={self.stride}, pad_mode={self.pad_mode}, padding={self.padding}, "
                f"dilation={self.dilation}, group={self.group}, has_bias={self.has_bias}")

