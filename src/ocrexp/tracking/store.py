"""Where MLflow keeps runs, and preparing that store before parallel jobs start.

Kept free of MLflow imports at module level: Hydra loads the callback below for every command.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, TypeVar

from hydra.experimental.callback import Callback

from ocrexp import paths
from ocrexp.errors import OcrexpError

T = TypeVar("T")
# How long opening a run waits, retrying, for a SQLite store that another process holds locked.
STORE_WAIT_ENV, STORE_WAIT_S = "OCREXP_STORE_WAIT_S", 30.0


class StoreLocked(OcrexpError):
    """The SQLite store stayed locked by another writer for longer than ocrexp waits."""

    def __init__(self, uri: str, waited: str):
        super().__init__(f"the MLflow store {uri.removeprefix('sqlite:///')} stayed locked by another process for "
                         f"{waited}; run the same command again once it is free (training goes on from its "
                         "last checkpoint).")


def is_locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def retry_while_locked(uri: str, action: Callable[[], T], budget_s: float | None = None) -> T:
    """``action()``, retried with growing pauses while the store is locked; ``StoreLocked`` after
    ``budget_s`` (default ``$OCREXP_STORE_WAIT_S``, else 30 s)."""
    if budget_s is None:
        budget_s = float(os.environ.get(STORE_WAIT_ENV) or STORE_WAIT_S)
    deadline, pause = time.monotonic() + budget_s, 0.5
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_locked(exc):
                raise
            if time.monotonic() + pause > deadline:
                raise StoreLocked(uri, f"over {budget_s:.0f} s") from None
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


class LockAware:
    """An ``MlflowClient`` whose calls fail with ``StoreLocked`` (one sentence) instead of SQLAlchemy's
    traceback when the store is still locked after MLflow's own wait (its SQLite busy timeout, 20 s)."""

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if is_locked(exc):
                    raise StoreLocked(self._uri, "over 20 s") from None
                raise

        return call


# Asks the MLflow UI to open the experiment in its model-training views.
EXPERIMENT_KIND_TAG = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri(tracking_cfg: Any = None) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else SQLite in ``<root>/mlruns/mlflow.db``.

    The default path is absolute and taken from the project root, so Hydra's working directory and
    where a job runs never matter.
    """
    uri = getattr(tracking_cfg, "uri", None) if tracking_cfg is not None else None
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{paths.project_root() / 'mlruns' / 'mlflow.db'}"


def artifact_root() -> str:
    """Default artifact location for experiments created in the local store."""
    return (paths.project_root() / "mlruns" / "artifacts").as_uri()


def get_experiment_id(client, name: str) -> str:
    """The experiment's id, creating it (with the custom-model view tag) on first use. In a local
    store its artifacts go under the project's ``mlruns/``; a tracking server chooses where (with
    ``--serve-artifacts``, it keeps them), never a folder of the machine that happened to create it."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        local = not str(client.tracking_uri).startswith(("http://", "https://"))
        try:
            return client.create_experiment(name, artifact_location=f"{artifact_root()}/{name}" if local else None,
                                            tags=EXPERIMENT_KIND_TAG)
        except Exception:  # another process created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    return exp.experiment_id


# Opens the MLflow UI (3.x) in its model-training views, not its GenAI overview.
UI_VIEW = "?workflowType=machine_learning"


def ui_link(uri: str, experiment_id: str, run_id: str | None = None, base: str | None = None) -> str:
    """Where a browser shows the experiment's runs (or one run), in the UI's model-training views: on
    the tracking server itself for an ``http(s)`` store, else on ``base`` (default: the UI that
    ``ocrexp ui`` starts, http://127.0.0.1:5000)."""
    if base is None:
        base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "") + UI_VIEW


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """For a tracking server (``http(s)://``), fail now, in one sentence, if it does not answer: MLflow's
    own client would retry for minutes, and only once training is over."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # it answers (a proxy or an older server without /health)
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise OcrexpError(f"the MLflow tracking server {uri} does not answer ({reason}); start it, point tracking.uri "
                      "or MLFLOW_TRACKING_URI at one that runs, or record nothing with tracking=none.")


def ensure_store(uri: str) -> None:
    """Create or migrate the tracking database once (concurrent first use races in SQLite)."""
    check_reachable(uri)
    import mlflow

    if not uri.startswith("sqlite:///"):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        return
    import fcntl

    db = uri[len("sqlite:///"):]
    os.makedirs(os.path.dirname(db) or ".", exist_ok=True)
    # Processes starting together (parallel sweeps, jobs) take turns: the first creates the tables.
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class PrepareStore(Callback):
    """Hydra callback: prepare the MLflow store before a multirun's jobs start."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if config.get("tracking") and config.tracking.enabled:
            ensure_store(tracking_uri(config.tracking))
