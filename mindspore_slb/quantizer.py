"""SLB weight quantizer: K = 2**bits fixed candidate values, chosen per weight by learned logits.

Logits are laid out candidate-major, ``[K, *weight_shape]``: each candidate's logits form one
contiguous block, so splitting them is a cheap leading-axis ``unstack`` and a fused kernel streams
K arrays side by side. For logits ``a``, temperature ``T`` and candidates ``v``:

* soft (training) weight: ``sum_k softmax(T * a)_k * v_k``; for K = 2 that is ``tanh(T * (a_1 - a_0) / 2)``;
* hard weight (evaluation, and training once the temperature schedule ends): ``v[argmax_k a_k]``,
  which passes no gradient to the logits.

``candidate_probabilities`` gives ``softmax(T * a)`` itself in NumPy, for looking at the search
(how decided each weight is) outside the network.
"""
import numbers

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb import native

# Largest softmax temperature. Far above any useful schedule (the softmax is one-hot in float32
# long before), and low enough that T * (logit gap) and T * (upstream gradient) stay finite in
# float32 on both paths, so the fused kernel and the plain ops agree.
MAX_TEMPERATURE = 1e30


def candidate_values(num_bits):
    """The K fixed values a weight can take: {-1, +1} for 1 bit, else linspace(-1, 1, K)."""
    return np.linspace(-1.0, 1.0, 2 ** num_bits).astype(np.float32)


def candidate_probabilities(logits, temperature):
    """``softmax(temperature * logits)`` over the candidate axis 0, in float32: the weights with
    which the soft weight averages the candidates.

    Args:
        logits (np.ndarray or Tensor): ``[K, *weight_shape]`` with K >= 2.
        temperature (float): in (0, MAX_TEMPERATURE].

    Returns:
        np.ndarray: probabilities of the logits' shape, summing to 1 over axis 0.
    """
    logits = np.asarray(logits.asnumpy() if hasattr(logits, "asnumpy") else logits, dtype=np.float32)
    if logits.ndim < 1 or logits.shape[0] < 2:
        raise ValueError(f"'logits' must have shape [K, ...] with K >= 2 candidates, but got shape {logits.shape}.")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) or \
            not 0 < temperature <= MAX_TEMPERATURE:
        raise ValueError(f"'temperature' must be a float in (0, {MAX_TEMPERATURE:g}], but got {temperature!r}.")
    # Shifted by the largest logit, every exponent is <= 0 and the largest is exactly 0: exp cannot
    # overflow and the sum is >= 1, at any temperature up to MAX_TEMPERATURE (an exponent that
    # overflows to -inf gives exp 0, as it should).
    with np.errstate(over="ignore"):
        exponentials = np.exp((logits - logits.max(axis=0, keepdims=True)) * np.float32(temperature))
    return exponentials / exponentials.sum(axis=0, keepdims=True)


def decidedness(logits, temperature):
    """How decided the search is: the mean over the weights of their largest candidate probability.

    1/K while every candidate is equally likely, 1 once each weight has settled on one candidate.
    """
    return float(candidate_probabilities(logits, temperature).max(axis=0).mean())


# With two candidates, _logits_near's distance rule gives a weight at x the logit gap x / 2: 3 and 7
# times the gaps between neighbouring candidates at 2 and 4 bits. Scaled down, the 1-bit search
# starts less decided and flips more weights before the temperature schedule ends; too far down, it
# forgets its start. Chosen on a Fashion-MNIST validation split (the last 10,000 training images,
# never the test set; ResNet18 width 16, 8 epochs), W1 top-1 mean of seeds 1-3 at scale
# 0.1 / 0.2 / 0.3 / 0.4: 0.8532 / 0.8571 / 0.8610 / 0.8593 (unscaled, on the test set: 0.845).
ONE_BIT_LOGIT_SCALE = 0.3


def _logits_near(scaled, num_bits):
    """Each candidate's logit falls with its squared distance to the scaled weight, measured in
    units of the candidates' range width, the same for every bit width (for 1 bit then scaled by
    ONE_BIT_LOGIT_SCALE, which keeps every weight's preferred candidate). Measured in candidate
    spacings instead, the softmax of 2 and 4 bits started saturated and their logits barely moved
    (digits, ResNet18 width 32: top-1 W4 0.947 -> 0.975, W2 0.958 -> 0.986, W1 unchanged)."""
    values = candidate_values(num_bits).reshape((-1,) + (1,) * scaled.ndim)
    distance = (scaled[None] - values) / 2.0
    logits = -0.5 * distance ** 2
    if num_bits == 1:
        logits *= ONE_BIT_LOGIT_SCALE
    return logits.astype(np.float32)


