"""``ocrexp-train``: compose a config, build data and model, fit, evaluate, record, return the metric.

    ocrexp-train                                   # the Keras tutorial's recipe on MNIST
    ocrexp-train trainer.epochs=3 optimizer.lr=1e-3 seed=7
    ocrexp-train experiment=tutorial debug=fast
    ocrexp-train -m trainer.batch_size=64,128

Everything heavy (TensorFlow, MLflow) is imported inside the functions so that ``--help``, ``--cfg``
and config errors answer at once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig

from ocrexp import config, console
from ocrexp.compat.hydra import help_lists_groups_once
from ocrexp.errors import OcrexpError, exit_with_error, interrupted, raise_terminated
from ocrexp.hydra_errors import one_line_errors
from ocrexp.paths import conf_dir
from ocrexp.sweep_protocol import JobInterrupted, TrialJob, is_pruned

config.register()  # the schema and resolvers the composition below needs
log = logging.getLogger("ocrexp.train")  # not __name__: `python -m ocrexp.train` runs as __main__


@dataclass
class Prepared:
    """Everything a run needs before it is tracked: the data, its splits, the model, the device."""

    data: Any  # ocrexp.data.base.DigitData
    splits: Any  # ocrexp.data.pipeline.Splits
    model: Any  # keras.Model
    provenance: dict[str, str]  # tags saying where the model's weights started from
    device: str
    replicas: int = 1  # data-parallel copies of the model (trainer.strategy)


@dataclass
class RunResult:
    """What one training run produced (``train`` returns only the optimised value)."""

    run_id: str | None
    history: dict[str, list[float]]
    report: dict[str, Any]
    n_params: int


def prepare(cfg: DictConfig) -> Prepared:
    """Check ``cfg``, set up TensorFlow, load and split the dataset, build the model."""
    config.validate(cfg)
    from ocrexp import runtime
    from ocrexp.data.pipeline import split
    from ocrexp.models import build_model
    from ocrexp.tracking import start_store_server, tracking_uri
    from ocrexp.tracking.store import check_reachable

    if cfg.tracking.enabled:  # before TensorFlow loads and training starts, not after the last epoch
        check_reachable(tracking_uri(cfg.tracking))
        start_store_server(cfg)  # it opens the store while TensorFlow imports

    device = runtime.configure(cfg.trainer, cfg.seed)
    strategy = runtime.distribution(cfg.trainer)
    data = config.instantiate(cfg.dataset.source)
    splits = split(data, cfg.dataset.validation_split, cfg.seed, cfg.dataset.limit_train, cfg.dataset.limit_test)
    if cfg.model.get("init_from"):  # a prefix or run name may name another run tomorrow: log the full id
        from ocrexp.tracking.refs import resolve_model_uri

        cfg.model.init_from = resolve_model_uri(str(cfg.model.init_from), tracking_uri(cfg.tracking))
    # Under a strategy, the model's variables are mirrored on every replica; fitting trains in its scope.
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, provenance = build_model(cfg.model, data.input_shape, data.num_classes, tracking_uri(cfg.tracking))
        if cfg.model.get("whiten"):
            from ocrexp.models.whitening import whiten_first_conv

            whiten_first_conv(model, splits.x_train, cfg.dataset.scale)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    return Prepared(data, splits, model, provenance, device, replicas)


def run_experiment(cfg: DictConfig, tags: Mapping[str, str] | None = None, *,
                   resume_folder: Path | None = None, trial: TrialJob | None = None) -> RunResult:
    """Run one experiment described by ``cfg``: data, model, fit, test, record.

    An interrupted run of the same config goes on from its checkpoint (``trainer.resume=auto``);
    ``resume_folder`` (``ocrexp resume``) names the checkpoint to go on from. ``trial``: the sweep's
    trial this run is (named and tagged after it, reporting to it, and over for good when it fails).
    """
    from ocrexp import fitting
    from ocrexp.tracking import make_tracker

    prepared = prepare(cfg)
    log.info(header(cfg, prepared))
    slot = claim_checkpoint(cfg, resume_folder, trial)
    resumed = slot.resumed.progress if slot.resumed is not None else None
    if resumed is not None:
        log.info(resume_line(cfg, resumed, slot.folder))
    # A rerun continues its MLflow run; a retried sweep trial is a new trial with a run of its own.
    continued = resumed.run_id if resumed is not None and trial is None else None
    try:
        with make_tracker(cfg, run_name(cfg), tags, continue_run=continued, trial=trial) as tracker, \
                checkpoints_stored_with(cfg, slot, tracker):
            tracker.set_tags({"ocrexp.device": prepared.device, "ocrexp.replicas": prepared.replicas,
                              "ocrexp.checkpoint": str(slot.folder), **prepared.provenance})
            tracker.log_dataset(prepared.data, prepared.splits)
            tracker.log_metrics({"params": prepared.model.count_params()})
            if resumed is not None:
                tracker.log_history(resumed.history)  # epochs an earlier process trained and did not report
                tracker.set_tags({"ocrexp.resumed_at_epoch": resumed.epoch + 1,
                                  **({"ocrexp.resumed_from": resumed.run_id} if resumed.run_id and trial else {})})
            history = fitting.fit(cfg, prepared.model, prepared.splits, prepared.data.num_classes, tracker, slot, trial)
            report = evaluate_and_log(cfg, prepared, history, tracker)
        slot.finish()
    except BaseException as exc:
        # Over for good: a pruned trial, and a trial that failed (the sweeper retries only trials
        # whose worker died or was interrupted, or that it ended). A single run keeps its checkpoint
        # to rerun after a fix.
        if is_pruned(exc) or (trial is not None and not isinstance(exc, (KeyboardInterrupt, JobInterrupted))):
            slot.finish()
        raise
    finally:
        slot.release()
    print_summary(report, tracker)
    return RunResult(tracker.run_id, history, report, prepared.model.count_params())


def claim_checkpoint(cfg: DictConfig, folder: Path | None = None, trial: TrialJob | None = None):
    """This run's checkpoint slot (``ocrexp.checkpoints``); a sweep's ``trial`` resumes only the
    checkpoint of the trial it retries."""
    from ocrexp import checkpoints
    from ocrexp.pruning import retried_trial

    if trial is None:
        return checkpoints.claim(cfg, folder=folder)
    retry_of = retried_trial(trial)
    slot = checkpoints.claim(cfg, study=trial.study, trial=trial.number, retry_of=retry_of)
    if slot.resumed is None and retry_of is not None and cfg.tracking.enabled:
        fetch_trial_checkpoint(cfg, slot, trial.study, retry_of)
    return slot


def fetch_trial_checkpoint(cfg: DictConfig, slot, study: str, number: int) -> None:
    """Resume ``slot`` from the checkpoint that trial ``number`` stored with its run on the tracking
    server: the trial died on another machine."""
    from ocrexp.tracking import checkpoint_artifacts as stored
    from ocrexp.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking)
    if not stored.follows_the_run(uri):
        return
    run_id = stored.trial_run(uri, cfg.tracking.experiment_name, study, number)
    if run_id is not None and stored.download(uri, run_id, slot.folder):
        found = slot.read()
        if found is not None and found.progress.trial == number:
            slot.resumed, slot.fetched_from = found, run_id
        else:
            slot.state_file.unlink(missing_ok=True)  # not that trial's: start over


@contextlib.contextmanager
def checkpoints_stored_with(cfg: DictConfig, slot, tracker):
    """With a tracking server, store each checkpoint of ``slot`` with ``tracker``'s run; the run ends
    only once the last one is stored."""
    from ocrexp.tracking import checkpoint_artifacts as stored
    from ocrexp.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking)
    if not (cfg.tracking.enabled and tracker.run_id and stored.follows_the_run(uri)):
        yield
        return
    slot.uploads = stored.CheckpointUploads(uri, tracker.run_id, slot.fetched_from)
    try:
        yield
    finally:
        slot.uploads.close()


def resume_line(cfg: DictConfig, progress, folder: Path) -> str:
    from ocrexp.fitting import phases

    plan = phases(cfg)
    trained = progress.phase_done and progress.phase == len(plan) - 1  # early stopping may end it sooner
    where = "the test evaluation" if trained else f"epoch {progress.epoch + 1} of {sum(p.epochs for p in plan)}"
    run = f"run {progress.run_id}" if progress.run_id else "the run"
    return f"resuming {run} at {where} from its checkpoint {folder}"


def train(cfg: DictConfig, tags: Mapping[str, str] | None = None,
          trial: TrialJob | None = None) -> float | list[float]:
    """Run one experiment (``trial``: the sweep's trial it is) and return ``cfg.optimized_metric``'s
    value(s) for a sweeper."""
    result = run_experiment(cfg, tags, trial=trial)
    return select_metrics(cfg, result.history, result.report, result.n_params)


def evaluate_and_log(cfg: DictConfig, prepared: Prepared, history, tracker) -> dict[str, Any]:
    """Final test evaluation, plots and the model artifact."""
    from ocrexp.data.pipeline import scale_images
    from ocrexp.report import log_report, test_report

    splits, class_names = prepared.splits, prepared.data.class_names
    if cfg.tracking.log_plots:  # first: drawn while the test images go through the model
        from ocrexp import plots

        tracker.log_figure(functools.partial(plots.learning_curves, dict(history)), "plots/learning_curves.png")
    report = test_report(prepared.model, scale_images(splits.x_test, cfg.dataset.scale), splits.y_test,
                         cfg.trainer.eval_batch_size)
    log_report(tracker, report, splits.x_test, class_names, cfg.tracking.log_plots)
    if cfg.tracking.log_model:
        tracker.log_model(prepared.model, scale_images(splits.x_test[:4], cfg.dataset.scale), report["outputs"][:4],
                          class_names=list(class_names), pixel_scale=cfg.dataset.scale)
    return report


def select_metrics(cfg: DictConfig, history, report, n_params: int) -> float | list[float]:
    """The value(s) a sweeper optimises: best-over-epochs for validation metrics."""
    available = {
        "val_accuracy": max(history.get("val_accuracy", [float("nan")])),
        "val_loss": min(history.get("val_loss", [float("nan")])),
        "test_accuracy": report["test_accuracy"],
        "test_loss": report["test_loss"],
        "params": float(n_params),
    }
    values = [float(available[name]) for name in config.optimized_metrics(cfg)]
    return values if len(values) > 1 else values[0]


def run_name(cfg: DictConfig) -> str:
    """``run_name`` if set, else ``<model>-<dataset>`` plus the augmentation when there is one."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    parts = [cfg.model.get("name", "model"), cfg.dataset.name]
    if cfg.augmentation.get("name", "none") != "none":
        parts.append(cfg.augmentation.name)
    return "-".join(str(p) for p in parts)


def header(cfg: DictConfig, prepared: Prepared) -> str:
    """The line a run starts with: what trains on what, where."""
    s = prepared.splits
    # layers set not to train (model.whiten, freeze_features), not BatchNorm's running statistics
    frozen = sum(layer.count_params() for layer in prepared.model.layers if not layer.trainable)
    params = f"{prepared.model.count_params():,} params" + (f", {frozen:,} frozen" if frozen else "")
    return (f"{run_name(cfg)}: {prepared.model.name} ({params}) on {prepared.data.name} "
            f"({len(s.x_train):,} train / {len(s.x_val):,} val / {len(s.x_test):,} test images), "
            f"{cfg.trainer.epochs} epoch{'s' if cfg.trainer.epochs != 1 else ''}, {prepared.device}"
            + (f", {prepared.replicas} replicas" if prepared.replicas > 1 else "") + _precision())


def _precision() -> str:
    """``, mixed_bfloat16`` (or ``mixed_float16``) when the run computes in lower precision."""
    import keras

    policy = keras.mixed_precision.global_policy().name
    return "" if policy == "float32" else f", {policy}"


def print_summary(report: Mapping[str, Any], tracker) -> None:
    line = f"test_accuracy={report['test_accuracy']:.4f} test_loss={report['test_loss']:.4f}"
    if tracker.run_id:
        line += f" | MLflow run {tracker.run_id}: {tracker.link} (ocrexp ui)"
    log.info(line)


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | list[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    console.quiet_libraries()  # again: a sweep's worker process starts here, before TensorFlow loads
    # The one place that reads the sweeper's job: everything below is handed it (or what follows from it).
    trial = TrialJob.from_env()
    if trial is not None and _in_submitit_job():
        # submitit's job ignores SIGTERM, which scancel sends before SIGKILL: end the run KILLED, so
        # that the sweeper queues the trial again, as Ctrl-C does.
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        with console.run_lines_shown(trial is None):
            return train(cfg, trial=trial)
    except OcrexpError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failure and goes on
        exit_with_error(str(exc))
    except KeyboardInterrupt as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN and trial is not None:
            raise JobInterrupted(interrupted(exc)[0]) from None
        raise


def _in_submitit_job() -> bool:
    """Whether this process is a job submitit started (hydra/launcher=slurm or submitit_local)."""
    try:
        import submitit
    except ImportError:
        return False
    try:
        submitit.JobEnvironment()
    except RuntimeError:  # "not in a submitit job"
        return False
    return True


def main() -> None:
    """Console entry point (``ocrexp-train``)."""
    from ocrexp.shutdown import exit_process
    from ocrexp.tracking import store_process

    console.quiet_libraries()  # before anything imports TensorFlow or MLflow
    store_process.enable()  # this process is the command's own: a store server may fork from it
    signal.signal(signal.SIGTERM, raise_terminated)  # end the MLflow run as KILLED, like Ctrl-C
    try:
        with one_line_errors(), help_lists_groups_once():
            _hydra_main()
    except KeyboardInterrupt as exc:  # the run (if any) has ended as KILLED: one line, not a traceback
        message, status = interrupted(exc)
        print(message, file=sys.stderr)
        exit_process(status)
    exit_process(0)  # the run is recorded: skip Python's slow teardown of TensorFlow's modules


if __name__ == "__main__":
    main()
