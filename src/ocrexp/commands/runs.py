"""``ocrexp runs``: compare MLflow runs from the shell.

    ocrexp runs                                            # the newest 20 runs of experiment ocrexp
    ocrexp runs --filter "params.model.name = 'cnn'" --sort "test_accuracy DESC" --params seed
    ocrexp runs --group-by run_name --metrics test_accuracy    # mean and std over seeds
    ocrexp runs --diff 1a2b3c4d 5e6f7a8b                   # the params and metrics that differ
    ocrexp runs --json | jq .                              # the table's columns, for machines

A study's parent run (an Optuna sweep) shows its best value and trial counts in the ``sweep`` column.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
from pathlib import Path
from typing import Any

from ocrexp.commands._table import Table, _number, _time, _write_csv, _write_json, render, render_diff
from ocrexp.errors import OcrexpError
from ocrexp.sweep_protocol import BEST_METRIC, ROLE_TAG, STUDY_METRICS, STUDY_ROLE

DEFAULT_METRICS = "test_accuracy,val_accuracy,train_time_s"
DEFAULT_LIMIT = 20
NEWEST_FIRST = "attributes.start_time DESC"
#: Run attributes MLflow can sort and filter on; a bare ``--sort`` name among them is one of these.
ATTRIBUTES = frozenset({"run_id", "run_name", "status", "start_time", "end_time", "user_id", "artifact_uri"})
#: How ``--sort``/``--group-by`` names may start to say what they are (MLflow's search prefixes).
ENTITY = re.compile(r"^(metrics?|params?|parameters?|tags?|attributes?|attr|run)\.", re.IGNORECASE)
#: Metrics an Optuna study's parent run logs after every trial (hydra_plugins.ocrexp_optuna_sweeper).
PAGE = 1000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp runs``."""
    parser = subparsers.add_parser(
        "runs", help="list, group and compare MLflow runs",
        description="A table of MLflow runs (newest first), grouped with mean and std,\n"
                    "or two runs compared key by key.", epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", metavar="NAME", default=None,
                        help="experiment to read (default: tracking.experiment_name, ocrexp)")
    parser.add_argument("--tracking-uri", default=None,
                        help="store to read (default: $MLFLOW_TRACKING_URI or the project's)")
    parser.add_argument("--filter", metavar="EXPR", default="",
                        help="MLflow search syntax, e.g. \"params.seed = '1' and metrics.test_accuracy > 0.99\"")
    parser.add_argument("--sort", metavar="KEY [ASC|DESC]", default=None,
                        help="e.g. 'metrics.test_accuracy DESC'; a bare name is a run attribute (start_time, "
                             "run_name, ...), a --params name, else a metric; ascending unless DESC "
                             "(default: newest first)")
    parser.add_argument("--metrics", metavar="A,B", default=DEFAULT_METRICS,
                        help=f"metric columns (default {DEFAULT_METRICS})")
    parser.add_argument("--params", metavar="A,B", default="", help="param columns, e.g. seed,optimizer.lr")
    parser.add_argument("--limit", type=_non_negative, default=DEFAULT_LIMIT, metavar="N",
                        help=f"rows to show, runs or groups (default {DEFAULT_LIMIT}; 0: all)")
    parser.add_argument("--group-by", metavar="KEY", default=None,
                        help="run_name, a param or a tag: one row per value with n, <metric>_mean and "
                             "<metric>_std (sample std) over every matching run")
    parser.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"), default=None,
                        help="the params and metrics that differ between two runs (ids or unique prefixes)")
    machine = parser.add_mutually_exclusive_group()
    machine.add_argument("--csv", action="store_true", help="CSV with the table's columns (full ids and values)")
    machine.add_argument("--json", action="store_true", help="a JSON array of rows with the table's columns")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table, the groups or the diff the arguments ask for."""
    import mlflow

    from ocrexp.config import TrackingConf
    from ocrexp.tracking import liveness
    from ocrexp.tracking.store import tracking_uri

    uri = args.tracking_uri or tracking_uri()
    _check_store_exists(uri)
    client = mlflow.MlflowClient(uri)
    experiment = args.experiment or TrackingConf.experiment_name
    experiment_id = _experiment_id(client, experiment, uri)
    liveness.close_dead_runs(client, [experiment_id])  # so that no dead run shows as RUNNING
    metrics, params = _names(args.metrics), _names(args.params)
    if args.diff:
        a, b = (_find_run(client, experiment_id, ref, uri) for ref in args.diff)
        table = diff_table(a, b)
        text = render_diff(table, a, b)
    else:
        order = _order_by(args.sort, params)
        # Groups need all their runs for honest statistics; --limit then counts groups.
        limit = None if args.group_by or args.limit == 0 else args.limit
        runs = _search(client, experiment_id, args.filter, order, limit, uri)
        if args.group_by:
            table = group_table(runs, args.group_by, metrics, params, _metric_sorted(order[0], metrics))
            table.rows = table.rows[:args.limit or None]
        else:
            table = run_table(runs, metrics, params)
        nothing = f"no runs in experiment {experiment!r}" + (" match --filter" if args.filter else "")
        text = render(table) if table.rows else nothing
    if args.csv:
        _write_csv(table)
    elif args.json:
        _write_json(table)
    else:
        print(text)
    return 0


# -- tables ------------------------------------------------------------------------------------
def run_table(runs: list, metrics: list[str], params: list[str]) -> Table:
    """One row per run; a ``sweep`` column when any run is an Optuna study's parent."""

    sweeps = any(r.data.tags.get(ROLE_TAG) == STUDY_ROLE for r in runs)
    columns = ["run_id", "run_name", "status", "start_time", *metrics, *params]
    table = Table(columns + ["sweep"] if sweeps else columns)
    for r in runs:
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
               "start_time": _time(r.info.start_time)}
        row.update({m: r.data.metrics.get(m) for m in metrics})
        row.update({p: r.data.params.get(p) for p in params})
        if sweeps:
            row["sweep"] = _sweep_summary(r.data.metrics) if r.data.tags.get(ROLE_TAG) == STUDY_ROLE else None
        table.rows.append(row)
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
    """A function giving a run's value of ``key``: run_name/status, ``params.X``, ``tags.X`` or a bare param or tag."""
    entity, _, name = key.partition(".") if ENTITY.match(key) else ("", "", key)
    entity = entity.lower().rstrip("s")
    if entity in ("attribute", "attr", "run") or (not entity and name in ("run_name", "status")):
        if name not in ("run_name", "status"):
            raise OcrexpError(f"--group-by {key!r}: runs can be grouped by run_name or status among their "
                              "attributes, or by a param or tag.")
        return lambda r: getattr(r.info, name)
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


