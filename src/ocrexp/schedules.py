"""Learning-rate schedules built from ``conf/schedule/*.yaml``.

A schedule turns the base learning rate (``optimizer.lr``, or ``model.fine_tune.lr`` in a fine-tuning
phase) into what the optimizer is given, for one training phase of ``epochs`` epochs:

- ``constant``: the base rate.
- ``cosine``: cosine decay from the base rate to ``final_lr_fraction`` of it, per batch.
- ``warmup_cosine``: linear warm-up from 0 over ``warmup_epochs``, then cosine decay.
- ``one_cycle``: cosine ramp from ``lr / initial_div`` up to ``lr`` over ``warmup_fraction`` of the
  steps, then cosine annealing down to ``lr / final_div`` (Smith's 1cycle, learning rate only).
- ``plateau``: the base rate, multiplied by ``factor`` whenever ``monitor`` has not improved for
  ``patience`` epochs (a callback, so it reacts to validation results).

Each builder returns an ``LrPlan``: the optimizer's ``learning_rate`` and the callbacks it needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import keras


@dataclass
class LrPlan:
    """What a schedule contributes to one phase: the optimizer's learning rate and any callbacks."""

    learning_rate: Any
    callbacks: list = field(default_factory=list)


def constant(lr: float, steps_per_epoch: int, epochs: int) -> LrPlan:
    """The base learning rate throughout."""
    return LrPlan(float(lr))


def cosine(lr: float, steps_per_epoch: int, epochs: int, final_lr_fraction: float = 0.0) -> LrPlan:
    """Cosine decay over every step of the phase, ending at ``final_lr_fraction * lr``."""
    total = max(1, steps_per_epoch * epochs)
    return LrPlan(keras.optimizers.schedules.CosineDecay(lr, decay_steps=total, alpha=final_lr_fraction))


def warmup_cosine(lr: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 1.0,
                  final_lr_fraction: float = 0.0) -> LrPlan:
    """Linear warm-up from 0 to ``lr`` over ``warmup_epochs`` (may be fractional), then cosine decay."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(round(warmup_epochs * steps_per_epoch)))
    return LrPlan(keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, alpha=final_lr_fraction, warmup_target=lr, warmup_steps=warmup))


def one_cycle(lr: float, steps_per_epoch: int, epochs: int, warmup_fraction: float = 0.3,
              initial_div: float = 25.0, final_div: float = 1e4) -> LrPlan:
    """Smith's one-cycle policy with peak ``lr`` (the optimizer's momentum is left alone)."""
    return LrPlan(OneCycle(lr, max(1, steps_per_epoch * epochs), warmup_fraction, initial_div, final_div))


def plateau(lr: float, steps_per_epoch: int, epochs: int, monitor: str = "val_loss", factor: float = 0.5,
            patience: int = 2, min_lr: float = 1e-6) -> LrPlan:
    """The base rate, reduced by ``factor`` after ``patience`` epochs without improvement of ``monitor``."""
    callback = keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=factor, patience=patience,
                                                 min_lr=min_lr, verbose=0)
    return LrPlan(float(lr), [callback])


@keras.saving.register_keras_serializable(package="ocrexp")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine warm-up from ``max_lr / initial_div`` to ``max_lr``, then cosine down to ``max_lr / final_div``."""

    def __init__(self, max_lr: float, total_steps: int, warmup_fraction: float = 0.3,
                 initial_div: float = 25.0, final_div: float = 1e4):
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.warmup_fraction = float(warmup_fraction)
        self.initial_div = float(initial_div)
        self.final_div = float(final_div)

    def __call__(self, step):
        ops = keras.ops
        warmup = max(1, int(round(self.total_steps * self.warmup_fraction)))
        anneal = max(1, self.total_steps - warmup)
        start, peak, end = self.max_lr / self.initial_div, self.max_lr, self.max_lr / self.final_div
        step = ops.cast(step, "float32")
        up = ops.minimum(step / warmup, 1.0)
        down = ops.clip((step - warmup) / anneal, 0.0, 1.0)
        rising = start + (peak - start) * (1.0 - ops.cos(math.pi * up)) / 2.0
        falling = end + (peak - end) * (1.0 + ops.cos(math.pi * down)) / 2.0
        return ops.where(step < warmup, rising, falling)

    def get_config(self) -> dict[str, Any]:
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "warmup_fraction": self.warmup_fraction,
                "initial_div": self.initial_div, "final_div": self.final_div}
