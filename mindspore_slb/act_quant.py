"""8-bit fake quantization of activations with a per-layer min/max observer."""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

__all__ = ["SlbActQuantizer"]


class SlbActQuantizer(nn.Cell):
    """Asymmetric per-layer fake quantization of a layer's input, for CPU and GPU alike.

    In training, the observed range follows each batch's min and max through an exponential
    moving average; it always includes 0 so that zero padding stays exact. The rounding passes
    the gradient straight through inside the range and none outside it. In evaluation the stored
    range is used unchanged, so the quantized network is a fixed function there.

    Args:
        num_bits (int): bits of the quantized activation (8).
        ema_decay (float): weight of the stored range against each new batch's.
    """

    def __init__(self, num_bits=8, ema_decay=0.9):
        super().__init__()
        self.num_bits = num_bits
        self.levels = float(2 ** num_bits - 1)
        self.ema_decay = ema_decay
        self.act_min = Parameter(Tensor([0.0], ms.float32), name="act_min", requires_grad=False)
        self.act_max = Parameter(Tensor([0.0], ms.float32), name="act_max", requires_grad=False)
        # The first batch sets the range outright: averaging it with the zero start would shrink it.
        self.observed = Parameter(Tensor([0.0], ms.float32), name="observed", requires_grad=False)

    def _observe(self, x):
        batch_min = ops.minimum(ops.stop_gradient(x).min().reshape((1,)), 0.0)
        batch_max = ops.maximum(ops.stop_gradient(x).max().reshape((1,)), 0.0)
        keep = self.ema_decay * self.observed
        new_min = keep * self.act_min + (1.0 - keep) * batch_min
        new_max = keep * self.act_max + (1.0 - keep) * batch_max
        ops.assign(self.act_min, new_min)
        ops.assign(self.act_max, new_max)
        ops.assign(self.observed, ops.ones_like(self.observed))
        return new_min, new_max

    def construct(self, x):
        if self.training:
            low, high = self._observe(x)
        else:
            low, high = self.act_min, self.act_max
        # An all-zero range would divide by zero; any positive step maps zeros to zero.
        step = ops.maximum((high - low) / self.levels, 1e-8)
        zero_point = ops.round(-low / step)
        clipped = ops.clamp(x, low, high)
        levels = ops.clamp(ops.round(clipped / step) + zero_point, 0.0, self.levels)
        quantized = (levels - zero_point) * step
        return clipped + ops.stop_gradient(quantized - clipped)

    def extend_repr(self):
        return f"bit_num={self.num_bits}"
