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
import contextlib
import contextvars
import functools
import numbers
import weakref

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindspore_slb import native

__all__ = ["MAX_TEMPERATURE", "START_SPREAD", "START_LIMIT", "START_FLOOR", "candidate_values",
           "candidate_probabilities", "decidedness", "nearest_codes", "start_logits", "fitted_channel_scale",
           "normalized_weight", "logits_from_weight", "FLOAT_START", "RANDOM_START", "SEARCH_STARTS",
           "RANDOM_START_SPREAD", "random_start_logits", "drawing_random_start", "SEARCH_DTYPES", "scale_weight",
           "CandidateQuantizer", "SlbFakeQuantizerPerLayer"]

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


# How far the start spreads each weight's probability, in candidate spacings (K > 2; with two
# candidates the soft weight alone fixes it): at half a spacing a weight between two candidates
# shares its probability mostly between those two, as a 1-bit weight does, and the soft weight
# still meets the float weight closely away from the range's ends.
START_SPREAD = 0.5
# Largest start soft weight, as a fraction of the outermost candidate. A weight the scale puts at
# or beyond the outermost candidate starts there less than fully decided (for 1 bit: candidate
# probability 0.95), so the search can still move it; at 0.99 its gradient would be ten times smaller.
START_LIMIT = 0.9
# Lowest start logit, relative to each weight's largest (see start_logits).
START_FLOOR = -16.0
# Weights per piece in which start logits are computed: for a whole layer at once, the K-fold float64
# intermediates (0.3 GB each for the largest layer of ResNet18 at width 64, 4 bits) made building the
# network take more memory than training it. Every value is computed weight by weight, so the pieces
# give the same logits as one pass.
START_PIECE = 1 << 18


@functools.lru_cache(maxsize=None)
def _start_centres(num_bits):
    """For soft weights t on a fine grid over [-START_LIMIT, START_LIMIT], the centre c whose
    candidate distribution ``softmax(-(v - c)**2 / (2 sigma**2))`` has mean t (by bisection: the
    mean rises with c). Returns (t grid, c, sigma)."""
    values = candidate_values(num_bits).astype(np.float64)[:, None]
    sigma = START_SPREAD * (values[1, 0] - values[0, 0])
    targets = np.linspace(-START_LIMIT, START_LIMIT, 4097)
    low, high = np.full_like(targets, -50.0), np.full_like(targets, 50.0)
    for _ in range(80):
        centre = (low + high) / 2
        logits = -(values - centre) ** 2 / (2 * sigma * sigma)
        probabilities = np.exp(logits - logits.max(axis=0))
        mean = (probabilities * values).sum(axis=0) / probabilities.sum(axis=0)
        above = mean > targets
        high, low = np.where(above, centre, high), np.where(above, low, centre)
    return targets, (low + high) / 2, sigma


def nearest_codes(normalized, num_bits):
    """Index of the candidate nearest to each normalized weight (ties to the lower candidate, as
    the hard weight's first-maximum rule breaks them)."""
    last = 2 ** num_bits - 1
    return np.clip(np.ceil((normalized + 1.0) * last / 2.0 - 0.5), 0, last).astype(np.int64)


def start_logits(normalized, num_bits):
    """Logits ``[K, *normalized.shape]`` whose soft weight at temperature 1 is each normalized weight
    (clipped to +-START_LIMIT) and whose hard weight is the candidate nearest to it.

    Each weight gets a discrete Gaussian over the candidates, ``logit_k = -(v_k - c)**2 / (2 sigma**2)``
    with sigma = START_SPREAD spacings, centred where its mean is the weight; near the range's
    ends, where that centre would fall nearer another candidate, it stays in the nearest
    candidate's cell, keeping the hard choice.
    """
    values = candidate_values(num_bits)
    spacing = float(values[1] - values[0])
    targets, centres, sigma = _start_centres(num_bits)
    centre = np.interp(np.clip(normalized, -START_LIMIT, START_LIMIT), targets, centres)
    codes = nearest_codes(normalized, num_bits)
    # A hair inside the cell, so that the argmax is strict.
    margin = 1e-3 * spacing
    low = np.where(codes > 0, values[codes] - spacing / 2 + margin, -np.inf)
    high = np.where(codes < len(values) - 1, values[codes] + spacing / 2 - margin, np.inf)
    centre = np.clip(centre, low, high).reshape(-1)
    logits = np.empty((len(values),) + np.shape(normalized), np.float32)
    rows = logits.reshape(len(values), -1)
    for begin in range(0, centre.size, START_PIECE):
        piece = centre[begin:begin + START_PIECE]
        exponents = np.stack([-(value - piece) ** 2 / (2 * sigma * sigma) for value in values])
        # Softmax ignores a common shift: the largest logit is 0. Far candidates would sit hundreds below
        # (4 bits), where float32 cannot hold a learning step's change; at START_FLOOR their probability,
        # below 1e-7 of the largest, is as good as theirs.
        rows[:, begin:begin + START_PIECE] = np.maximum(exponents - exponents.max(axis=0), START_FLOOR)
    return logits


