"""Keras callbacks the train loop adds to ``fit``."""

from __future__ import annotations

import math

import keras

from ocrexp.config import monitor_mode, plain


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
        self._lr: float | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        # A constant rate as it was during the epoch: reduce-on-plateau may lower it at the epoch's
        # end before this callback runs. A schedule is read at the epoch's last step, as before.
        scheduled = not isinstance(self.model.optimizer.learning_rate, keras.Variable)  # a constant is a variable
        self._lr = None if scheduled else current_lr(self.model.optimizer)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics["lr"] = self._lr if self._lr is not None else current_lr(self.model.optimizer)
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


# What early stopping and reduce-on-plateau count between epochs (their ``on_train_begin`` resets it).
CALLBACK_STATE = ("wait", "best", "cooldown_counter", "stopped_epoch", "best_epoch")


class EpochCheckpoint(keras.callbacks.Callback):
    """Records every epoch's logs on the run's epoch axis (``progress.history``) and, given a
    checkpoint slot, saves the run's whole state after each epoch and when the phase ends.

    Resuming (``resume_from``), it puts the saved state back in ``on_train_begin``: it comes after
    the callbacks whose counters it restores (``stateful``: early stopping, reduce-on-plateau), which
    reset them there, and ``fit`` has built the optimizer by then.
    """

    def __init__(self, progress, phase: int, name: str, *, slot=None, best: BestWeights | None = None,
                 stateful=(), resume_from=None, clock=None):
        super().__init__()
        self.progress, self.phase, self.name = progress, phase, name
        self.slot, self.best, self.stateful = slot, best, [c for c in stateful if c is not None]
        self.resume_from = resume_from
        self.clock = clock  # () -> (wall s, CPU s) of training so far, this run's earlier processes included

    def on_train_begin(self, logs=None) -> None:
        if self.resume_from is None:
            return
        restore_variables(self.model, self.resume_from, optimizer=True)
        for callback, state, weights in zip(self.stateful, self.resume_from.progress.callbacks,
                                            _callback_weights(self.resume_from, len(self.stateful))):
            for attr, value in state.items():
                setattr(callback, attr, value)
            if weights:
                callback.best_weights = weights

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        p = self.progress
        p.epoch, p.phase, p.phase_done = epoch + 1, self.phase, False
        for key, value in (logs or {}).items():
            p.history.setdefault(key, []).append(float(value))
        self._save()

    def on_train_end(self, logs=None) -> None:
        p = self.progress
        p.phase, p.phase_done = self.phase, True
        p.spans.append(f"{self.name}:{p.phase_start + 1}-{p.epoch}")
        self._save()

    def _save(self) -> None:
        if self.slot is None:
            return
        p = self.progress
        if self.clock is not None:
            p.train_time_s, p.train_cpu_s = self.clock()
        if self.best is not None:
            p.best, p.best_epoch = self.best.best, self.best.best_epoch
        p.callbacks = [{a: plain(getattr(c, a)) for a in CALLBACK_STATE if hasattr(c, a)} for c in self.stateful]
        groups = {"model": [_numpy(v) for v in self.model.variables]}
        if not p.phase_done and self.model.optimizer is not None and self.model.optimizer.built:
            groups["optimizer"] = [_numpy(v) for v in self.model.optimizer.variables]
        if self.best is not None and self.best._snapshot:
            groups["best"] = [value for _, value in self.best._snapshot]
        for j, callback in enumerate(self.stateful):
            if getattr(callback, "best_weights", None) is not None:
                groups[f"callback{j}"] = list(callback.best_weights)
        self.slot.save(p, groups)


def restore_variables(model, checkpoint, optimizer: bool) -> None:
    """Put the checkpoint's model (and optimizer) variables back into ``model``."""
    _assign(model.variables, checkpoint.group("model"), "the model")
    if optimizer and checkpoint.group("optimizer"):
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        _assign(model.optimizer.variables, checkpoint.group("optimizer"), "the optimizer")


def restore_best(best: BestWeights, model, checkpoint) -> None:
    """Best-epoch tracking as it stood at the checkpoint."""
    p = checkpoint.progress
    best.best, best.best_epoch = p.best, p.best_epoch
    values = checkpoint.group("best")
    if values:
        _check_shapes(model.weights, values, "the best epoch's weights")
        best._snapshot = list(zip(model.weights, values))


def _assign(variables, values, what: str) -> None:
    _check_shapes(variables, values, what)
    for variable, value in zip(variables, values):
        variable.assign(value)


def _check_shapes(variables, values, what: str) -> None:
    from ocrexp.errors import OcrexpError

    shapes = [tuple(v.shape) for v in variables]
    if shapes != [tuple(v.shape) for v in values]:
        raise OcrexpError(f"the checkpoint does not fit {what} this config builds ({len(values)} saved arrays "
                          f"for {len(shapes)} variables); run with trainer.resume=never to start over.")


def _callback_weights(checkpoint, n: int) -> list[list | None]:
    return [checkpoint.group(f"callback{j}") or None for j in range(n)]


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)
