"""``ocrexp runs``: compare MLflow runs from the shell.

    ocrexp runs                                            # the newest 20 runs of experiment ocrexp
    ocrexp runs --filter "params.model.name = 'cnn'" --sort "test_accuracy DESC" --params seed
    ocrexp runs --group-by run_name --metrics test_accuracy    # mean and std over seeds
    ocrexp runs --diff 1a2b3c4d cnn-baseline               # the params and metrics that differ
    ocrexp runs --sweep cnn_optuna-1a2b3c4d                # one sweep's trials, best first
    ocrexp runs --json | jq .                              # the table's columns, for machines

``state`` is a trial's state (COMPLETE, PRUNED, FAIL, KILLED, RUNNING); a study's parent run shows
its best value and trial counts in the ``sweep`` column, and each trial its parent's id. A run is
named by its id, a unique id prefix (4+ characters) or a unique run name; a sweep also by its study.
"""

from __future__ import annotations

import argparse
import re

from ocrexp.commands._args import at_least
from ocrexp.commands._table import (ENTITY, Table, _write_csv, _write_json, diff_table, group_table, is_study, is_trial,
                                    render, render_diff, run_state, run_table, sweep_summary, trial_table)
from ocrexp.errors import OcrexpError
from ocrexp.sweep_protocol import NUMBER_TAG, PARENT_TAG, ROLE_TAG, STUDY_ROLE, STUDY_TAG

DEFAULT_METRICS = "test_accuracy,val_accuracy,train_time_s"
DEFAULT_LIMIT = 20
NEWEST_FIRST = "attributes.start_time DESC"
#: Run attributes MLflow can sort and filter on; a bare ``--sort`` name among them is one of these.
ATTRIBUTES = frozenset({"run_id", "run_name", "status", "start_time", "end_time", "user_id", "artifact_uri"})
PAGE = 1000  # runs per search request
# What a study's parent run records, as the sweeper (hydra_plugins.ocrexp_optuna_sweeper) logs it:
# the directions and metric names (comma-separated params), the search space (one param per swept
# key), and each COMPLETE trial's value (a metric whose step is the trial number).
DIRECTIONS_PARAM, METRIC_PARAM, SPACE_PARAM = "optuna.directions", "optuna.metric", "space."
TRIAL_VALUE = "trial_value"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp runs``."""
    parser = subparsers.add_parser(
        "runs", help="list, group and compare MLflow runs and sweeps",
        description="A table of MLflow runs (newest first), grouped with mean and std,\n"
                    "two runs compared key by key, or one sweep's trials best first.",
        epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", metavar="NAME", default=None,
                        help="experiment to list (default: tracking.experiment_name, ocrexp); --diff and "
                             "--sweep find their runs in any experiment")
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
    parser.add_argument("--params", metavar="A,B", default="",
                        help="param columns, e.g. seed,optimizer.lr (default with --sweep: the swept params)")
    parser.add_argument("--limit", type=at_least(0), default=None, metavar="N",
                        help=f"rows to show, runs or groups (default {DEFAULT_LIMIT}, every trial with --sweep; "
                             "0: all)")
    parser.add_argument("--group-by", metavar="KEY", default=None,
                        help="run_name, state, a param or a tag: one row per value with n, <metric>_mean and "
                             "<metric>_std (sample std) over every matching run")
    parser.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"), default=None,
                        help="the params and metrics that differ between two runs (ids, unique id prefixes "
                             "or unique run names, in any experiment)")
    parser.add_argument("--sweep", metavar="REF", default=None,
                        help="one sweep's trials, best first, with each one's value, the epoch a pruned one "
                             "stopped at and the best marked; REF: the study's name or its parent run")
    machine = parser.add_mutually_exclusive_group()
    machine.add_argument("--csv", action="store_true",
                         help="CSV with the table's columns and MLflow's status (full ids and values)")
    machine.add_argument("--json", action="store_true",
                         help="a JSON array of rows with the table's columns and MLflow's status")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the table, the groups, the diff or the sweep the arguments ask for."""
    from ocrexp.config import TrackingConf
    from ocrexp.tracking import refs
    from ocrexp.tracking.store import tracking_uri

    _check_combination(args)
    uri = args.tracking_uri or tracking_uri()
    client = refs.store_client(uri)
    metrics, params = _names(args.metrics), _names(args.params)
    if args.sweep:
        table, text = sweep_listing(client, args.sweep, uri, metrics, params, args.filter, args.limit)
    elif args.diff:
        a, b = _closing_dead(client, [refs.find_run(client, ref, uri) for ref in args.diff])
        table = diff_table(a, b)
        text = render_diff(table, a, b)
    else:
        from ocrexp.tracking import liveness

        experiment = args.experiment or TrackingConf.experiment_name
        experiment_id = experiment_id_of(client, experiment, uri)
        liveness.close_dead_runs(client, [experiment_id])  # so that no dead run shows as RUNNING
        order = _order_by(args.sort, params)
        limit = DEFAULT_LIMIT if args.limit is None else args.limit
        # Groups need all their runs for honest statistics; --limit then counts groups.
        runs = search(client, experiment_id, args.filter, order, None if args.group_by or limit == 0 else limit, uri)
        if args.group_by:
            table = group_table(runs, args.group_by, metrics, params, _metric_sorted(order[0], metrics))
            table.rows = table.rows[:limit or None]
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