def _sweep_summary(metrics: dict[str, float]) -> str:
    counts = ", ".join(f"{metrics[name]:.0f} {state}" for name, state in STUDY_METRICS.items() if name in metrics)
    best = f"best {_number(metrics[BEST_METRIC])}" if BEST_METRIC in metrics else "no result yet"
    return f"{best}, {counts}" if counts else best


# -- finding runs ------------------------------------------------------------------------------
def _check_store_exists(uri: str) -> None:
    # MLflow would create an empty database: say where the runs were expected instead.
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise OcrexpError(f"there is no MLflow store at {uri[len('sqlite:///'):]} yet: train a model first "
                          "(ocrexp-train) or point --tracking-uri at the store that holds your runs.")


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = _mlflow_call(lambda: client.get_experiment_by_name(name), uri)
    if experiment is None:
        names = sorted(e.name for e in _mlflow_call(lambda: client.search_experiments(), uri))
        raise OcrexpError(f"{uri} has no experiment named {name!r}; choose one of "
                          f"{', '.join(names) or '(none yet)'} with --experiment NAME.")
    return experiment.experiment_id


def _search(client, experiment_id: str, filter_string: str, order_by: list[str], limit: int | None, uri: str) -> list:
    """Runs matching the filter in order, up to ``limit`` (None: all), page by page."""
    from mlflow.exceptions import MlflowException

    runs: list = []
    token = None
    while limit is None or len(runs) < limit:
        size = PAGE if limit is None else min(PAGE, limit - len(runs))
        try:
            page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                      max_results=size, page_token=token)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise OcrexpError(f"cannot read runs from {uri} ({_first_line(exc)}).") from None
            raise _bad_query(client, experiment_id, filter_string, order_by, exc) from None
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def _bad_query(client, experiment_id: str, filter_string: str, order_by: list[str], exc) -> OcrexpError:
    """Whether the --filter or the --sort was wrong, as one sentence."""
    from mlflow.exceptions import MlflowException

    try:
        client.search_runs([experiment_id], filter_string=filter_string, max_results=1)
        filter_ok = True
    except MlflowException:
        filter_ok = False
    if filter_ok:
        return OcrexpError(f"--sort {order_by[0]!r} is not a valid MLflow order ({_first_line(exc)}); write "
                           "KEY [ASC|DESC], e.g. --sort 'metrics.test_accuracy DESC'.")
    return OcrexpError(f"--filter {filter_string!r} is not valid MLflow search syntax ({_first_line(exc)}); "
                       "write e.g. --filter \"params.seed = '1' and metrics.test_accuracy > 0.99\".")