def fitted_channel_scale(weight, num_bits, iterations=5):
    """Per-output-channel scale (axis 0) such that ``scale * candidates`` fits ``weight``.

    Alternates, per channel, choosing the candidates nearest to ``weight / scale`` and the
    least-squares scale for them, ``s = <w, v> / <v, v>`` (for 1 bit: the mean ``|w|``), starting
    from ``s = max |w|``; more rounds fit the hard weight closer (CHANGELOG gives the errors measured).
    """
    flat = weight.reshape(weight.shape[0], -1)
    values = candidate_values(num_bits)
    scale = np.abs(flat).max(axis=1)
    for _ in range(iterations):
        safe = np.where(scale > 0, scale, 1.0)[:, None]
        chosen = values[nearest_codes(flat / safe, num_bits)]
        # An all-zero channel gets scale 0: its hard weight stays zero, as the float one is.
        scale = np.maximum((flat * chosen).sum(axis=1) / (chosen * chosen).sum(axis=1), 0.0)
    return scale.astype(np.float32)


def normalized_weight(weight, num_bits, with_scale):
    """``weight`` on the candidates' scale, where the unscaled candidates span [-1, 1], and the scale.

    With ``with_scale``, each output channel divided by its ``fitted_channel_scale``; without, the
    whole layer divided by the one scale fitted to all its weights (returned as None: a BatchNorm
    after the layer absorbs it, as in Golden Stick). SLB's logits and the straight-through
    baseline's latent weights both start from it, so both methods start from the same hard weight.

    Returns:
        tuple(np.ndarray, np.ndarray or None): the float32 normalized weight and ``[out_channels]`` scale.
    """
    weight = np.asarray(weight, dtype=np.float32)
    if not with_scale:
        layer_scale = fitted_channel_scale(weight.reshape(1, -1), num_bits)[0]
        return (weight / layer_scale if layer_scale > 0 else weight), None
    scale = fitted_channel_scale(weight, num_bits)
    safe = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (weight.ndim - 1))
    return weight / safe, scale


def logits_from_weight(weight, num_bits, with_scale):
    """SLB's start for a float ``weight``: logits whose soft weight at temperature 1 is the normalized
    weight (``normalized_weight``, within +-START_LIMIT) and whose hard weight is its nearest
    candidate (``start_logits``), and the scale.

    Returns:
        tuple(np.ndarray, np.ndarray or None): logits ``[K, *weight.shape]`` and ``[out_channels]`` scale.
    """
    normalized, scale = normalized_weight(weight, num_bits, with_scale)
    return start_logits(normalized, num_bits), scale


# Where a search starts (config key search_start): from the float weight (logits_from_weight), or
# from small random logits.
FLOAT_START = "float"
RANDOM_START = "random"
SEARCH_STARTS = (FLOAT_START, RANDOM_START)
# Standard deviation of T * logits at the first temperature for the random start: every candidate
# about equally likely, so the soft weight starts near zero and each weight's probabilities are spread
# over all candidates. One step then moves a soft weight by lr * T**2 * Var_p(v) times its gradient
# with Var_p(v) near its largest; the float start, half a candidate spacing wide, begins 4-bit weights
# with a variance about 100 times smaller, and a network trained from scratch underfits.
RANDOM_START_SPREAD = 0.25


def random_start_logits(shape, num_bits, rng):
    """Logits ``[K, *shape]`` for the random start at temperature 1: independent normal values of
    standard deviation RANDOM_START_SPREAD, drawn from the NumPy Generator ``rng`` in order, START_PIECE
    at a time (the same values as one draw of the whole shape, without its float64 copy)."""
    logits = np.empty((2 ** num_bits,) + tuple(shape), np.float32)
    values = logits.reshape(-1)
    for begin in range(0, values.size, START_PIECE):
        piece = values[begin:begin + START_PIECE]
        piece[...] = rng.normal(0.0, RANDOM_START_SPREAD, piece.size)
    return logits


# The Generator SLB layers draw their random start from while they are built (drawing_random_start);
# None: the float start. Set around the build rather than passed to it, so that a quantized layer type
# of the user's, whose constructor passes its arguments on to SlbQuantLayer, needs none for it.
_RANDOM_START_RNG = contextvars.ContextVar("random_start_rng", default=None)


