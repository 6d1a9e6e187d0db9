"""Conversion of a trained SLB network into a plain deployable one, in place.

The quantized layers are swapped for plain ones inside the network itself: no Cell of the user's is
copied (some third-party Cells cannot be deep-copied), and the network returned is the one given.
"""
from mindspore import Tensor, nn

from mindspore_slb.registry import handler_of_quantized, is_quantized
from mindspore_slb.rewrite import replace_cells

__all__ = ["QuantInputCell", "deployable_layer", "convert_network"]


class QuantInputCell(nn.Cell):
    """A plain layer whose input passes through a frozen 8-bit activation quantizer."""

    def __init__(self, input_quantizer, layer):
        super().__init__()
        self.input_quantizer = input_quantizer
        self.layer = layer

    def construct(self, x):
        return self.layer(self.input_quantizer(x))


def deployable_layer(layer):
    """The plain Cell (behind its input quantizer, if any) that computes what the quantized
    ``layer`` computes in evaluation: its weight is the chosen candidates times the scale."""
    layer.set_train(False)
    plain = handler_of_quantized(layer).deploy(layer, Tensor(layer.hard_weight()))
    if layer.input_quantizer is None:
        return plain
    # The quantized layer is discarded, so its frozen input quantizer moves over as it is.
    return QuantInputCell(layer.input_quantizer, plain)


def convert_network(network):
    """Replace, in ``network`` itself, every quantized layer by its deployable layer and set
    evaluation mode.

    Returns:
        Cell: the deployable network (``network``, or the deployable layer when ``network`` is a
        single quantized layer).
    """
    network, _ = replace_cells(network, lambda cell, path: deployable_layer(cell) if is_quantized(cell) else None)
    network.set_train(False)
    return network
