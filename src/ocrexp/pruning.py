"""The training job's side of an Optuna trial: report the metric after each epoch, stop when pruned.

The sweeper hands each job its trial (``ocrexp.sweep_protocol.TrialJob``, through the environment,
which only the job's entry point reads; it passes the job on). The pruner is rebuilt from the spec the
sweeper stores in the study's user attributes, so every job prunes with the study's pruner. Outside a
sweep (no job) ``pruning_callback`` returns None. Optuna and Keras are imported only when a reporter
is built.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ocrexp.errors import ConfigError
from ocrexp.sweep_protocol import (FAIL_REASON, PRUNER_ATTR, RETRY_OF, JobInterrupted, TrialEnded, TrialJob,
                                   storage_failed)

PRUNERS = {
    "hyperband": "optuna.pruners.HyperbandPruner",
    "median": "optuna.pruners.MedianPruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "rung_rank": "ocrexp.rung_pruner.RungRankPruner",
    "none": "optuna.pruners.NopPruner",
}

log = logging.getLogger(__name__)


def open_storage(url: str):
    """The Optuna storage behind ``url``.

    A URL with a scheme (``postgresql://…``, ``sqlite:///…``, ``mysql://…``) is an RDB storage; anything
    else is the path of an Optuna journal file, which several processes may share safely.
    """
    import optuna

    if "://" in url:
        url = _with_driver(url)
        # SQLite under concurrent writers: wait for the lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        for attempt in range(4):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            except Exception:
                # Workers starting together race to create the schema; the loser finds it made.
                if attempt == 3:
                    raise
                time.sleep(0.5 * (attempt + 1))
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _with_driver(url: str) -> str:
    """``postgresql://`` with whichever PostgreSQL driver is installed: SQLAlchemy 2.1 picks
    psycopg 3 by default, while the ``postgres`` extra installs psycopg2."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def split_spec(spec: Any, default: str) -> tuple[str, dict[str, Any]]:
    """``"median"`` or ``{name: median, n_startup_trials: 5}`` -> ``("median", {"n_startup_trials": 5})``."""
    if spec is None:
        return default, {}
    if isinstance(spec, str):
        return spec.strip().lower(), {}
    if isinstance(spec, Mapping):
        kwargs = {str(k): v for k, v in spec.items()}
        return str(kwargs.pop("name", default)).strip().lower(), kwargs
    raise ConfigError(f"{spec!r} is not a name or a mapping with a 'name' key.")


def make_pruner(spec: Any = None):
    """An Optuna pruner from a name (``hyperband``, ``median``, ``successive_halving``, ``rung_rank``,
    ``none``), a mapping ``{name: …, **constructor arguments}``, or a Hydra ``{_target_: …}`` mapping."""
    import importlib

    if isinstance(spec, Mapping) and "_target_" in spec:
        from hydra.utils import instantiate

        return instantiate(dict(spec))
    name, kwargs = split_spec(spec, "none")
    if name not in PRUNERS:
        raise ConfigError(f"hydra.sweeper.pruner={name!r} is not a known pruner: choose one of {', '.join(PRUNERS)}.")
    module, _, cls = PRUNERS[name].rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.sweeper.pruner {name!r} rejects {kwargs}: {exc}.") from exc


class TrialReporter:
    """Reports one trial's per-epoch metric to Optuna and raises ``optuna.TrialPruned`` when pruned,
    ``TrialEnded`` when the sweep has ended the trial meanwhile.

    The value reported at step ``n`` (epochs completed) is the best value so far, the same
    best-over-epochs quantity the task returns, so pruners compare like with like.
    """

    def __init__(self, storage_url: str, study_name: str, trial_id: int, monitor: str = "val_accuracy"):
        import optuna

        storage = open_storage(storage_url)
        study_id = storage.get_study_id_from_name(study_name)
        pruner = make_pruner(storage.get_study_user_attrs(study_id).get(PRUNER_ATTR))
        # A random sampler keeps Trial() cheap: the job suggests nothing, it only reports.
        self.study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner,
                                       sampler=optuna.samplers.RandomSampler())
        self.storage = storage
        self.trial_id = trial_id
        self.trial = optuna.trial.Trial(self.study, trial_id)
        self.monitor = monitor
        self.multi_objective = len(self.study.directions) > 1  # Optuna prunes single objectives only
        self.maximize = self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        self.best: float | None = None

    def replay(self, values: list[float]) -> None:
        """Report epochs 1..n that an earlier attempt of this trial trained (this trial resumes its
        checkpoint): each step once, with no pruning decision (the attempt that trained them took it)."""
        for step, value in enumerate(values, start=1):
            if math.isfinite(float(value)):
                self._keep_best(float(value))
                self._report(step)

    def _keep_best(self, value: float) -> None:
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value

    def _report(self, step: int) -> None:
        """Record the best value so far at ``step``; ``TrialEnded`` if the sweep has ended the trial."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            with self._storage_answering():
                self.trial.report(self.best, step)
        except UpdateFinishedTrialError:
            trial = self.storage.get_trial(self.trial_id)
            reason = trial.user_attrs.get(FAIL_REASON)
            raise TrialEnded(f"the sweep ended trial {trial.number} ({trial.state.name}"
                             f"{': ' + reason if reason else ''}) while this job trained it") from None

    @contextlib.contextmanager
    def _storage_answering(self):
        """A study storage that stops answering interrupts the job rather than failing its trial: the run
        ends KILLED and keeps its checkpoint, so that the trial's retry (the sweep's same command, once
        the storage is back) goes on from the last epoch instead of the first."""
        try:
            yield
        except Exception as exc:
            if not storage_failed(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise JobInterrupted(f"the study's storage stopped answering ({first}); the trial's checkpoint "
                                 "is kept for its retry") from None

    def report(self, step: int, value: float, last: bool = False) -> None:
        """Record ``value`` after ``step`` epochs; raise ``optuna.TrialPruned`` if the pruner says so.
        ``last``: the trial's final epoch: its training is done, so it completes whatever the pruner
        would say (pruning it now saves nothing and throws a finished result away)."""
        import optuna

        value = float(value)
        if not math.isfinite(value):
            return  # a NaN loss is the training loop's failure to report, not a pruning signal
        self._keep_best(value)
        self._report(step)
        if last:
            return
        with self._storage_answering():
            prune = self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {step}: best {self.monitor} {self.best:.4f}")


def retried_trial(job: TrialJob) -> int | None:
    """The number of the trial that ``job``'s trial retries (the sweeper re-queued it after its
    worker died), or None for a first attempt."""
    value = open_storage(job.storage).get_trial(job.trial_id).user_attrs.get(RETRY_OF)
    return int(value) if value is not None else None


def trial_reporter(job: TrialJob | None, monitor: str = "val_accuracy") -> TrialReporter | None:
    """A ``TrialReporter`` for ``job``'s trial, or None outside an Optuna sweep (no job) and for
    multi-objective studies, which Optuna cannot prune."""
    if job is None:
        return None
    reporter = TrialReporter(job.storage, job.study, job.trial_id, monitor)
    if reporter.multi_objective:
        log.info("no pruning in study %s: it has several objectives", job.study)
        return None
    return reporter


def pruning_callback(job: TrialJob | None, monitor: str = "val_accuracy",
                     history: Mapping[str, list[float]] | None = None, last_epoch: int | None = None):
    """A Keras callback that reports ``monitor`` to ``job``'s Optuna trial after every epoch and
    raises ``optuna.TrialPruned`` when the study's pruner stops it; None outside an Optuna sweep.
    ``history``: the epochs a resumed checkpoint already trained, reported first (once each).
    ``last_epoch``: the run's final epoch, after which the trial is never pruned."""
    reporter = trial_reporter(job, monitor)
    if reporter is None:
        return None
    if history and history.get(monitor):
        reporter.replay(history[monitor])
    return _keras_callback_class()(reporter, last_epoch)


@cache
def _keras_callback_class():
    import keras

    class OptunaPruning(keras.callbacks.Callback):
        """Keras side of ``TrialReporter``."""

        def __init__(self, reporter: TrialReporter, last_epoch: int | None = None):
            super().__init__()
            self.reporter, self.last_epoch = reporter, last_epoch
            self._warned = False

        def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
            value = (logs or {}).get(self.reporter.monitor)
            if value is None:
                if not self._warned:
                    log.warning("pruning needs %r in the epoch logs; it has %s", self.reporter.monitor,
                                ", ".join(sorted(logs or {})) or "nothing")
                    self._warned = True
                return
            self.reporter.report(epoch + 1, value, last=epoch + 1 == self.last_epoch)

    return OptunaPruning
