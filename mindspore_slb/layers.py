"""Quantized layers: what replaces ``nn.Conv2d`` (and, when enabled, ``nn.Dense``) during SLB training.

Every quantized layer derives from ``SlbQuantLayer``, which owns what SLB adds to a layer: its
weight quantizer (the weight search, SLB or the straight-through baseline; see
``quantizer.CandidateQuantizer``) and the Parameter that quantizer searches, the optional
per-output-channel weight scale and the optional input quantizer. A subclass only says how the
layer computes its output from an input and a weight.
"""
import numpy as np

from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb.codes import decode_weight
from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer
from mindspore_slb.ste import SteWeightQuantizer

__all__ = ["SLB", "STE", "WEIGHT_SEARCHES", "SEARCHED_PARAMETER_NAMES", "weight_quantizer", "SlbQuantLayer",
           "Conv2dSlbQuant", "DenseSlbQuant", "deployable_conv2d", "deployable_dense"]

# How a quantized layer learns its choice of candidates: ``weight_search`` name -> quantizer type.
# "slb" is the package's method, "ste" a baseline to compare it with; a new search is a
# CandidateQuantizer subclass added here.
WEIGHT_SEARCHES = {quantizer.search_name: quantizer for quantizer in (SlbFakeQuantizerPerLayer, SteWeightQuantizer)}
SLB = SlbFakeQuantizerPerLayer.search_name
STE = SteWeightQuantizer.search_name
# The searched Parameters' names; a layer sets those of the other searches to None, so that
# ``layer.weight_logits is None`` says the layer is not searched by SLB.
SEARCHED_PARAMETER_NAMES = tuple(quantizer.parameter_name for quantizer in WEIGHT_SEARCHES.values())


def weight_quantizer(weight_search, num_bits):
    """A new weight quantizer of ``num_bits`` for the search named ``weight_search``."""
    if weight_search not in WEIGHT_SEARCHES:
        raise ValueError(f"'weight_search' must be one of {', '.join(map(repr, WEIGHT_SEARCHES))}, "
                         f"but got {weight_search!r}.")
    return WEIGHT_SEARCHES[weight_search](num_bits)