def _check_combination(args: argparse.Namespace) -> None:
    modes = [name for name, given in (("--diff", args.diff), ("--group-by", args.group_by), ("--sweep", args.sweep))
             if given]
    if len(modes) > 1:
        raise OcrexpError(f"{' and '.join(modes)} do different things; give one of them.")
    if args.sweep and args.sort:
        raise OcrexpError("--sweep lists the trials best first; leave out --sort.")


# -- one sweep -----------------------------------------------------------------------------------
def sweep_listing(client, ref: str, uri: str, metrics: list[str], params: list[str], filter_string: str = "",
                  limit: int | None = None) -> tuple[Table, str]:
    """The trials of the sweep ``ref`` names, best first, and the text that prints them under a line
    about the study; ``params`` default to the swept ones."""
    (parent,) = _closing_dead(client, [find_sweep(client, ref, uri)])
    logged = parent.data.params
    directions = [d for d in logged.get(DIRECTIONS_PARAM, "").split(",") if d]
    objectives = [m for m in logged.get(METRIC_PARAM, "").split(",") if m]
    maximize = directions[0] == "maximize" if len(directions) == 1 else None
    params = params or sorted(k[len(SPACE_PARAM):] for k in logged if k.startswith(SPACE_PARAM))
    trials = search(client, parent.info.experiment_id, filter_string, ["attributes.start_time ASC"], None, uri,
                     scope=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    history = _mlflow_call(lambda: client.get_metric_history(parent.info.run_id, TRIAL_VALUE), uri)
    values = {m.step: m.value for m in history}
    pruned_at = {r.info.run_id: _last_epoch(client, r.info.run_id, objectives[:1], uri)
                 for r in trials if run_state(r) == "PRUNED"}
    table = trial_table(trials, values, maximize, pruned_at, metrics, params)
    table.rows = table.rows[:limit or None]
    study = parent.data.tags.get(STUDY_TAG, parent.info.run_name)
    heading = (f"study {study} (run {parent.info.run_id[:8]}, {run_state(parent)}): "
               f"{'/'.join(directions) or 'optimize'} {','.join(objectives) or 'value'}; "
               f"{sweep_summary(parent.data.metrics)}")
    if not table.rows:
        return table, f"{heading}\nno trial runs" + (" match --filter" if filter_string else " yet")
    return table, f"{heading}\n\n{render(table)}"


def find_sweep(client, ref: str, uri: str):
    """The parent run of the sweep that ``ref`` names: its study's name, or the run itself as any
    run is named (``ocrexp.tracking.refs``)."""
    from ocrexp.tracking import refs

    by_study = []
    if "'" not in ref:
        experiment_ids = _mlflow_call(lambda: [e.experiment_id for e in client.search_experiments()], uri)
        by_study = _mlflow_call(lambda: client.search_runs(
            experiment_ids, f"tags.`{ROLE_TAG}` = '{STUDY_ROLE}' AND tags.`{STUDY_TAG}` = '{ref.strip()}'",
            max_results=refs.SHOWN + 1), uri) if experiment_ids else []
    if len(by_study) > 1:
        listed = "; ".join(refs.describe(r) for r in by_study[:refs.SHOWN])
        raise OcrexpError(f"study {ref!r} has parent runs in several experiments: {listed}; give the run's id.")
    if by_study:
        return by_study[0]
    try:
        run = refs.find_run(client, ref, uri)
    except refs.RunNotFound as exc:
        text = str(exc)
        raise OcrexpError(f"--sweep {ref!r}: no study has that name, and {text[0].lower()}{text[1:]}") from None
    if is_study(run):
        return run
    if is_trial(run):
        parent = run.data.tags.get(PARENT_TAG, "")
        raise OcrexpError(f"run {run.info.run_id[:8]} ({run.info.run_name}) is trial {run.data.tags[NUMBER_TAG]} of "
                          f"study {run.data.tags.get(STUDY_TAG)!r}: give --sweep {parent[:8] or 'the study name'}.")
    raise OcrexpError(f"run {run.info.run_id[:8]} ({run.info.run_name}) is not a sweep's parent run; `ocrexp runs` "
                      "shows each parent run with its best value in the sweep column.")


def _last_epoch(client, run_id: str, objectives: list[str], uri: str) -> int | None:
    """The last epoch a run logged: the highest step of its objective's history, else of its loss'."""
    for name in [*objectives, "loss"]:
        steps = [m.step for m in _mlflow_call(lambda: client.get_metric_history(run_id, name), uri)]
        if steps:
            return max(steps)
    return None


def _closing_dead(client, runs: list) -> list:
    """``runs`` as they are once the dead runs of their experiments are closed (so that no dead run
    shows as RUNNING)."""
    from ocrexp.tracking import liveness

    closed = set(liveness.close_dead_runs(client, sorted({r.info.experiment_id for r in runs})))
    return [client.get_run(r.info.run_id) if r.info.run_id in closed else r for r in runs]


# -- finding runs ------------------------------------------------------------------------------
def experiment_id_of(client, name: str, uri: str) -> str:
    experiment = _mlflow_call(lambda: client.get_experiment_by_name(name), uri)
    if experiment is None:
        names = sorted(e.name for e in _mlflow_call(lambda: client.search_experiments(), uri))
        raise OcrexpError(f"{uri} has no experiment named {name!r}; choose one of "
                          f"{', '.join(names) or '(none yet)'} with --experiment NAME.")
    return experiment.experiment_id


def search(client, experiment_id: str, filter_string: str, order_by: list[str], limit: int | None, uri: str,
            scope: str = "") -> list:
    """Runs matching the filter (and ``scope``, a clause of ours) in order, up to ``limit`` (None: all),
    page by page."""
    from mlflow.exceptions import MlflowException

    query = " and ".join(c for c in (scope, filter_string) if c)
    runs: list = []
    token = None
    while limit is None or len(runs) < limit:
        size = PAGE if limit is None else min(PAGE, limit - len(runs))
        try:
            page = client.search_runs([experiment_id], filter_string=query, order_by=order_by,
                                      max_results=size, page_token=token)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise OcrexpError(f"cannot read runs from {uri} ({_first_line(exc)}).") from None
            raise _bad_query(client, experiment_id, query, filter_string, order_by, exc) from None
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def _bad_query(client, experiment_id: str, query: str, filter_string: str, order_by: list[str], exc) -> OcrexpError:
    """Whether the --filter or the --sort was wrong, as one sentence."""
    from mlflow.exceptions import MlflowException

    try:
        client.search_runs([experiment_id], filter_string=query, max_results=1)
        filter_ok = True
    except MlflowException:
        filter_ok = False
    if filter_ok:
        return OcrexpError(f"--sort {order_by[0]!r} is not a valid MLflow order ({_first_line(exc)}); write "
                           "KEY [ASC|DESC], e.g. --sort 'metrics.test_accuracy DESC'.")
    return OcrexpError(f"--filter {filter_string!r} is not valid MLflow search syntax ({_first_line(exc)}); "
                       "write e.g. --filter \"params.seed = '1' and metrics.test_accuracy > 0.99\".")


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
