"""Per-step learning-rate schedules with linear warmup.

The whole run's schedule is computed up front as one array (one value per step), so a resumed
run slices the same array and continues exactly where an uninterrupted run would be.
"""
import math

import numpy as np

DECAY_MODES = ("poly", "cosine", "linear", "steps")
# The "steps" schedule divides the rate by 10 at these fractions of the run.
STEP_DECAY_POINTS = (0.3, 0.6, 0.8)


def _decayed(mode, progress, lr_max, lr_end):
    """Learning rate after warmup; progress runs from 0 (end of warmup) towards 1 (end of run)."""
    if mode == "poly":
        return lr_end + (lr_max - lr_end) * (1.0 - progress) ** 2
    if mode == "cosine":
        return lr_end + (lr_max - lr_end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if mode == "linear":
        return lr_max - (lr_max - lr_end) * progress
    passed = sum(progress >= point for point in STEP_DECAY_POINTS)
    return lr_max * 0.1 ** passed


def get_lr(lr_init, lr_end, lr_max, warmup_epochs, total_epochs, steps_per_epoch, lr_decay_mode="poly"):
    """Return a float32 array with the learning rate of every step of the run."""
    if lr_decay_mode not in DECAY_MODES:
        raise ValueError(f"lr_decay_mode must be one of {list(DECAY_MODES)}, got {lr_decay_mode!r}")
    if total_epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"total_epochs and steps_per_epoch must be >= 1, got {total_epochs} and {steps_per_epoch}")
    if not 0 <= warmup_epochs <= total_epochs:
        raise ValueError(f"warmup_epochs must be in [0, total_epochs={total_epochs}], got {warmup_epochs}")
    total_steps = total_epochs * steps_per_epoch
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    lrs = []
    for step in range(total_steps):
        if step < warmup_steps:
            lrs.append(lr_init + (lr_max - lr_init) * step / warmup_steps)
        else:
            progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
            lrs.append(_decayed(lr_decay_mode, progress, lr_max, lr_end))
    return np.array(lrs, dtype=np.float32)
