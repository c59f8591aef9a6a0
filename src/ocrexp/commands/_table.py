"""``ocrexp runs``' tables: built from MLflow runs as typed rows, and printed (aligned text, CSV, JSON).

A run's ``state`` is its trial's state in Optuna's words (COMPLETE, PRUNED, FAIL), or KILLED or
RUNNING while MLflow says so; a run that is no trial is COMPLETE when it FINISHED and FAIL when it
FAILED. MLflow's own word stays in ``status``, a column that only ``--csv`` and ``--json`` write.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ocrexp.errors import OcrexpError
from ocrexp.sweep_protocol import (BEST_METRIC, NUMBER_TAG, PARENT_TAG, ROLE_TAG, STATE_TAG, STUDY_METRICS,
                                    STUDY_ROLE, STUDY_TAG)

#: How ``--sort``/``--group-by`` names may start to say what they are (MLflow's search prefixes).
ENTITY = re.compile(r"^(metrics?|params?|parameters?|tags?|attributes?|attr|run)\.", re.IGNORECASE)
FULL_ID = re.compile(r"[0-9a-f]{32}")
ID_COLUMNS = ("run_id", "sweep")  # full run ids in these print as 8 characters
#: MLflow statuses that say more than the sweeper's tag: the run still runs, or was interrupted.
LIVE_OR_KILLED = ("RUNNING", "SCHEDULED", "KILLED")
AS_TRIAL_STATE = {"FINISHED": "COMPLETE", "FAILED": "FAIL"}
#: How a sweep's trials are ranked after their value: results first, then how far they got.
STATE_RANK = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "SCHEDULED": 2, "FAIL": 3, "KILLED": 4}


@dataclass
class Table:
    """Rows keyed by column name; values stay typed (float, str, datetime, None) until printed.
    ``machine_only``: columns that ``--csv`` and ``--json`` write but the printed table leaves out."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    machine_only: frozenset[str] = frozenset()


# -- what a run shows ----------------------------------------------------------------------------
def run_state(run) -> str:
    """The ``state`` column: COMPLETE, PRUNED, FAIL, KILLED or RUNNING (see the module's docstring)."""
    status = run.info.status
    if status in LIVE_OR_KILLED:
        return status
    return run.data.tags.get(STATE_TAG) or AS_TRIAL_STATE.get(status, status)


def is_study(run) -> bool:
    return run.data.tags.get(ROLE_TAG) == STUDY_ROLE


def is_trial(run) -> bool:
    return NUMBER_TAG in run.data.tags and not is_study(run)


def sweep_cell(run) -> str | None:
    """The ``sweep`` column: a study's summary on its parent run, the parent's id (else the study's
    name) on a trial's run, nothing on other runs."""
    if is_study(run):
        return sweep_summary(run.data.metrics)
    if is_trial(run):
        return run.data.tags.get(PARENT_TAG) or run.data.tags.get(STUDY_TAG)
    return None


def sweep_summary(metrics: dict[str, float]) -> str:
    """``best 0.9812, 18 complete, 2 pruned, 1 failed`` from a study's parent run's metrics."""
    counts = ", ".join(f"{metrics[name]:.0f} {state}" for name, state in STUDY_METRICS.items() if name in metrics)
    best = f"best {_number(metrics[BEST_METRIC])}" if BEST_METRIC in metrics else "no result yet"
    return f"{best}, {counts}" if counts else best


# -- tables --------------------------------------------------------------------------------------
def run_table(runs: list, metrics: list[str], params: list[str]) -> Table:
    """One row per run; a ``sweep`` column when any run is an Optuna study's parent or trial."""
    sweeps = any(is_study(r) or is_trial(r) for r in runs)
    columns = ["run_id", "run_name", "state", "status", "start_time", *metrics, *params]
    table = Table(columns + ["sweep"] if sweeps else columns, machine_only=frozenset({"status"}))
    for r in runs:
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "state": run_state(r), "status": r.info.status,
               "start_time": _time(r.info.start_time)}
        row.update({m: r.data.metrics.get(m) for m in metrics})
        row.update({p: r.data.params.get(p) for p in params})
        if sweeps:
            row["sweep"] = sweep_cell(r)
        table.rows.append(row)
    return table


