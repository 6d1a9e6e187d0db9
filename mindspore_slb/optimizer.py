"""SlbMomentum: ``nn.Momentum`` whose SLB logits take their step inside the fused backward kernel.

With ``nn.Momentum`` every training step writes the logits' full gradient (K values per weight),
and the optimizer reads it back with the logits and their momentum, scales it and decays it in
separate passes. ``SlbMomentum`` hands the logits' step to the backward kernel instead: each
block of logits gets its gradient, weight decay and momentum step while it is in cache, and no
logits gradient is written. Every other parameter is updated by ``nn.Momentum`` itself, and the
arithmetic is nn.Momentum's, so both train the same weights to float32 rounding.

It is a drop-in replacement (same arguments), opt-in: a network trained with ``nn.Momentum`` or
any other optimizer takes the plain path. The logits' momentum buffers are named as
``nn.Momentum`` names them (``moments.<logits name>``), so checkpoints of either resume with the
other.
"""
import mindspore as ms
from mindspore import ParameterTuple, Tensor, nn, ops

from mindspore_slb.quantizer import SlbFakeQuantizerPerLayer

__all__ = ["SlbMomentum", "fused_logits"]


def fused_logits(params):
    """The Parameters among ``params`` (Parameters or group dicts) whose step the fused kernel can take."""
    return [param for param in _flat(params) if SlbFakeQuantizerPerLayer.of_logits(param) is not None]


def _flat(params):
    for entry in params:
        if isinstance(entry, dict):
            yield from entry.get("params", ())
        else:
            yield entry


def _without(params, fused):
    """``params`` with the ``fused`` Parameters taken out of every group and ``order_params`` list
    (groups left without Parameters dropped)."""
    fused_ids = {id(param) for param in fused}

    def kept_of(members):
        return [param for param in members if id(param) not in fused_ids]

    kept = []
    for entry in params:
        if not isinstance(entry, dict):
            if id(entry) not in fused_ids:
                kept.append(entry)
            continue
        group = dict(entry)
        for key in ("params", "order_params"):
            if key in group:
                group[key] = kept_of(group[key])
        if "params" not in group or group["params"]:
            kept.append(group)
    return kept


def _weight_decay_of(param, params, weight_decay):
    """The weight decay nn.Momentum would apply to ``param``: its group's, else ``weight_decay``;
    without groups, none for names containing 'beta' or 'gamma' (as nn.Optimizer)."""
    for entry in params:
        if isinstance(entry, dict) and any(member is param for member in entry.get("params", ())):
            return float(entry.get("weight_decay", weight_decay))
    if "beta" in param.name or "gamma" in param.name:
        return 0.0
    return float(weight_decay)


def _learning_rates(optimizer):
    """The optimizer's learning rate Parameter: one value, or the per-step values (1-D)."""
    if not optimizer.dynamic_lr:
        return optimizer.learning_rate
    values = getattr(optimizer.learning_rate, "learning_rate", None)
    if not isinstance(values, ms.Parameter) or values.ndim != 1:
        raise ValueError(f"SlbMomentum takes 'learning_rate' as a number, a list or a 1-D Tensor when it updates "
                         f"SLB logits, but got a {type(optimizer.learning_rate).__name__}; use nn.Momentum.")
    return values


class SlbMomentum(nn.Momentum):
    """``nn.Momentum`` (same arguments and arithmetic) whose SLB logits are updated by the fused
    kernel during the backward pass.

    Logits whose layer runs the fused CPU kernel are updated there; every other Parameter (and
    all logits where the kernel is unavailable: not CPU, no g++, ``MINDSPORE_SLB_NATIVE=0``) by
    ``nn.Momentum``. In the gradient tuple a training step hands to the optimizer, the fused
    logits' entries are one-element tokens: gradient clipping, accumulation or all-reduce over
    that tuple need ``nn.Momentum``, and data-parallel training is refused.

    Args:
        params, learning_rate, momentum, weight_decay, loss_scale, use_nesterov: as ``nn.Momentum``;
            ``learning_rate`` is one value, a list or 1-D Tensor of per-step values, or a
            ``LearningRateSchedule``, shared by every group.

    Raises:
        ValueError: with fused logits, data-parallel training, ``use_nesterov``, per-group learning
            rates or a ``LearningRateSchedule``; no Parameter besides the fused logits.
    """

    def __init__(self, params, learning_rate, momentum, weight_decay=0.0, loss_scale=1.0, use_nesterov=False):
        params = list(params)
        fused = fused_logits(params)
        if fused:
            self._check_fusable(use_nesterov)
        plain = _without(params, fused)
        if fused and not plain:
            raise ValueError("SlbMomentum needs at least one Parameter besides the SLB logits it updates in the "
                             "kernel; use nn.Momentum for a network of logits alone.")
        super().__init__(plain, learning_rate, momentum, weight_decay, loss_scale, use_nesterov)
        if fused and self.is_group_lr:
            raise ValueError("SlbMomentum takes one learning rate for all groups when it updates SLB logits, "
                             "but a group sets its own 'lr'; use nn.Momentum.")
        self._plain_count = len(self.parameters)
        fused = ParameterTuple(fused)
        # The logits' momentum, named as nn.Momentum names it; updated by the kernel only.
        self.logit_moments = fused.clone(prefix="moments", init="zeros")
        self.parameters = ParameterTuple(tuple(self.parameters) + tuple(fused))
        learning_rates = _learning_rates(self) if fused else None
        for logits, moment in zip(fused, self.logit_moments):
            # nn.Optimizer keeps the decay times the loss scale (float32) and scales the gradient after it.
            constants = Tensor([_weight_decay_of(logits, params, weight_decay) * self.loss_scale,
                                1.0 / self.loss_scale if self.need_scale else 1.0], ms.float32)
            SlbFakeQuantizerPerLayer.of_logits(logits).bind_logit_update(
                (moment, learning_rates, self.global_step, self.momentum, constants))

    @staticmethod
    def _check_fusable(use_nesterov):
        if use_nesterov:
            # MindSpore 2.8's CPU ApplyMomentum ignores use_nesterov: nn.Momentum then takes plain
            # momentum steps, and a fused Nesterov step would train other weights than it.
            raise ValueError("SlbMomentum does not take use_nesterov=True with SLB logits (MindSpore's CPU "
                             "ApplyMomentum ignores it); use nn.Momentum.")
        mode = ms.get_auto_parallel_context("parallel_mode")
        if mode != "stand_alone":
            raise ValueError(f"SlbMomentum updates the logits before any gradient all-reduce, so it cannot train "
                             f"in parallel mode {mode!r}; use nn.Momentum.")

    def construct(self, gradients):
        success = super().construct(gradients[:self._plain_count])
        # The logits' entries are the kernels' tokens: depending on them keeps the kernels in the graph.
        return ops.depend(success, gradients[self._plain_count:])
