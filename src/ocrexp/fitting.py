"""The training loop: Keras ``fit`` in one or two phases on one continuous epoch axis.

Phase ``train`` runs ``trainer.epochs`` epochs at ``optimizer.lr``. When ``model.fine_tune`` is set, a
``fine_tune`` phase follows: the layers from ``model.fine_tune.unfreeze_from`` on become trainable
and training goes on for ``fine_tune.epochs`` epochs at ``fine_tune.lr``, with a fresh optimizer and
schedule. Epochs are numbered across phases (a 3 + 2 run logs epochs 1-5), so MLflow shows one curve.

What ``fit`` trains is a wrapper: the augmentation layers in front of the model, in one graph, so
augmentation runs on the training device and only in training steps. The model itself is never
compiled, so the model that gets logged carries no optimizer or schedule state.

Per-phase callbacks: the learning-rate schedule's (reduce-on-plateau), early stopping
(``trainer.early_stopping``). Across phases: metrics to the tracker, NaN guard, the sweeper's
pruning hook, and best-epoch selection (``trainer.checkpoint.monitor``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial

from omegaconf import DictConfig

from ocrexp import config
from ocrexp.compat.keras import build_before_fit
from ocrexp.sweep_protocol import TrialJob


@dataclass(frozen=True)
class Phase:
    """One ``fit`` call: its name, length, base learning rate and (fine-tuning) first trainable layer."""

    name: str
    epochs: int
    lr: float
    unfreeze: bool = False
    unfreeze_from: str | None = None


def phases(cfg: DictConfig) -> list[Phase]:
    """The run's phases: ``train``, then ``fine_tune`` when ``model.fine_tune`` is set."""
    out = [Phase("train", int(cfg.trainer.epochs), float(cfg.optimizer.lr))]
    fine_tune = cfg.model.get("fine_tune")
    if fine_tune:
        out.append(Phase("fine_tune", int(fine_tune.epochs), float(fine_tune.lr), True,
                         fine_tune.get("unfreeze_from")))
    return out


def fit(cfg: DictConfig, model, splits, num_classes: int, tracker, slot=None,
        trial: TrialJob | None = None) -> dict[str, list[float]]:
    """Train ``model`` on ``splits`` through every phase; returns the merged per-epoch history.

    With a checkpoint ``slot`` (``ocrexp.checkpoints``) the run's state is saved after every epoch,
    and a run that resumes (``slot.resumed``) goes on from the epoch after the saved one. ``trial``:
    the sweep's trial this run trains, which is told each epoch's result and may be pruned.
    """
    # Compile and fit under the distribution strategy the model was built in (trainer.strategy), so
    # that the optimizer's variables are mirrored like the model's.
    with model.distribute_strategy.scope():
        return _fit_phases(cfg, model, splits, num_classes, tracker, slot, trial)