@contextlib.contextmanager
def drawing_random_start(rng):
    """Within it, SLB layers being built start at ``random_start_logits`` drawn from the NumPy
    Generator ``rng``, in the order they are built, instead of computing the float start (``rng``
    None: the float start)."""
    token = _RANDOM_START_RNG.set(rng)
    try:
        yield
    finally:
        _RANDOM_START_RNG.reset(token)


# How SLB's logits are stored (config key search_dtype): float32, or bfloat16 for half the memory of
# the logits and, with SlbMomentum, of their momentum; the fused kernel computes in float32 either way.
SEARCH_DTYPES = {"float32": ms.float32, "bfloat16": ms.bfloat16}


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
    product, the scale's gradient reduces one contiguous axis, which is faster on CPU in GRAPH mode
    than broadcasting over [channels, 1, 1, 1]."""
    channels = weight.shape[0]
    return (weight.reshape((channels, -1)) * scale.reshape((channels, 1))).reshape(weight.shape)


class CandidateQuantizer(nn.Cell):
    """A weight search: how a quantized layer learns which of the K = 2**bits candidate values each
    weight takes. Every weight quantizer derives from it, and a quantized layer (``SlbQuantLayer``)
    asks its quantizer for everything that depends on the search.

    The contract:

    * ``search_name``: the search's ``weight_search`` name ("slb", "ste").
    * ``parameter_name``: the name of the trainable Parameter searched (``weight_logits``,
      ``weight_latent``). The quantizer makes it (``new_parameter``) and the layer holds it under
      that name, so that checkpoints call it ``<layer path>.<parameter_name>`` whichever search made it.
    * ``start(weight, with_scale)``: its start value, and the optional per-output-channel scale,
      from the float weight (NumPy).
    * ``construct(searched, scale=None)``: the weight the layer computes with (soft or hard).
    * ``hard_weight(searched)``: the evaluation weight, unscaled (a Tensor without gradient).
    * ``codes(searched)``: each weight's candidate index (int ndarray), as ``hard_weight`` chooses.
    * ``start_at_temperature(searched, temperature)``: the temperature schedule's start (nothing
      for a search without a temperature).
    * ``hard_in_training_mode``: whether BatchNorm calibration keeps it in training mode, hard
      flag set, rather than switching it to evaluation.

    Args:
        num_bits (int): 1, 2 or 4; the layer's weights take K = 2**num_bits values.
    """
    search_name = None
    parameter_name = None

    def __init__(self, num_bits):
        super().__init__()
        if isinstance(num_bits, bool) or num_bits not in (1, 2, 4):
            raise ValueError(f"'num_bits' must be 1, 2 or 4, but got {num_bits!r}.")
        self.num_bits = num_bits
        self.values = tuple(float(value) for value in candidate_values(num_bits))

    def start(self, weight, with_scale):
        """The searched Parameter's start value and the scale (``[out_channels]`` or None) for the
        float ``weight`` (np.ndarray)."""
        raise NotImplementedError(f"{type(self).__name__} must define start(weight, with_scale).")

    def new_parameter(self, weight, with_scale):
        """The searched Parameter, named ``parameter_name``, started from the float ``weight``, and the
        start scale (np.ndarray or None)."""
        value, scale = self.start(weight, with_scale)
        return Parameter(Tensor(value), name=self.parameter_name), scale

    def start_at_temperature(self, searched, temperature):
        """Set the temperature schedule's start; a search without a temperature has nothing to do."""

    @property
    def hard_in_training_mode(self):
        return False

    def extend_repr(self):
        return f"bit_num={self.num_bits}"


