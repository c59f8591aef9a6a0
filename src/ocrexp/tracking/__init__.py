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

from ocrexp.tracking.null import NullTracker
from ocrexp.tracking.run import RunTracker, draws_in_helper
from ocrexp.tracking.store import ensure_store, tracking_uri

__all__ = ["NullTracker", "RunTracker", "ensure_store", "make_tracker", "start_helpers", "tracking_uri"]


def make_tracker(cfg: DictConfig, run_name: str, tags: Mapping[str, str] | None = None,
                 continue_run: str | None = None) -> RunTracker | NullTracker:
    """A ``RunTracker`` when ``tracking.enabled``, else a ``NullTracker``. ``continue_run``: the id of
    an interrupted run that this one resumes."""
    return RunTracker(cfg, run_name, tags, continue_run) if cfg.tracking.enabled else NullTracker()


def start_helpers(cfg: DictConfig) -> None:
    """Start the processes a run's tracking uses, before TensorFlow's import keeps one core busy for
    seconds and leaves the other idle: the MLflow store server (``store_process``) and the figure
    helper (``figures``). The store server forks, so it goes first, while this process has one thread."""
    from ocrexp.tracking import figures, store_process

    if not cfg.tracking.enabled:
        return
    store_process.start(tracking_uri(cfg.tracking))
    if draws_in_helper(cfg):
        figures.helper()