def _find_run(client, experiment_id: str, ref: str, uri: str):
    """The run with id ``ref``, or the one run of the experiment whose id starts with ``ref``."""
    from mlflow.exceptions import MlflowException

    ref = ref.strip().lower()
    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref)
        except MlflowException:
            pass
    elif re.fullmatch(r"[0-9a-f]+", ref):
        found = _mlflow_call(lambda: client.search_runs([experiment_id], f"attributes.run_id LIKE '{ref}%'",
                                                        max_results=2), uri)
        if len(found) == 2:
            raise OcrexpError(f"run id {ref!r} is the start of several runs' ids; give more of it.")
        if found:
            return found[0]
    raise OcrexpError(f"no run with id {ref!r} in {uri}; copy a run id from `ocrexp runs` "
                      "(an id prefix is looked up in --experiment only).")


def _mlflow_call(call, uri: str):
    from mlflow.exceptions import MlflowException

    try:
        return call()
    except MlflowException as exc:
        raise OcrexpError(f"cannot read runs from {uri} ({_first_line(exc)}).") from None


def _order_by(sort: str | None, params: list[str]) -> list[str]:
    """MLflow ``order_by`` for ``--sort``, newest first among ties."""
    if not sort:
        return [NEWEST_FIRST]
    key, _, direction = sort.strip().rpartition(" ")
    if direction.upper() not in ("ASC", "DESC"):
        key, direction = sort.strip(), ""
    key = key.strip()
    if not ENTITY.match(key):  # a bare name
        if re.search(r"\s", key):
            raise OcrexpError(f"--sort {sort!r} is not KEY [ASC|DESC]; write e.g. --sort 'test_accuracy DESC'.")
        if key in ATTRIBUTES:
            key = f"attributes.{key}"
        else:
            key = f"{'params' if key in params else 'metrics'}.`{key}`"
    return [f"{key} {direction.upper()}".strip(), NEWEST_FIRST]


def _metric_sorted(clause: str, metrics: list[str]) -> tuple[str, bool] | None:
    """(metric, descending) when the sort clause orders by one of the shown metrics."""
    match = re.fullmatch(r"metrics?\.`?([^`]+?)`?(?: (ASC|DESC))?", clause, re.IGNORECASE)
    if match and match.group(1) in metrics:
        return match.group(1), (match.group(2) or "").upper() == "DESC"
    return None


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def _first_line(exc: Exception) -> str:
    return (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0].rstrip(".")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