class SlbQuantLayer(nn.Cell):
    """Base of the quantized layers: a weight searched among 2**bits values by SLB (or, as a baseline
    to compare against, learned by a straight-through estimator).

    The weight quantizer, ``weight_quantizer()``, is the search; the layer holds the Parameter it
    searches under the quantizer's ``parameter_name``: with SLB ``weight_logits``
    (``[K, *weight_shape]``, candidate-major; ``weight_latent`` is None), with the straight-through
    baseline ``weight_latent`` (the weight's shape; ``weight_logits`` is None). ``weight_scale`` is
    a Parameter ``[out_channels]`` (the weight's axis 0) multiplying the chosen candidates, or None
    when the scale is off. The effective hard weight is
    ``weight_scale[:, None, ...] * values[weight_codes()]``.

    Every quantized layer type is built as ``quantized_type(float_cell, num_bits, act_quantizer,
    weight_scale, weight_search=...)`` and passes these on to this ``__init__`` with its float weight.

    Args:
        weight (Parameter or Tensor): the float weight; it initialises the searched Parameter and the scale.
        num_bits (int): weight bits, 1, 2 or 4.
        act_quantizer (SlbActQuantizer, optional): fake-quantizes the input when given.
        weight_scale (bool): learn a per-output-channel scale (True) or use the bare candidates
            (False, as Golden Stick does).
        weight_search (str): "slb" (the logits and their softmax, SLB) or "ste" (the
            straight-through baseline, ``SteWeightQuantizer``); one of ``WEIGHT_SEARCHES``.
    """

    def __init__(self, weight, num_bits, act_quantizer=None, weight_scale=False, weight_search=SLB):
        super().__init__()
        weight = weight.asnumpy() if hasattr(weight, "asnumpy") else np.asarray(weight, np.float32)
        self.weight_bit_num = num_bits
        self.weight_search = weight_search
        self.fake_quant_weight = weight_quantizer(weight_search, num_bits)
        searched, scale = self.fake_quant_weight.new_parameter(weight, weight_scale)
        self.weight_scale = None if scale is None else Parameter(Tensor(scale), name="weight_scale")
        self._searched_name = self.fake_quant_weight.parameter_name
        for name in SEARCHED_PARAMETER_NAMES:
            setattr(self, name, None)
        setattr(self, self._searched_name, searched)
        self._scale_shape = (-1,) + (1,) * (weight.ndim - 1)
        self.input_quantizer = act_quantizer

    def weight_quantizer(self):
        return self.fake_quant_weight

    def start_at_temperature(self, temperature):
        """Set the quantizer to the schedule's first ``temperature``; SLB divides its start logits
        by it (built for temperature 1). The straight-through baseline has no temperature and is
        left as it is."""
        self.fake_quant_weight.start_at_temperature(self.searched_weight(), temperature)

    def searched_weight(self):
        """The trained Parameter the weight quantizer chooses the candidates from: the logits or
        the latent weights."""
        return getattr(self, self._searched_name)

    def quantized_weight(self):
        """The (soft or hard) weight the layer computes with; the quantizer applies the scale."""
        return self.fake_quant_weight(self.searched_weight(), self.weight_scale)

    def weight_codes(self):
        """Each weight's candidate index (int ndarray, the weight's shape), as the hard weight chooses."""
        return self.fake_quant_weight.codes(self.searched_weight())

    def replaced_parameters(self):
        """The Parameters that the codes, the candidate values and the scale stand for in a
        deployed network, or that only training needs."""
        scale = () if self.weight_scale is None else (self.weight_scale,)
        return (self.searched_weight(), *self.fake_quant_weight.get_parameters()) + scale

    def hard_weight(self):
        """The evaluation weight as a NumPy array, exactly what ``construct`` uses in evaluation."""
        scale = None if self.weight_scale is None else self.weight_scale.asnumpy()
        return decode_weight(self.weight_codes(), self.fake_quant_weight.values, scale)

    def compute(self, x, weight):
        """The layer's output for input ``x`` and weight ``weight``; subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} must define compute(x, weight).")

    def construct(self, x):
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return self.compute(x, self.quantized_weight())


class Conv2dSlbQuant(SlbQuantLayer):
    """A 2-D convolution whose weight is searched by SLB.

    It holds the logits ``[K, out_channels, in_channels / group, kh, kw]`` and no float weight;
    the bias, if any, stays a float parameter under its original name.

    Args:
        conv (nn.Conv2d): the convolution to quantize; its hyper-parameters and bias are taken
            over and its weight initialises the logits.
        num_bits, act_quantizer, weight_scale, weight_search: as for ``SlbQuantLayer``.
        weight (np.ndarray, optional): the float weight to start from instead of ``conv.weight``,
            for a conv type that transforms its weight before convolving (weight standardization).
    """

    def __init__(self, conv, num_bits, act_quantizer=None, weight_scale=False, weight=None, weight_search=SLB):
        if conv.data_format != "NCHW":
            raise ValueError(f"Conv2dSlbQuant supports data_format 'NCHW' only, but the conv has "
                             f"'{conv.data_format}'.")
        super().__init__(conv.weight if weight is None else weight, num_bits, act_quantizer, weight_scale,
                         weight_search)
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.pad_mode = conv.pad_mode
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.group = conv.group
        self.has_bias = conv.has_bias
        self.conv2d = conv.conv2d
        self.bias_add = ops.BiasAdd()
        self.bias = conv.bias

    def compute(self, x, weight):
        output = self.conv2d(x, weight)
        if self.has_bias:
            output = self.bias_add(output, self.bias)
        return output

    def extend_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"kernel_size={self.kernel_size}, weight_bit_num={self.weight_bit_num}, "
                f"stride={self.stride}, pad_mode={self.pad_mode}, padding={self.padding}, "
                f"dilation={self.dilation}, group={self.group}, has_bias={self.has_bias}, "
                f"weight_scale={self.weight_scale is not None}, weight_search={self.weight_search}")


def deployable_conv2d(layer, weight):
    """The ``nn.Conv2d`` computing what ``layer`` (a Conv2dSlbQuant) computes with ``weight``."""
    # Given its values after construction: nn.Conv2d prints its init arguments, and with the weight
    # itself as one, printing a converted network would list every weight of every layer.
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                     pad_mode=layer.pad_mode, padding=layer.padding, dilation=layer.dilation,
                     group=layer.group, has_bias=layer.has_bias)
    conv.weight.set_data(weight)
    if layer.has_bias:
        conv.bias.set_data(layer.bias.value())
    return conv


class DenseSlbQuant(SlbQuantLayer):
    """A fully connected layer whose weight ``[out_channels, in_channels]`` is searched by SLB;
    bias and activation are taken over from the ``nn.Dense`` it replaces (arguments as for
    ``SlbQuantLayer``)."""

    def __init__(self, dense, num_bits, act_quantizer=None, weight_scale=False, weight_search=SLB):
        super().__init__(dense.weight, num_bits, act_quantizer, weight_scale, weight_search)
        self.in_channels = dense.in_channels
        self.out_channels = dense.out_channels
        self.has_bias = dense.has_bias
        self.bias = dense.bias
        self.bias_add = ops.BiasAdd()
        self.matmul = ops.MatMul(transpose_b=True)
        self.activation = dense.activation
        self.activation_flag = dense.activation_flag

    def compute(self, x, weight):
        x_shape = x.shape
        if len(x_shape) != 2:
            x = x.reshape((-1, x_shape[-1]))
        x = self.matmul(x, weight)
        if self.has_bias:
            x = self.bias_add(x, self.bias)
        if self.activation_flag:
            x = self.activation(x)
        if len(x_shape) != 2:
            x = x.reshape(x_shape[:-1] + (x.shape[-1],))
        return x

    def extend_repr(self):
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"weight_bit_num={self.weight_bit_num}, has_bias={self.has_bias}, "
                f"weight_scale={self.weight_scale is not None}, weight_search={self.weight_search}")


def deployable_dense(layer, weight):
    """The ``nn.Dense`` computing what ``layer`` (a DenseSlbQuant) computes with ``weight``."""
    return nn.Dense(layer.in_channels, layer.out_channels, weight_init=weight,
                    bias_init=layer.bias.value() if layer.has_bias else None, has_bias=layer.has_bias,
                    activation=layer.activation)
