"""Straight-through estimator (STE) weight quantizer: a baseline to compare SLB against.

It quantizes onto SLB's candidates, ``candidate_values(bits)``, times the same optional scale, but
learns them as BinaryConnect does: each weight keeps a float latent value, the forward uses the
candidate nearest to it (clipped to the candidates' range [-1, 1]), and the backward passes the
gradient straight through to the latent value where ``|latent| <= 1`` and nowhere else. Training
and evaluation use the same hard weight; there is no temperature.
"""
import numpy as np

import mindspore as ms
from mindspore import Tensor, ops

from mindspore_slb.quantizer import CandidateQuantizer, normalized_weight, scale_weight

__all__ = ["latent_from_weight", "SteWeightQuantizer"]


def latent_from_weight(weight, num_bits, with_scale):
    """The latent weights (float32, ``weight``'s shape) and scale (``[out_channels]`` or None) to start
    from: SLB's normalized weight (``normalized_weight``), so both methods start from the same hard
    weight, clipped to [-1, 1]. Clipping keeps the nearest candidates; a latent value beyond 1 would
    get no gradient, so a weight that the fitted scale puts there would never move."""
    normalized, scale = normalized_weight(weight, num_bits, with_scale)
    return np.clip(normalized, -1.0, 1.0), scale


class SteWeightQuantizer(CandidateQuantizer):
    """The straight-through baseline's search: turns a layer's latent weights (the float weight's
    shape) into its candidate weight.

    Args:
        num_bits (int): 1, 2 or 4; the layer's weights take K = 2**num_bits values.
    """
    search_name = "ste"
    parameter_name = "weight_latent"

    def __init__(self, num_bits):
        super().__init__(num_bits)
        values = np.array(self.values, np.float32)
        self._value_table = Tensor(values)
        # Comparisons with the midpoints choose exactly the same candidate in compiled graphs, op by
        # op and on every device, where rounding (latent + 1) * (K - 1) / 2 could differ between them.
        # A latent value on a midpoint takes the larger candidate: 0 -> +1 for 1 bit.
        self._midpoints = tuple(float(midpoint) for midpoint in (values[:-1] + values[1:]) / 2)

    def start(self, weight, with_scale):
        return latent_from_weight(weight, self.num_bits, with_scale)

    def codes_tensor(self, latent):
        """Each weight's candidate index, an int32 Tensor of ``latent``'s shape."""
        codes = ops.zeros_like(latent).astype(ms.int32)
        for midpoint in self._midpoints:
            codes = codes + (latent >= midpoint).astype(ms.int32)
        return codes

    def codes(self, latent):
        """Each weight's candidate index (int ndarray, the weight's shape), the hard weight's choice."""
        return self.codes_tensor(latent).asnumpy()

    def hard_weight(self, latent):
        """The nearest candidate to each clipped latent value."""
        chosen = ops.gather(self._value_table.astype(latent.dtype), self.codes_tensor(latent), 0)
        return ops.stop_gradient(chosen)

    def construct(self, latent, scale=None):
        """The hard weight from ``latent``; in training its gradient reaches ``latent`` where
        ``|latent| <= 1``. With ``scale`` ([out_channels]), each output channel times its scale."""
        weight = self.hard_weight(latent)
        if self.training:
            passed = latent * ops.stop_gradient((ops.abs(latent) <= 1.0).astype(latent.dtype))
            weight = passed + ops.stop_gradient(weight - passed)
        return weight if scale is None else scale_weight(weight, scale)