def trial_table(trials: list, values: dict[int, float], maximize: bool | None, pruned_at: dict[str, int],
                metrics: list[str], params: list[str]) -> Table:
    """One sweep's trials, best first: COMPLETE by ``values`` (trial number -> the study's value; larger
    first when ``maximize``), then PRUNED by the epoch they reached (``pruned_at``, by run id), then
    RUNNING, FAIL and KILLED. ``best`` marks the best COMPLETE trial; with ``maximize`` None (several
    objectives) no trial is best and results keep their trial order."""
    table = Table(["run_id", "trial", "state", "status", "value", "best", "pruned_at", *metrics, *params],
                  machine_only=frozenset({"status"}))
    for r in trials:
        number = r.data.tags.get(NUMBER_TAG, "")
        trial = int(number) if number.lstrip("-").isdigit() else None
        state = run_state(r)
        row = {"run_id": r.info.run_id, "trial": trial, "state": state, "status": r.info.status,
               "value": values.get(trial) if state == "COMPLETE" and maximize is not None else None,
               "best": False, "pruned_at": pruned_at.get(r.info.run_id) if state == "PRUNED" else None}
        row.update({m: r.data.metrics.get(m) for m in metrics})
        row.update({p: r.data.params.get(p) for p in params})
        table.rows.append(row)

    sign = -1 if maximize else 1

    def rank(row: dict[str, Any]) -> tuple:
        value = row["value"]
        return (STATE_RANK.get(row["state"], len(STATE_RANK)), value is None, sign * value if value is not None else 0,
                -(row["pruned_at"] or 0), math.inf if row["trial"] is None else row["trial"])

    table.rows.sort(key=rank)
    if table.rows and table.rows[0]["value"] is not None:
        table.rows[0]["best"] = True
    return table


