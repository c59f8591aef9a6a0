"""One MLflow run: params, tags, per-epoch metrics, config, plots, datasets and the model.

``RunTracker`` is a context manager around one MLflow run. It observes the training loop (through
``keras_callback()`` and a few ``log_*`` calls) and decides the run's final status: FINISHED,
FAILED (the error as a tag) or KILLED (SIGINT/SIGTERM). A run that finishes gets a description
(``mlflow.note.content``) of what it observed: what was trained or evaluated, the result and the
command that repeats it. Inside an Optuna sweep the run becomes a child of the study's run, named
and tagged from the job's ``TrialJob``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from ocrexp.compat.mlflow import forget_active_run
from ocrexp.errors import ConfigError, OcrexpError, Terminated
from ocrexp.sweep_protocol import STATE_TAG, TrialEnded, TrialJob, is_pruned
from ocrexp.tracking import liveness, store_process
from ocrexp.tracking.store import (LockAware, StoreLocked, ensure_store, get_experiment_id, retry_while_locked,
                                   tracking_uri, ui_link)

NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI
# Metrics the description reports, in this order, with how it names them.
RESULTS = (("test_accuracy", "test accuracy"), ("read_number_accuracy", "numbers read exactly"),
           ("read_digit_accuracy", "digits read"))


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are kept as one value."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def git_commit() -> str | None:
    """The checkout's commit (with ``-dirty`` when files changed), or None outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


