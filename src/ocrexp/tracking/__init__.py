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
from ocrexp.tracking.run import RunTracker
from ocrexp.tracking.store import ensure_store, tracking_uri

__all__ = ["NullTracker", "RunTracker", "ensure_store", "make_tracker", "tracking_uri"]


def make_tracker(cfg: DictConfig, run_name: str, tags: Mapping[str, str] | None = None,
                 continue_run: str | None = None) -> RunTracker | NullTracker:
    """A ``RunTracker`` when ``tracking.enabled``, else a ``NullTracker``. ``continue_run``: the id of
    an interrupted run that this one resumes."""
    return RunTracker(cfg, run_name, tags, continue_run) if cfg.tracking.enabled else NullTracker()