class SlbFakeQuantizerPerLayer(CandidateQuantizer):
    """SLB's search: turns a layer's logits ``[K, *weight_shape]`` into its (soft or hard) weight.

    Args:
        num_bits (int): 1, 2 or 4; the layer's weights take K = 2**num_bits values.
    """
    search_name = "slb"
    parameter_name = "weight_logits"

    def __init__(self, num_bits):
        super().__init__(num_bits)
        # Parameters, not Python attributes: a compiled graph would not see a changed attribute.
        self.temperature = Parameter(Tensor([1.0], ms.float32), name="temperature", requires_grad=False)
        self.hard_flag = Parameter(Tensor([0.0], ms.float32), name="hard_flag", requires_grad=False)
        self._fused = native.soft_weight_op(len(self.values))
        # The scale is folded into the kernel in both modes: op by op (PyNative) a separate multiply
        # and its two gradients cost far more than the kernel's passes, and in a compiled graph its
        # buffers add to peak memory.
        self._fused_scaled = native.soft_weight_op(len(self.values), scaled=True)
        # Set by SlbMomentum (bind_logit_update): the update ops and the optimizer's state they read.
        # Plain attributes, not Parameters of this cell: the state belongs to the optimizer.
        object.__setattr__(self, "_logit_update", None)
        object.__setattr__(self, "_logits", None)

    def start(self, weight, with_scale):
        rng = _RANDOM_START_RNG.get()
        if rng is None:
            return logits_from_weight(weight, self.num_bits, with_scale)
        # The scale normalized_weight would give, without normalizing the weight the random start ignores.
        scale = fitted_channel_scale(weight, self.num_bits) if with_scale else None
        return random_start_logits(weight.shape, self.num_bits, rng), scale

    def new_parameter(self, weight, with_scale):
        logits, scale = super().new_parameter(weight, with_scale)
        # How SlbMomentum, given only Parameters, finds the quantizer that can update them.
        logits.slb_quantizer = weakref.ref(self)
        object.__setattr__(self, "_logits", logits)
        return logits, scale

    @staticmethod
    def of_logits(parameter):
        """The quantizer whose fused kernel can take ``parameter``'s optimizer step, or None (not
        SLB logits, or no fused kernel)."""
        reference = getattr(parameter, "slb_quantizer", None)
        quantizer = reference() if isinstance(reference, weakref.ref) else None
        # A deep copy of a network keeps the reference to the original quantizer: not this one's.
        if quantizer is None or quantizer._logits is not parameter or quantizer._fused is None:
            return None
        return quantizer

    def bind_logit_update(self, update_inputs):
        """From now on, the backward pass applies Momentum's step to the logits in place, with the
        optimizer's state ``update_inputs`` (the tuple ``native.UPDATE_INPUTS`` names); the logits'
        gradient is a token."""
        ops_by_scale = tuple(native.soft_weight_update_op(len(self.values), scaled) for scaled in (False, True))
        object.__setattr__(self, "_logit_update", ops_by_scale + tuple(update_inputs))

    def start_at_temperature(self, searched, temperature):
        """Set the temperature to the schedule's first ``temperature`` and divide the start logits
        ``searched`` by it (they are built for temperature 1): the float start's soft weight is still
        the float one, the random start's ``T * logits`` keep their spread."""
        self.set_temperature(temperature)
        if temperature != 1.0:
            # In NumPy: the same float32 quotients as MindSpore's division, several times faster on a
            # large layer (4 of apply's 10 s at ResNet18 width 64, 4 bits).
            searched.set_data(Tensor(searched.asnumpy() / np.float32(temperature)))

    @property
    def hard_in_training_mode(self):
        # The fused kernel's hard path reads the logits once, where the evaluation path takes K - 1
        # comparisons over them.
        return self.weight_is_fused

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

    def set_temperature_end_flag(self, end=True):
        """From now on, training uses the hard (argmax) weight too; with ``end`` False, the soft
        weight again (a schedule set back to an earlier epoch)."""
        if not isinstance(end, bool):
            raise TypeError(f"'end' must be a bool, but got {end!r} of type {type(end).__name__}.")
        ops.assign(self.hard_flag, Tensor([float(end)], ms.float32))

    @property
    def weight_is_fused(self):
        """Whether training computes the weight in the fused CPU kernel (else in plain ops)."""
        return self._fused is not None

    @property
    def temperature_end_flag(self):
        return bool(self.hard_flag.asnumpy()[0] > 0.5)

    def hard_weight(self, logits):
        if logits.dtype == ms.bfloat16:  # MindSpore's CPU comparisons take no bfloat16
            logits = logits.astype(ms.float32)
        return _plain_hard_weight(logits, self.values)

    def codes(self, logits):
        """Each weight's candidate index (int ndarray, the weight's shape): the first largest logit,
        the hard weight's choice."""
        return logits.asnumpy().astype(np.float32).argmax(axis=0)

    def store_logits_in(self, logits, search_dtype):
        """Store ``logits`` in ``search_dtype`` (a ``SEARCH_DTYPES`` name). bfloat16 needs the fused
        kernel: MindSpore's CPU ops, the plain path, do not compute in it."""
        if search_dtype != "float32" and self._fused is None:
            raise ValueError(f"search_dtype '{search_dtype}' needs the fused CPU kernel, which is not in use "
                             f"here (not CPU, no g++, or MINDSPORE_SLB_NATIVE=0); use 'float32'.")
        logits.set_dtype(SEARCH_DTYPES[search_dtype])

    def construct(self, logits, scale=None):
        """The weight from ``logits``; with ``scale`` ([out_channels]), each output channel's
        weights times its scale."""
        if not self.training:
            weight = self.hard_weight(logits)
            return weight if scale is None else scale_weight(weight, scale)
        if self._logit_update is not None:
            update, scaled_update, moment, rates, step, momentum, layer = self._logit_update
            if scale is None:
                return update(logits, self.temperature, self.hard_flag, moment, rates, step, momentum, layer)
            return scaled_update(logits, self.temperature, self.hard_flag, scale, moment, rates, step, momentum, layer)
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