class RunTracker:
    """One MLflow run for one training or evaluation job; ``trial``: the sweep's trial the job runs
    (its run is then named and tagged as the trial's, under the study's run)."""

    def __init__(self, cfg: DictConfig, run_name: str, tags: Mapping[str, str] | None = None,
                 continue_run: str | None = None, trial: TrialJob | None = None):
        self.cfg = cfg
        self.continue_run = continue_run  # an interrupted run this one resumes
        self.trial = trial
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.uri = tracking_uri(cfg.tracking)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.client = None
        self._heartbeat = None
        self._figures: ThreadPoolExecutor | None = None
        self._drawn: list[Future] = []
        # What the run's description is made of, as observed while it runs.
        self._metrics: dict[str, float] = {}
        self._epochs = 0
        self._inputs: dict[str, tuple[str, int]] = {}  # dataset context -> (dataset name, images)
        self._overrides: list[str] | None = None
        self._notes = [str(self.tags[NOTE_TAG])] if self.tags.get(NOTE_TAG) else []  # callers' notes

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "RunTracker":
        import mlflow

        store_process.install()  # when a store server was started before TensorFlow's import
        _check_registered_name(self.cfg.tracking.get("register_as"))

        def open_store() -> str:  # idempotent: retried while another process holds the store locked
            ensure_store(self.uri)
            self.client = LockAware(mlflow.MlflowClient(self.uri), self.uri)
            exp_id = get_experiment_id(self.client, self.cfg.tracking.experiment_name)
            liveness.close_dead_runs(self.client, [exp_id], spare=self.continue_run)
            return exp_id

        exp_id = self.experiment_id = retry_while_locked(self.uri, open_store)
        # set_tracking_uri also exports MLFLOW_TRACKING_URI; put the caller's value back on exit
        self._env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(self.uri)
        tags = {**self._default_tags(), **liveness.owner_tags(), **self.tags}
        if self.trial is not None:
            tags.update(self.trial.run_tags())
            self.run_name = self.trial.run_name
        self.run_id = self._continued(tags) or self.client.create_run(exp_id, run_name=self.run_name,
                                                                      tags=tags).info.run_id
        try:  # the run exists: a Ctrl-C or SIGTERM from here on ends it as one inside the block does
            mlflow.start_run(run_id=self.run_id)  # makes flavor log_model calls target this run (RUNNING again)
            self._heartbeat = liveness.start_heartbeat(self.client, self.run_id)
            if self.continue_run == self.run_id:
                self._overrides = _logged_overrides()  # config and params were logged by the first process
            else:
                self._log_config()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _continued(self, tags: dict[str, str]) -> str | None:
        """The interrupted run this one resumes, now owned by this process; None when it is gone."""
        from mlflow.entities import RunTag
        from mlflow.exceptions import MlflowException

        if not self.continue_run:
            return None
        try:
            run = self.client.get_run(self.continue_run)
        except MlflowException:
            return None  # deleted, or another store: the resumed training gets a new run
        if run.info.experiment_id != self.experiment_id:
            return None
        if "ocrexp.error" in run.data.tags:  # the interruption's reason no longer describes the run
            self.client.delete_tag(run.info.run_id, "ocrexp.error")
        # Models are logged after the last epoch: any the run has were cut short by the interruption
        # (or precede it) and are logged again, whole, when this run ends.
        for model in self.client.search_logged_models([self.experiment_id],
                                                      filter_string=f"source_run_id = '{run.info.run_id}'"):
            self.client.delete_logged_model(model.model_id)
        self.client.log_batch(run.info.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items() if k != NOTE_TAG])
        return run.info.run_id

    def __exit__(self, exc_type, exc, tb) -> bool:
        import mlflow

        failure = self._finish_figures()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if isinstance(exc, StoreLocked) or isinstance(failure, StoreLocked):
            # Nothing more can be written; the run is closed as dead when ocrexp next opens the store,
            # and a sweep worker's next trial starts its own.
            forget_active_run()
            self._restore_env_uri()
            raise exc if isinstance(exc, StoreLocked) else failure
        if exc_type is None and failure is not None:  # a plot that failed fails the run, as it would inline
            exc_type, exc = type(failure), failure
        if exc_type is None:
            status = "FINISHED"
            self.client.set_tag(self.run_id, NOTE_TAG, self._note())
        elif is_pruned(exc):
            self.client.set_tag(self.run_id, STATE_TAG, "PRUNED")
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            how = "terminated (SIGTERM)" if issubclass(exc_type, Terminated) else "interrupted (Ctrl-C)"
            self.client.set_tag(self.run_id, "ocrexp.error", how)
            status = "KILLED"
            exc.killed_run = self.run_id  # for the command's last line
        elif isinstance(exc, TrialEnded):
            self.client.set_tag(self.run_id, "ocrexp.error", str(exc))
            status = "KILLED"
        else:
            self.client.set_tag(self.run_id, "ocrexp.error", f"{exc_type.__name__}: {exc}"[:5000])
            status = "FAILED"
        active = mlflow.active_run()
        if active is not None and active.info.run_id == self.run_id:
            mlflow.end_run(status=status)
        else:  # interrupted before it became MLflow's active run
            self.client.set_terminated(self.run_id, status)
        self._restore_env_uri()
        if failure is not None and exc is failure:
            raise failure
        return False

    def _restore_env_uri(self) -> None:
        if self._env_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = self._env_uri

    def _finish_figures(self) -> BaseException | None:
        """Wait for the figures still being drawn and log them; the first error, if one failed."""
        errors: list[BaseException] = []
        if self._figures is not None:
            self._figures.shutdown(wait=True)
            self._figures = None
            errors += [f.exception() for f in self._drawn if f.exception() is not None]
        return errors[0] if errors else None

    def _default_tags(self) -> dict[str, str]:
        import keras
        import tensorflow as tf

        import ocrexp

        tags = {
            "ocrexp.version": ocrexp.__version__,
            "ocrexp.tensorflow_version": tf.__version__,
            "ocrexp.keras_version": keras.__version__,
            "mlflow.source.name": "ocrexp-train",
            "mlflow.source.type": "LOCAL",
        }
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        return tags

    def _log_config(self) -> None:
        from mlflow.entities import Param

        flat = flatten(OmegaConf.to_container(self.cfg, resolve=True))
        params = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        # config.yaml keeps interpolations (paths re-resolve on another machine: ocrexp reproduce);
        # config.resolved.yaml shows every value as this run used it.
        self.log_text(OmegaConf.to_yaml(self.cfg), "config.yaml")
        self.log_text(OmegaConf.to_yaml(self.cfg, resolve=True), "config.resolved.yaml")
        hydra_dir = _hydra_output_dir()
        if hydra_dir is not None:
            overrides = self._overrides = _logged_overrides()
            self.client.set_tag(self.run_id, "ocrexp.overrides", " ".join(overrides) or "(none)")
            self._log_hydra_dir(hydra_dir)

    def _log_hydra_dir(self, hydra_dir: Path) -> None:
        """The job's ``.hydra`` files, with any password in a URL masked: a sweep's job carries the
        study's storage URL (``hydra.yaml``: the sweeper's overrides, the job's environment)."""
        from ocrexp.sweep_protocol import redact

        with tempfile.TemporaryDirectory() as tmp:
            for file in hydra_dir.iterdir():
                if file.is_file():
                    (Path(tmp) / file.name).write_text(redact(file.read_text(errors="replace")))
            self.client.log_artifacts(self.run_id, tmp, "hydra")

    @property
    def link(self) -> str | None:
        """The run's page in the MLflow UI."""
        return ui_link(self.uri, self.experiment_id, self.run_id) if self.run_id else None

    # -- logging ---------------------------------------------------------------------------------
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags.get(NOTE_TAG):  # kept for the description written at the end
            self._notes.append(str(tags[NOTE_TAG]))
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        self._metrics.update(metrics)
        self._epochs = max(self._epochs, step or 0)
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        """Per-epoch metrics of epochs an earlier process trained that this run does not show yet
        (all of them for a retried trial's new run; at most the last one for a continued run)."""
        from mlflow.entities import Metric

        epochs = len(history.get("loss", []))
        logged = len(self.client.get_metric_history(self.run_id, "loss"))
        now = int(time.time() * 1000)
        batch = [Metric(k, float(values[i]), now, i + 1) for k, values in history.items()
                 if k != "learning_rate" for i in range(logged, min(epochs, len(values)))]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])
        self._epochs = max(self._epochs, epochs)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_text(self.run_id, json.dumps(data, indent=2, default=str), artifact_file)

    def log_figure(self, fig, artifact_file: str) -> None:
        """Log a matplotlib figure, or a function that makes one. A function is drawn and uploaded on
        the run's background thread (one, so pyplot is never used by two at once) while the run goes
        on; the run waits for it before it ends, and fails when it could not be drawn."""
        if not callable(fig):
            self._save_figure(fig, artifact_file)
            return
        if self._figures is None:
            self._figures = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrexp-figures")
        self._drawn.append(self._figures.submit(self._draw_figure, fig, artifact_file))

    def _draw_figure(self, make, artifact_file: str) -> None:
        try:
            figure = make()
        except Exception as exc:  # the run fails with the figure's name, not a bare plotting error
            raise OcrexpError(f"a figure could not be drawn: {artifact_file}: {type(exc).__name__}: {exc}; "
                              "tracking.log_plots=false skips the figures") from exc
        self._save_figure(figure, artifact_file)

    def _save_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        from ocrexp.plots import SAVE_KWARGS

        try:
            self.client.log_figure(self.run_id, figure, artifact_file, save_kwargs=SAVE_KWARGS)
        finally:
            plt.close(figure)

    def log_dataset(self, data, splits) -> None:
        """Dataset identity (name, source, content checksum, sizes, class names) as tags and
        ``dataset.json``, and the training, validation and test splits as the run's MLflow inputs
        (metadata only, see ``ocrexp.tracking.datasets``)."""
        from ocrexp.tracking.datasets import split_inputs

        self.set_tags({"ocrexp.dataset": data.name, "ocrexp.dataset.checksum": data.checksum,
                       "ocrexp.dataset.source": data.source or "?"})
        self.log_dict({"name": data.name, "checksum": data.checksum, "source": data.source,
                       "input_shape": list(data.input_shape), "class_names": list(data.class_names),
                       "n_train": len(splits.x_train), "n_val": len(splits.x_val),
                       "n_test": len(splits.x_test)}, "dataset.json")
        if self.continue_run != self.run_id:  # a continued run has them already
            self.client.log_inputs(self.run_id, datasets=split_inputs(data, splits))  # one call for all three
        self._inputs["training"] = (data.name, len(splits.y_train))

    def log_evaluation_dataset(self, data, labels) -> None:
        """The images an evaluation scores, drawn from ``data``'s test split, as the run's input
        with context ``evaluation`` (``labels``: theirs, in order)."""
        from ocrexp.tracking.datasets import EVALUATION, dataset_input

        self.client.log_inputs(self.run_id, datasets=[dataset_input(data, EVALUATION, "test", labels)])
        self._inputs[EVALUATION] = (data.name, len(labels))

    def log_model(self, model, input_example, output_example=None, *, class_names=None,
                  pixel_scale: float = 255.0) -> str:
        """The Keras model (``model/``) with signature and input example (``output_example``: the
        model's outputs for it, when already at hand; predicted otherwise), and the number reader
        (``reader/``); with ``tracking.register_as=NAME`` both are registered (as NAME and
        NAME-reader). Returns the Keras model's URI."""
        import mlflow
        from mlflow.models import infer_signature

        from ocrexp.compat.mlflow import log_model
        from ocrexp.tracking import logged_models

        if output_example is None:
            output_example = model.predict(input_example, verbose=0)
        signature = infer_signature(input_example, output_example)
        with tempfile.TemporaryDirectory(prefix="ocrexp-model-") as tmp:
            keras_file = Path(tmp, "model.keras")  # the flavor's saved file, which the reader ships too

            def keep(path: str) -> None:
                if Path(path, "data", "model.keras").is_file():  # where mlflow.tensorflow saves Keras 3 models
                    shutil.copyfile(Path(path, "data", "model.keras"), keras_file)

            info = log_model(mlflow.tensorflow, "model", saved=keep, model=model, signature=signature,
                             input_example=input_example, pip_requirements=logged_models.pip_requirements())
            self.set_tags({"ocrexp.model_uri": f"runs:/{self.run_id}/model"})
            reader = logged_models.log_reader(model, name="reader", class_names=class_names,
                                              pixel_scale=pixel_scale, model_file=keras_file)
        name = self.cfg.tracking.get("register_as")
        if name:
            self.set_tags({"ocrexp.registered_model": self._register(name, info),
                           "ocrexp.registered_reader": self._register(f"{name}-reader", reader)})
        return info.model_uri

    def _register(self, name: str, info) -> str:
        """A new version of registered model ``name`` (created on first use) from the logged model
        ``info``; returns its ``models:/NAME/VERSION`` URI. MLflow's ``register_model`` does the
        same but prints to stderr."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another run registered it first
                raise
        version = self.client.create_model_version(name, info.model_uri, run_id=self.run_id, model_id=info.model_id)
        return f"models:/{name}/{version.version}"

    def _note(self) -> str:
        """The run's description: what it trained or evaluated, the result, and how to repeat it.
        Notes set before (by ``ocrexp reproduce``, ``ocrexp-eval``, ``model.init_from``) come first."""
        import shlex

        tags = self.tags
        if "training" in self._inputs:
            dataset, images = self._inputs["training"]
            epochs = self._epochs or self.cfg.trainer.epochs
            what = (f"{self.cfg.model.get('name', 'model')} on {dataset} ({images:,} train images, "
                    f"{epochs} epoch{'s' if epochs != 1 else ''})")
        elif "evaluation" in self._inputs:
            dataset, images = self._inputs["evaluation"]
            model = tags.get("ocrexp.model_uri", "the model")
            if self.cfg.get("mode") == "read":  # ocrexp-eval mode=read
                what = f"{model} reading {self.cfg.read.count:,} numbers made of {dataset} test digits"
            else:
                what = f"{model} on {dataset} ({images:,} test images)"
        else:
            what = self.run_name
        results = ", ".join(f"{label} {self._metrics[key]:.2%}" for key, label in RESULTS if key in self._metrics)
        command = tags.get("mlflow.source.name", "ocrexp-train")
        again = [f"`{shlex.join([command, *self._overrides])}`"] if self._overrides is not None else []
        if command == "ocrexp-train":
            again.insert(0, f"`ocrexp reproduce {self.run_id}`")
        note = what + (f": {results}." if results else ".")
        if again:
            note += f" {'Reproduce' if command == 'ocrexp-train' else 'Rerun'}: {' or '.join(again)}."
        return "\n\n".join([*self._notes, note])

    def keras_callback(self):
        from ocrexp.callbacks import MlflowMetrics

        return MlflowMetrics(self)


def _check_registered_name(name: Any) -> None:
    """``tracking.register_as`` must work in ``models:/NAME/VERSION`` and ``models:/NAME@ALIAS``."""
    if name is not None and (not isinstance(name, str) or not name.strip() or any(c in name for c in "/:@")):
        raise ConfigError(f"tracking.register_as={name!r} is not allowed: use a name without '/', ':' or '@', "
                          "such as digits, or null to register nothing.")


def _logged_overrides() -> list[str] | None:
    """The current Hydra job's command-line overrides, if running under Hydra."""
    hydra_dir = _hydra_output_dir()
    return list(OmegaConf.load(hydra_dir / "overrides.yaml")) if hydra_dir is not None else None


def _hydra_output_dir() -> Path | None:
    """The ``.hydra`` folder of the current Hydra job, if running under Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    d = Path(HydraConfig.get().runtime.output_dir) / HydraConfig.get().output_subdir
    return d if d.is_dir() else None
