"""Tab completion of run names for ``ocrexp`` (argcomplete completers).

A completer runs on every TAB, in a fresh process, so it stays cheap: a SQLite store is read
directly and read-only (no MLflow import, nothing created or migrated); only a tracking server goes
through ``MlflowClient``. A store that is missing or unreadable offers nothing, silently.

Runs are offered as ``ocrexp runs`` shows them (8-character short ids), as full ids where a short id
is shared or the typed prefix is longer, and by run name where the name is unique; these are the
names ``ocrexp.tracking.refs`` resolves.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

SHORT = 8  # the id length ``ocrexp runs`` shows
LISTED = 1000  # newest runs a completion reads
RUNS_URI = "runs:/"

# Subcommand -> destinations of the arguments that name a run, and of those that take a model URI.
RUN_ARGUMENTS = {"reproduce": ("run_id",), "resume": ("run_id",), "export": ("run_id",), "runs": ("diff", "sweep")}
MODEL_ARGUMENTS = {"predict": ("model",)}


def attach(subparsers: argparse._SubParsersAction) -> None:
    """Give the run and model arguments of each registered subcommand their completer."""
    for name, parser in subparsers.choices.items():
        # argparse lists a parser's actions only in ``_actions``, the attribute argcomplete walks too.
        for action in parser._actions:
            if action.dest in RUN_ARGUMENTS.get(name, ()):
                action.completer = complete_run  # type: ignore[attr-defined]
            elif action.dest in MODEL_ARGUMENTS.get(name, ()):
                action.completer = complete_model_uri  # type: ignore[attr-defined]


def complete_run(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> dict[str, str]:
    """Run ids and names that start with ``prefix``, each with what ``ocrexp runs`` would show of it."""
    return run_candidates(prefix, _store_uri(parsed_args))


def complete_model_uri(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> dict[str, str]:
    """``runs:/<run>/model`` for the runs that ``prefix`` (after ``runs:/``) starts; before that,
    ``runs:/`` itself and model files (.keras, .h5) and directories."""
    if prefix.startswith(RUNS_URI):
        runs = run_candidates(prefix[len(RUNS_URI):], _store_uri(parsed_args))
        return {f"{RUNS_URI}{run}/model": about for run, about in runs.items()}
    from argcomplete.completers import FilesCompleter

    offered = {path: "" for path in FilesCompleter(allowednames=("keras", "h5"))(prefix)}
    if RUNS_URI.startswith(prefix):
        offered[RUNS_URI] = "a tracked run's model"
    return offered


def run_candidates(prefix: str, uri: str) -> dict[str, str]:
    """Names for the runs in the store at ``uri`` that start with ``prefix``: short id, full id or
    unique run name, each mapped to a description; empty when the store cannot be read."""
    try:
        runs = list(_read_runs(uri))
    except Exception:  # completion never fails loudly: a broken store simply offers nothing
        return {}
    shorts = Counter(run_id[:SHORT] for run_id, _, _ in runs)
    names = Counter(name for _, name, _ in runs if name)
    offered: dict[str, str] = {}
    for run_id, name, start_time in runs:
        started = datetime.fromtimestamp(start_time / 1000).strftime("%Y-%m-%d %H:%M") if start_time else ""
        shown = run_id if len(prefix) > SHORT or shorts[run_id[:SHORT]] > 1 else run_id[:SHORT]
        if shown.startswith(prefix.lower()):
            offered.setdefault(shown, f"{name or ''} {started}".strip())
        if name and names[name] == 1 and name.startswith(prefix):
            offered.setdefault(name, f"{run_id[:SHORT]} {started}".strip())
    return offered


def _store_uri(parsed_args: argparse.Namespace) -> str:
    """The store the command on the line would read: its ``--tracking-uri`` if typed, else the default."""
    typed = getattr(parsed_args, "tracking_uri", None)
    if typed:
        return typed
    from ocrexp.tracking.store import tracking_uri

    return tracking_uri()


def _read_runs(uri: str) -> Iterable[tuple[str, str | None, int | None]]:
    """``(run id, run name, start time in ms)`` of the active runs in active experiments, newest first."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if not db.is_file():
            return []
        # mode=ro: sqlite3 would otherwise create a missing file; a short timeout keeps TAB responsive
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1.0)) as con:
            return con.execute(
                "SELECT r.run_uuid, r.name, r.start_time FROM runs r "
                "JOIN experiments e ON e.experiment_id = r.experiment_id "
                "WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active' "
                "ORDER BY r.start_time DESC LIMIT ?", (LISTED,)).fetchall()
    if uri.startswith(("http://", "https://")):
        return _server_runs(uri)
    return []


def _server_runs(uri: str) -> list[tuple[str, str | None, int | None]]:
    from ocrexp.tracking.store import check_reachable

    check_reachable(uri, timeout=1.0)  # MLflow's client would retry a silent server for minutes
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    runs = client.search_runs(experiments, max_results=LISTED, order_by=["attributes.start_time DESC"])
    return [(r.info.run_id, r.info.run_name, r.info.start_time) for r in runs]