def fitted_channel_scale(weight, num_bits, iterations=5):
    """Per-output-channel scale (axis 0) such that ``scale * candidates`` fits ``weight``.

    Alternates, per channel, choosing the candidates nearest to ``weight / scale`` and the
    least-squares scale for them, ``s = <w, v> / <v, v>`` (for 1 bit: the mean ``|w|``), starting
    from ``s = max |w|``. On Gaussian weights the relative error of the hard weight falls from
    0.52 (one fit) to 0.35 after 5 rounds at 2 bits, 0.128 to 0.120 at 4 bits.
    """
    flat = weight.reshape(weight.shape[0], -1)
    values = candidate_values(num_bits)
    scale = np.abs(flat).max(axis=1)
    for _ in range(iterations):
        safe = np.where(scale > 0, scale, 1.0)[:, None]
        # Nearest of the evenly spaced candidates, without a [*, K] distance array.
        nearest = np.clip(np.rint((flat / safe + 1.0) * (len(values) - 1) / 2.0), 0, len(values) - 1)
        chosen = values[nearest.astype(np.int64)]
        # An all-zero channel gets scale 0: its hard weight stays zero, as the float one is.
        scale = np.maximum((flat * chosen).sum(axis=1) / (chosen * chosen).sum(axis=1), 0.0)
    return scale.astype(np.float32)