def _fit_phases(cfg: DictConfig, model, splits, num_classes: int, tracker, slot,
                trial: TrialJob | None) -> dict[str, list[float]]:
    import keras

    from ocrexp.callbacks import BestWeights, EpochCheckpoint, FailOnNaN, restore_best, restore_variables
    from ocrexp.checkpoints import Progress
    from ocrexp.models.transfer import unfreeze_from
    from ocrexp.pruning import pruning_callback

    t = cfg.trainer
    steps = -(-len(splits.x_train) // t.batch_size)
    augmentation = config.instantiate(cfg.augmentation, seed=cfg.seed)
    trainee = training_model(model, augmentation)
    resumed = slot.resumed if slot is not None else None
    progress = resumed.progress if resumed is not None else Progress()
    progress.run_id, progress.trial = tracker.run_id, slot.trial if slot is not None else None
    if augmentation is not None and cfg.tracking.log_plots and resumed is None:
        log_augmentation_preview(cfg, splits, tracker)

    best = BestWeights(t.checkpoint.monitor) if t.checkpoint.monitor else None
    if best is not None and resumed is not None:
        restore_best(best, trainee, resumed)
    pruning = pruning_callback(trial, config.optimized_metrics(cfg)[0], progress.history,
                               last_epoch=sum(p.epochs for p in phases(cfg)))
    verbose = keras_verbosity(t.verbose, in_trial=trial is not None)
    started, cpu_started = time.perf_counter(), time.process_time()
    base_wall, base_cpu = progress.train_time_s, progress.train_cpu_s

    def clock() -> tuple[float, float]:
        return base_wall + time.perf_counter() - started, base_cpu + time.process_time() - cpu_started

    for index, phase in enumerate(phases(cfg)):
        if phase.unfreeze:
            unfreeze_from(model, phase.unfreeze_from)
        if resumed is not None and progress.skips(index):
            continue
        within = resumed is not None and progress.resumes_in(index)
        if not within:
            progress.phase_start = progress.epoch
        if resumed is not None and not within:  # a fresh phase after the saved one: weights only
            restore_variables(trainee, resumed, optimizer=False)
        lr_plan = config.instantiate(cfg.schedule, lr=phase.lr, steps_per_epoch=steps, epochs=phase.epochs)
        compile_trainee(trainee, cfg, lr_plan.learning_rate, steps, phase.epochs)
        stateful = [*lr_plan.callbacks, early_stopping(t.early_stopping)]
        checkpoint = EpochCheckpoint(progress, index, phase.name, slot=slot, best=best, stateful=stateful,
                                     resume_from=resumed if within else None, clock=clock)
        resumed = None  # restored once, into the first phase that trains
        stream, val_ds = datasets(cfg, splits, num_classes, first_epoch=progress.epoch)
        build_before_fit(trainee, stream.dataset)  # else the first epoch traces its train step twice
        # Order matters: the checkpoint is written after the callbacks whose state it holds and
        # before the epoch is reported (to MLflow, to the pruner), so nothing reported is lost.
        callbacks = [keras.callbacks.LambdaCallback(on_epoch_begin=stream.begin), FailOnNaN(), best, *stateful,
                     checkpoint, tracker.keras_callback(), pruning]
        trainee.fit(stream.dataset, validation_data=val_ds, initial_epoch=progress.epoch,
                    epochs=progress.phase_start + phase.epochs, verbose=verbose, shuffle=False,
                    callbacks=[c for c in callbacks if c is not None])
    if resumed is not None:  # every phase had finished: only the test evaluation was left
        restore_variables(trainee, resumed, optimizer=False)

    # Wall and CPU time of every phase's fit (validation included; data loading and the test
    # evaluation not), over every process that trained this run. CPU seconds stay comparable when
    # other jobs share the machine.
    wall, cpu = clock()
    tracker.log_metrics({"train_time_s": wall, "train_cpu_s": cpu})
    tracker.set_tags({"ocrexp.phases": " ".join(progress.spans)})
    if best is not None and best.best_epoch is not None:
        tracker.set_tags({"ocrexp.best_epoch": best.best_epoch})
        tracker.log_metrics({"best_epoch": best.best_epoch, f"best_{best.monitor}": best.best})
    return progress.history


def datasets(cfg: DictConfig, splits, num_classes: int, first_epoch: int = 0):
    """The training stream (``trainer.batch_size``, a fresh order each epoch; an ``EpochStream``
    whose ``begin`` must run at each epoch's start) and the validation dataset: the validation pass
    computes no gradients, so it takes larger batches (``trainer.eval_batch_size``)."""
    from ocrexp.data.pipeline import EpochStream, make_dataset

    common = dict(num_classes=num_classes, scale=cfg.dataset.scale)
    train = EpochStream(splits.x_train, splits.y_train, batch_size=cfg.trainer.batch_size, seed=cfg.seed,
                        first_epoch=first_epoch, **common)
    val = make_dataset(splits.x_val, splits.y_val, batch_size=cfg.trainer.eval_batch_size, **common)
    return train, val


def keras_verbosity(setting, in_trial: bool = False) -> int:
    """``trainer.verbose``: ``auto`` is a progress bar on a terminal, one line per epoch elsewhere (no
    escape codes in logs), and nothing inside a sweep's trial (the sweep prints a line per trial)."""
    if setting != "auto":
        return int(setting)
    if in_trial:
        return 0
    return 1 if sys.stdout.isatty() else 2


def training_model(model, augmentation=None):
    """``model`` behind ``augmentation`` (if any), as one Keras model that shares ``model``'s weights."""
    import keras

    inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    return keras.Model(inputs, model(x), name=f"{model.name}_training")


def compile_trainee(trainee, cfg: DictConfig, learning_rate, steps_per_epoch: int, epochs: int) -> None:
    """(Re)compile with a fresh optimizer; also picks up changes to which layers are trainable."""
    import keras

    t = cfg.trainer
    optimizer = config.instantiate(cfg.optimizer, lr=learning_rate, steps_per_epoch=steps_per_epoch, epochs=epochs)
    strategy = getattr(trainee, "distribute_strategy", None)  # TensorFlow's backend only
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    trainee.compile(
        optimizer=optimizer,
        loss=getattr(keras.losses, config.LOSSES[t.loss])(label_smoothing=t.label_smoothing),
        metrics=["accuracy"],
        jit_compile=t.jit_compile,
        # Keras' multi-step loop fails on MirroredStrategy's distributed datasets (TF 2.21 / Keras 3.15).
        steps_per_execution=t.steps_per_execution if replicas == 1 else 1,
    )


def early_stopping(conf):
    """A Keras ``EarlyStopping`` for ``trainer.early_stopping``, or None when ``patience`` is null."""
    if conf.patience is None:
        return None
    import keras

    return keras.callbacks.EarlyStopping(monitor=conf.monitor, mode=config.monitor_mode(conf.monitor),
                                         patience=conf.patience, min_delta=conf.min_delta,
                                         restore_best_weights=conf.restore_best)


def log_augmentation_preview(cfg: DictConfig, splits, tracker, n: int = 12, rows: int = 4) -> None:
    """``plots/augmentation.png``: ``n`` training images and ``rows`` augmented versions of each."""
    from ocrexp import augment, plots
    from ocrexp.data.pipeline import scale_images

    originals = scale_images(splits.x_train[:n], cfg.dataset.scale)
    augmented = augment.preview(cfg.augmentation, originals, cfg.seed, rows)
    name = cfg.augmentation.get("name", "augmentation")
    tracker.log_figure(partial(plots.augmentation_grid, originals, augmented, str(name)), "plots/augmentation.png")
