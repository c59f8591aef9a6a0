"""Naming a run the way ``ocrexp runs`` shows it, in every command that takes one.

A run is named by its full id, a unique prefix of its id of at least ``MIN_PREFIX`` characters (as
git takes commit ids), or a unique run name. ``ocrexp reproduce``, ``resume``, ``export``,
``runs --diff``/``--sweep`` and every ``runs:/<run>/…`` model URI (``ocrexp predict --model``,
``ocrexp-eval model_uri=``, ``model.init_from=``) resolve it here. A name that fits several runs, or
none, is one sentence listing the candidates or saying where it looked.

Stores are only read here: a SQLite file that does not exist, is not a database, or holds no MLflow
tables is refused before MLflow would create or migrate it.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from ocrexp.errors import OcrexpError
from ocrexp.tracking.store import check_reachable

MIN_PREFIX = 4
SHOWN = 5  # candidates an ambiguous name lists
_FULL_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]+")


class RunNotFound(OcrexpError):
    """No run has that id, id prefix or name."""


class AmbiguousRun(OcrexpError):
    """Several runs have that id prefix or name."""


def check_store(uri: str) -> None:
    """Fail in one sentence, writing nothing, when ``uri`` holds no MLflow store to read: a tracking
    server that does not answer, or a SQLite path that is missing, not a database, or not MLflow's."""
    check_reachable(uri)
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):])
    if not db.is_file():
        raise OcrexpError(f"there is no MLflow store at {db} yet: train a model first (ocrexp-train) or point "
                          "--tracking-uri (or MLFLOW_TRACKING_URI) at the store that holds your runs.")
    try:  # read-only: MLflow would create its tables in any SQLite file it is given
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise OcrexpError(f"{db} is not an MLflow store ({exc}); point --tracking-uri at the mlflow.db "
                          "that holds your runs.") from None
    if not {"experiments", "runs"} <= tables:
        raise OcrexpError(f"{db} is a SQLite database but not an MLflow store (it has no runs table); point "
                          "--tracking-uri at the mlflow.db that holds your runs.")


def find_run(client, ref: str, uri: str, experiment_ids: list[str] | None = None):
    """The one run that ``ref`` names in the store ``client`` reads (``uri``: that store, for messages),
    among ``experiment_ids`` (default: every active experiment)."""
    from mlflow.exceptions import MlflowException

    text = _checked(ref)
    key = text.lower()
    if _FULL_ID.fullmatch(key):
        try:
            return client.get_run(key)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise OcrexpError(f"cannot read run {key} from {uri} ({_first_line(exc)}).") from None
    ids = experiment_ids if experiment_ids is not None else _experiment_ids(client, uri)
    found: dict[str, Any] = {}
    if ids and len(key) >= MIN_PREFIX and _HEX.fullmatch(key):
        for run in _search(client, ids, f"attributes.run_id LIKE '{key}%'", uri):
            found[run.info.run_id] = run
    if ids:
        for run in _search(client, ids, f"attributes.run_name = {_quoted(text)}", uri):
            found[run.info.run_id] = run
    if len(found) == 1:
        return next(iter(found.values()))
    if found:
        runs = sorted(found.values(), key=lambda r: r.info.start_time or 0, reverse=True)
        listed = "; ".join(describe(r) for r in runs[:SHOWN]) + (f"; and {len(runs) - SHOWN} more"
                                                                   if len(runs) > SHOWN else "")
        what = "id prefix or name" if _HEX.fullmatch(key) else "name"
        raise AmbiguousRun(f"run {text!r} is ambiguous, the {what} of {len(runs)} runs: {listed}; give more of "
                           "the id.")
    short = (f" (an id prefix needs at least {MIN_PREFIX} characters)"
             if _HEX.fullmatch(key) and len(key) < MIN_PREFIX else "")
    where = f"{len(ids)} experiment{'s' if len(ids) != 1 else ''}" if experiment_ids is None else "the experiment"
    raise RunNotFound(f"no run has the id, id prefix or name {text!r}{short} in {uri} ({where} searched); "
                      "`ocrexp runs` lists the runs.")


def store_client(uri: str):
    """An ``MlflowClient`` reading the store at ``uri``, once ``check_store`` has found one there."""
    import mlflow

    from ocrexp.tracking import store_process

    check_store(uri)
    store_process.install()  # ocrexp-train and ocrexp-eval may have started one
    return mlflow.MlflowClient(uri)


def resolve_run(ref: str, uri: str):
    """The run ``ref`` names in the store at ``uri``, which must exist (``check_store``)."""
    return find_run(store_client(uri), ref, uri)


def resolve_model_uri(model_uri: str, tracking_uri: str) -> str:
    """``runs:/<run>/<path>`` with ``<run>`` as any name ``find_run`` takes, turned into the run's full
    id; any other URI or path is returned as it is."""
    if not model_uri.startswith("runs:/"):
        return model_uri
    ref, _, path = model_uri[len("runs:/"):].partition("/")
    if not ref or not path:
        raise OcrexpError(f"model URI {model_uri!r} is incomplete: write runs:/<run id, prefix or name>/model.")
    run = resolve_run(ref, tracking_uri)
    return f"runs:/{run.info.run_id}/{path}"


def describe(run) -> str:
    """``ff424f91 trial-1 (2026-12-07 10:31)``: how an ambiguous name lists a candidate."""
    started = datetime.fromtimestamp(run.info.start_time / 1000).strftime("%Y-%m-%d %H:%M") \
        if run.info.start_time else "not started"
    return f"{run.info.run_id[:8]} {run.info.run_name} ({started})"


def _checked(ref: Any) -> str:
    text = str(ref).strip() if ref is not None else ""
    if not text or any(c in text for c in "\n\r\t") or ("'" in text and '"' in text):
        raise OcrexpError(f"{ref!r} is not a run id, id prefix or run name; copy one from `ocrexp runs`.")
    return text


def _quoted(text: str) -> str:
    return f'"{text}"' if "'" in text else f"'{text}'"


def _experiment_ids(client, uri: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        return [e.experiment_id for e in client.search_experiments()]
    except MlflowException as exc:
        raise OcrexpError(f"cannot read experiments from {uri} ({_first_line(exc)}).") from None


def _search(client, experiment_ids: list[str], filter_string: str, uri: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return client.search_runs(experiment_ids, filter_string=filter_string, max_results=SHOWN * 20)
    except MlflowException as exc:
        raise OcrexpError(f"cannot read runs from {uri} ({_first_line(exc)}).") from None


def _first_line(exc: Exception) -> str:
    return (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0].rstrip(".")