def group_table(runs: list, key: str, metrics: list[str], params: list[str],
                sort_metric: tuple[str, bool] | None = None) -> Table:
    """One row per value of ``key``: ``n``, each metric's mean and sample std, each param's values.

    Groups keep the order of their first run, or follow a metric's mean when ``sort_metric``
    (name, descending) is given.
    """
    value_of = _group_key(runs, key)
    groups: dict[Any, list] = {}
    for r in runs:
        groups.setdefault(value_of(r), []).append(r)
    table = Table([key, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std")), *params])
    for value, members in groups.items():
        row: dict[str, Any] = {key: value, "n": len(members)}
        for m in metrics:
            values = [r.data.metrics[m] for r in members if m in r.data.metrics]
            row[f"{m}_mean"] = statistics.fmean(values) if values else None
            row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
        for p in params:  # the param's values in the group: one when it is what defines the group
            row[p] = ",".join(sorted({r.data.params[p] for r in members if p in r.data.params})) or None
        table.rows.append(row)
    if sort_metric:
        name, descending = sort_metric
        present = [row for row in table.rows if row[f"{name}_mean"] is not None]
        present.sort(key=lambda row: row[f"{name}_mean"], reverse=descending)
        table.rows = present + [row for row in table.rows if row[f"{name}_mean"] is None]
    return table


def diff_table(a, b) -> Table:
    """The params, then the metrics, whose values differ between runs ``a`` and ``b``."""
    table = Table(["kind", "key", a.info.run_id, b.info.run_id])
    for kind, left, right in (("param", a.data.params, b.data.params), ("metric", a.data.metrics, b.data.metrics)):
        for name in sorted(left.keys() | right.keys()):
            x, y = left.get(name), right.get(name)
            if x != y and not (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)):
                table.rows.append({"kind": kind, "key": name, a.info.run_id: x, b.info.run_id: y})
    return table


def _group_key(runs: list, key: str):
    """A function giving a run's value of ``key``: run_name/state/status, ``params.X``, ``tags.X`` or a
    bare param or tag."""
    attributes = {"run_name": lambda r: r.info.run_name, "state": run_state, "status": lambda r: r.info.status}
    entity, _, name = key.partition(".") if ENTITY.match(key) else ("", "", key)
    entity = entity.lower().rstrip("s")
    if entity in ("attribute", "attr", "run") or (not entity and name in attributes):
        if name not in attributes:
            raise OcrexpError(f"--group-by {key!r}: runs can be grouped by run_name, state or status among their "
                              "attributes, or by a param or tag.")
        return attributes[name]
    if not entity:  # a bare name: a param if any run has it, else a tag
        if any(name in r.data.params for r in runs):
            entity = "param"
        elif any(name in r.data.tags for r in runs) or not runs:
            entity = "tag"
        else:
            raise OcrexpError(f"--group-by {key!r}: no matching run has a param or tag of that name; "
                              "group by run_name, a param (e.g. seed) or a tag (e.g. tags.optuna.study).")
    if entity in ("param", "parameter"):
        return lambda r: r.data.params.get(name)
    if entity == "tag":
        return lambda r: r.data.tags.get(name)
    raise OcrexpError(f"--group-by {key!r}: runs are grouped by a param or tag (a metric is what gets averaged).")


# -- printing ------------------------------------------------------------------------------------
def render(table: Table, precise: bool = False) -> str:
    """An aligned plain-text table: run ids shortened to 8 characters, numbers right-aligned with
    the decimals their column needs for 4 significant digits (every digit when ``precise``)."""
    columns = [c for c in table.columns if c not in table.machine_only]
    numeric = [all(_is_number(row.get(c)) or row.get(c) is None for row in table.rows) for c in columns]
    decimals = {c: max((_decimals(row[c]) for row in table.rows if isinstance(row.get(c), float)), default=0)
                for c in columns}
    cells = [[_text(row.get(c), c, None if precise else decimals[c]) for c in columns] for row in table.rows]
    headers = [_header(c) for c in columns]
    widths = [max([len(h)] + [len(line[i]) for line in cells]) for i, h in enumerate(headers)]
    lines = []
    for line in [headers, *cells]:
        padded = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(line, widths, numeric)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def render_diff(table: Table, a, b) -> str:
    ids = f"{a.info.run_id[:8]} and {b.info.run_id[:8]}"
    n_params = len(a.data.params.keys() | b.data.params.keys())
    n_metrics = len(a.data.metrics.keys() | b.data.metrics.keys())
    if not table.rows:
        return f"runs {ids} have the same params ({n_params}) and metrics ({n_metrics})."
    heading = "\n".join(f"{side}: {r.info.run_id[:8]}  {r.info.run_name}  {run_state(r)}  "
                        f"{_text(_time(r.info.start_time), 'start_time', None)}" for side, r in (("a", a), ("b", b)))
    kinds = [row["kind"] for row in table.rows]
    summary = (f"params: {kinds.count('param')} of {n_params} differ; "
               f"metrics: {kinds.count('metric')} of {n_metrics} differ.")
    return f"{heading}\n\n{render(table, precise=True)}\n\n{summary}"


def _write_csv(table: Table) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if (v := _for_machines(row.get(c))) is None else v for c in table.columns])


def _write_json(table: Table) -> None:
    json.dump([{c: _for_machines(row.get(c)) for c in table.columns} for row in table.rows], sys.stdout, indent=1)
    sys.stdout.write("\n")


def _for_machines(value: Any) -> Any:
    """A value for machines: full precision, ISO times, NaN as None (strict JSON has no NaN)."""
    from ocrexp.config import plain  # not at the top: this module loads with ``ocrexp --help``

    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return plain(value)


def _header(column: str) -> str:
    return column[:8] if FULL_ID.fullmatch(column) else column


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any, column: str, decimals: int | None) -> str:
    if value is None:
        return ""
    if column in ID_COLUMNS and isinstance(value, str) and FULL_ID.fullmatch(value):
        return value[:8]
    if isinstance(value, bool):  # the best trial's mark
        return "*" if value else ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float) and math.isfinite(value):
        return repr(value) if decimals is None else f"{value:.{decimals}f}"
    return str(value)


def _number(value: float) -> str:
    return f"{value:.{_decimals(value)}f}" if math.isfinite(value) else str(value)


def _decimals(value: float, significant: int = 4) -> int:
    """The fewest decimals that show ``value`` to ``significant`` digits (at most 10)."""
    if not math.isfinite(value) or value == 0:
        return 0
    most = max(0, min(10, significant - 1 - math.floor(math.log10(abs(value)))))
    return next(d for d in range(most + 1) if round(value, d) == round(value, most))


def _time(millis: int | None) -> datetime | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000).astimezone()
