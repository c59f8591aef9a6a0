"""Recording runs in MLflow.

- ``store``: where runs are kept (``tracking_uri``), preparing that store, the project experiment;
- ``run``: ``RunTracker``, one MLflow run around one training or evaluation job;
- ``null``: ``NullTracker`` for ``tracking=none``.

Nothing here imports MLflow or TensorFlow at module level: Hydra loads ``store.PrepareStore`` for
every command.
"""

from __future__ import annotations

from typing import Mapping

from omegaconf import DictConfig

from ocrexp.sweep_protocol import TrialJob
from ocrexp.tracking.null import NullTracker
from ocrexp.tracking.run import RunTracker
from ocrexp.tracking.store import ensure_store, tracking_uri

__all__ = ["NullTracker", "RunTracker", "ensure_store", "make_tracker", "start_store_server", "tracking_uri"]


def make_tracker(cfg: DictConfig, run_name: str, tags: Mapping[str, str] | None = None,
                 continue_run: str | None = None, trial: TrialJob | None = None) -> RunTracker | NullTracker:
    """A ``RunTracker`` when ``tracking.enabled``, else a ``NullTracker``. ``continue_run``: the id of
    an interrupted run that this one resumes; ``trial``: the sweep's trial this job runs."""
    return RunTracker(cfg, run_name, tags, continue_run, trial) if cfg.tracking.enabled else NullTracker()


def start_store_server(cfg: DictConfig) -> None:
    """Start the MLflow store server (``store_process``) before TensorFlow's import keeps one core busy
    for seconds and leaves the other idle. It forks, so it starts while this process has one thread."""
    from ocrexp.tracking import store_process

    if cfg.tracking.enabled:
        store_process.start(tracking_uri(cfg.tracking))