def normalized_weight(weight, num_bits, with_scale):
    """``weight`` on the candidates' scale, where the unscaled candidates span [-1, 1], and the scale.

    With ``with_scale``, each output channel divided by its ``fitted_channel_scale``; without, the
    whole layer divided by its largest magnitude (scale None). SLB's logits and the straight-through
    baseline's latent weights both start from it, so both methods start from the same hard weight.

    Returns:
        tuple(np.ndarray, np.ndarray or None): the float32 normalized weight and ``[out_channels]`` scale.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if not with_scale:
        largest = np.abs(weight).max()
        return (weight / largest if largest > 0 else weight), None
    scale = fitted_channel_scale(weight, num_bits)
    safe = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (weight.ndim - 1))
    return weight / safe, scale


def logits_from_weight(weight, num_bits):
    """Logits that prefer, for each float weight, the candidates nearest to it once the weight is
    divided by its layer's largest magnitude (the unscaled candidates' range is [-1, 1])."""
    return _logits_near(normalized_weight(weight, num_bits, False)[0], num_bits)


def scaled_logits_from_weight(weight, num_bits):
    """Logits and per-output-channel scale (axis 0) such that ``scale * candidates`` fits ``weight``
    (see ``fitted_channel_scale``).

    Returns:
        tuple(np.ndarray, np.ndarray): logits ``[K, *weight.shape]`` and scale ``[out_channels]``.
    """
    normalized, scale = normalized_weight(weight, num_bits, True)
    return _logits_near(normalized, num_bits), scale


def _plain_soft_weight(logits, temperature, values):
    """Soft weight from plain MindSpore ops (the fallback when no fused kernel is available)."""
    if len(values) == 2:
        low, high = ops.unstack(logits, 0)
        # 2 * sigmoid(2x) - 1 is tanh(x); MindSpore's CPU tanh is off by up to 1e-4, its sigmoid is not.
        return 2.0 * ops.sigmoid((high - low) * temperature) - 1.0
    per_candidate = ops.unstack(logits, 0)
    largest = per_candidate[0]
    for logit in per_candidate[1:]:
        largest = ops.maximum(largest, logit)
    # softmax is shift-invariant, so the shift needs no gradient
    largest = ops.stop_gradient(largest)
    total = 0.0
    weighted = 0.0
    for logit, value in zip(per_candidate, values):
        weight_of_candidate = ops.exp((logit - largest) * temperature)
        total = total + weight_of_candidate
        weighted = weighted + weight_of_candidate * float(value)
    return weighted / total


def _plain_hard_weight(logits, values):
    """``values[argmax]`` over the candidate axis, first maximum on ties."""
    per_candidate = ops.unstack(logits, 0)
    best_logit = per_candidate[0]
    chosen = ops.full_like(best_logit, float(values[0]))
    for logit, value in zip(per_candidate[1:], values[1:]):
        better = logit > best_logit
        chosen = ops.select(better, ops.full_like(chosen, float(value)), chosen)
        best_logit = ops.maximum(best_logit, logit)
    return ops.stop_gradient(chosen)


def scale_weight(weight, scale):
    """``scale[c] * weight[c, ...]`` for each output channel c (axis 0). As a 2-D [channels, rest]
    product, the scale's gradient reduces one contiguous axis: 3x faster on CPU in GRAPH mode than
    broadcasting over [channels, 1, 1, 1]."""
    channels = weight.shape[0]
    return (weight.reshape((channels, -1)) * scale.reshape((channels, 1))).reshape(weight.shape)


class CandidateQuantizer(nn.Cell):
    """What every weight quantizer has: its bit width and the K candidate values a weight can take.

    Args:
        num_bits (int): 1, 2 or 4; the layer's weights take K = 2**num_bits values.
    """

    def __init__(self, num_bits):
        super().__init__()
        if isinstance(num_bits, bool) or num_bits not in (1, 2, 4):
            raise ValueError(f"'num_bits' must be 1, 2 or 4, but got {num_bits!r}.")
        self.num_bits = num_bits
        self.values = tuple(float(value) for value in candidate_values(num_bits))

    def extend_repr(self):
        return f"bit_num={self.num_bits}"


class SlbFakeQuantizerPerLayer(CandidateQuantizer):
    """Turns a layer's logits ``[K, *weight_shape]`` into its (soft or hard) weight.

    Args:
        num_bits (int): 1, 2 or 4; the layer's weights take K = 2**num_bits values.
    """

    def __init__(self, num_bits):
        super().__init__(num_bits)
        # Parameters, not Python attributes: a compiled graph would not see a changed attribute.
        self.temperature = Parameter(Tensor([1.0], ms.float32), name="temperature", requires_grad=False)
        self.hard_flag = Parameter(Tensor([0.0], ms.float32), name="hard_flag", requires_grad=False)
        self._fused = native.soft_weight_op(len(self.values))
        # The scale is folded into the kernel in both modes: op by op (PyNative) a separate multiply
        # and its two gradients cost far more than the kernel's passes, and in a compiled graph its
        # buffers add to peak memory (ResNet18 width 64, W1: 1.25 GB against 0.86 GB).
        self._fused_scaled = native.soft_weight_op(len(self.values), scaled=True)

    def set_temperature(self, temperature):
        """Set the softmax temperature, a real number (Python or NumPy) in (0, MAX_TEMPERATURE]."""
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"'temperature' must be a float, but got {temperature!r} "
                            f"of type {type(temperature).__name__}.")
        temperature = float(temperature)
        if not 0 < temperature <= MAX_TEMPERATURE:
            raise ValueError(f"'temperature' must be a float in (0, {MAX_TEMPERATURE:g}], but got {temperature}.")
        # In place: set_data would give the parameter new storage, and a step compiled before
        # (ms.jit, or value_and_grad in GRAPH mode) would go on reading the old temperature.
        ops.assign(self.temperature, Tensor([temperature], ms.float32))

    def set_temperature_end_flag(self):
        """From now on, training uses the hard (argmax) weight too."""
        ops.assign(self.hard_flag, Tensor([1.0], ms.float32))

    @property
    def weight_is_fused(self):
        """Whether training computes the weight in the fused CPU kernel (else in plain ops)."""
        return self._fused is not None

    @property
    def temperature_end_flag(self):
        return bool(self.hard_flag.asnumpy()[0] > 0.5)

    def hard_weight(self, logits):
        return _plain_hard_weight(logits, self.values)

    def codes(self, logits):
        """Each weight's candidate index (int ndarray, the weight's shape): the first largest logit,
        the hard weight's choice."""
        return logits.asnumpy().argmax(axis=0)

    def construct(self, logits, scale=None):
        """The weight from ``logits``; with ``scale`` ([out_channels]), each output channel's
        weights times its scale."""
        if not self.training:
            weight = self.hard_weight(logits)
            return weight if scale is None else scale_weight(weight, scale)
        if self._fused is not None:
            if scale is None:
                return self._fused(logits, self.temperature, self.hard_flag)
            return self._fused_scaled(logits, self.temperature, self.hard_flag, scale)
        # In the logits' dtype: under mixed precision a float32 temperature would promote a
        # float16 weight back to float32, which the layer's float16 input does not match.
        temperature = self.temperature.astype(logits.dtype)
        hard_flag = self.hard_flag.astype(logits.dtype)
        soft = _plain_soft_weight(logits, temperature, self.values)
        weight = soft * (1.0 - hard_flag) + self.hard_weight(logits) * hard_flag
        return weight if scale is None else scale_weight(weight, scale)
