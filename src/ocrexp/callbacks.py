"""Keras callbacks the train loop adds to ``fit``."""

from __future__ import annotations

import math

import keras


def current_lr(optimizer) -> float:
    """The optimizer's learning rate at its current step (schedules included)."""
    lr = optimizer.learning_rate
    if callable(lr):
        lr = lr(optimizer.iterations)
    return float(keras.ops.convert_to_numpy(lr))


class MlflowMetrics(keras.callbacks.Callback):
    """Logs every epoch's train/val metrics and the learning rate to the tracker's run.

    Steps are 1-based epochs; a later ``fit`` with ``initial_epoch`` continues the same axis.
    """

    def __init__(self, tracker):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics["lr"] = current_lr(self.model.optimizer)
        self.tracker.log_metrics(metrics, step=epoch + 1)


class FailOnNaN(keras.callbacks.Callback):
    """Stops training with an error (not a silent stop) when the loss becomes NaN or infinite."""

    # Checked per epoch: a per-batch hook would force a device sync on every step.
    def on_epoch_end(self, epoch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"the training loss became {float(loss)} in epoch {epoch + 1}; lower optimizer.lr or check the data."
            )
