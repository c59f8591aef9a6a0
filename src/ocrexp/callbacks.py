"""Keras callbacks the train loop adds to ``fit``."""

from __future__ import annotations

import math

import keras

from ocrexp.config import monitor_mode


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


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best ``monitor`` value and restores them at the end.

    One instance spans every phase of a run (frozen base, then fine-tuning), so the epoch chosen is
    the best over the whole epoch axis. The snapshot is held per variable, not as a flat list, so it
    survives a change of which layers are trainable between phases.
    """

    def __init__(self, monitor: str = "val_accuracy"):
        super().__init__()
        self.monitor = monitor
        self.better = (lambda a, b: a > b) if monitor_mode(monitor) == "max" else (lambda a, b: a < b)
        self.best: float | None = None
        self.best_epoch: int | None = None  # 1-based, on the run's epoch axis
        self._snapshot: list | None = None

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"trainer.checkpoint.monitor={self.monitor!r} is not among this run's metrics "
                           f"({', '.join(sorted(logs or {}))}).")
        if self.best is None or self.better(float(value), self.best):
            self.best, self.best_epoch = float(value), epoch + 1
            self._snapshot = [(v, keras.ops.convert_to_numpy(v)) for v in self.model.weights]

    def on_train_end(self, logs=None) -> None:
        for variable, value in self._snapshot or ():
            variable.assign(value)
