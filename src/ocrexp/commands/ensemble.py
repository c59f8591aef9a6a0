"""``ocrexp ensemble``: combine logged models into one, test it, and record it as a run of its own.

    ocrexp ensemble 1a2b3c4d cnn-seed2 5e6f7a8b              # these runs' models, soft vote
    ocrexp ensemble --sweep cnn_optuna-1a2b3c4d --top 5      # a sweep's 5 best complete trials
    ocrexp ensemble --filter "params.model.name = 'cnn'" --top 3 --vote majority
    ocrexp ensemble --top 3 --register-as digits             # the 3 best runs by test_accuracy

Members are named as every command names runs (id, unique id prefix, unique run name), chosen from
one sweep's COMPLETE trials (ranked by the study's value, as ``ocrexp runs --sweep`` lists them, or
by ``--metric``), or from the finished runs of an experiment that match ``--filter`` and logged a
model of their own (ranked by ``--metric``, test_accuracy unless given; earlier ensembles are left
out unless named). ``--vote soft`` averages the members' probabilities; ``--vote majority`` counts
one vote per member, the soft average breaking ties (``ocrexp.models.ensemble``).

The members must be trained on the same dataset (the same ``ocrexp.dataset.checksum`` and pixel
scale) and agree on input shape and classes. The ensemble is tested on the first member's test
split and recorded as a new run tagged ``ocrexp.ensemble_of`` (the members' run ids), with the test
metrics, plots and one model, as a training run has them.

Why one model, and this form: the recorded model is a plain Keras functional model of built-in
layers that calls each member as a nested model. It is logged, loaded (``safe_mode``), served,
registered (``--register-as``), read with (``ocrexp predict``), evaluated (``ocrexp-eval``) and
trained further (``model.init_from``) exactly like a single model, with nothing to install where it
is served. A pyfunc wrapper around several models would not load in Keras; a custom layer would need
ocrexp importable wherever it is served.
"""

from __future__ import annotations

import argparse
import time

from ocrexp.commands import _complete
from ocrexp.commands._args import at_least
from ocrexp.errors import OcrexpError
from ocrexp.models.ensemble import VOTES

ENSEMBLE_TAG = "ocrexp.ensemble_of"  # the members' run ids, comma-separated, in order
VOTE_TAG = "ocrexp.ensemble.vote"
CHECKSUM_TAG = "ocrexp.dataset.checksum"
MODEL_TAG = "ocrexp.model_uri"  # runs:/<id>/model on a run that logged a model of its own
TEST_METRIC, SWEEP_METRIC = "test_accuracy", "val_accuracy"
NEWEST_FIRST = ["attributes.start_time DESC"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp ensemble``."""
    parser = subparsers.add_parser(
        "ensemble", help="combine logged models into one, test it and record it as a run",
        description="Combine the models of several runs into one model (the average of their probabilities, "
                    "or a majority vote), test it on their test set and record it as a new MLflow run that "
                    "predict, ocrexp-eval, serving and registration take like any model.",
        epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="the runs whose models to combine: ids, unique id prefixes (4+) or unique run names"
                        ).completer = _complete.complete_run  # type: ignore[attr-defined]
    parser.add_argument("--sweep", metavar="REF", default=None,
                        help="take the --top K best COMPLETE trials of this sweep (the study's name or its parent "
                             "run)").completer = _complete.complete_run  # type: ignore[attr-defined]
    parser.add_argument("--filter", metavar="EXPR", default=None,
                        help="take the --top K of the finished runs with a model that match this MLflow search "
                             "expression, as `ocrexp runs --filter` takes it")
    parser.add_argument("--top", type=at_least(2), metavar="K", default=None,
                        help="how many models --sweep or --filter take (alone: the experiment's K best runs)")
    parser.add_argument("--metric", metavar="NAME", default=None,
                        help=f"what ranks them, largest first (smallest for a *loss): default {TEST_METRIC}, and "
                             f"for --sweep the study's value ({SWEEP_METRIC} when it has several)")
    parser.add_argument("--vote", choices=VOTES, default="soft",
                        help="soft: average the probabilities (default); majority: one vote per model, ties "
                             "going to the surest")
    parser.add_argument("--experiment", metavar="NAME", default=None,
                        help="where --filter looks and the new run goes (default: tracking.experiment_name, "
                             "ocrexp; the new run: the first member's experiment)")
    parser.add_argument("--run-name", metavar="NAME", default=None,
                        help="the new run's name (default ensemble-<vote>-<K>)")
    parser.add_argument("--register-as", metavar="NAME", default=None,
                        help="register the ensemble's model as NAME (and its number reader as NAME-reader), "
                             "as tracking.register_as does")
    parser.add_argument("--batch-size", type=at_least(1), default=256, metavar="N",
                        help="test images per model call (default 256)")
    parser.add_argument("--tracking-uri", default=None,
                        help="store holding the runs, which records the new one (default: $MLFLOW_TRACKING_URI "
                             "or the project's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Choose the members, combine them, test the ensemble, record it and print what it scored."""
    from ocrexp.commands.reproduce import load_run_config
    from ocrexp.models.ensemble import build_ensemble, check_members
    from ocrexp.models.io import load_model
    from ocrexp.tracking import refs
    from ocrexp.tracking.store import tracking_uri

    _check_combination(args)
    uri = args.tracking_uri or tracking_uri()
    client = refs.store_client(uri)
    members = choose_members(client, args, uri)
    _check_same_training_data(members)
    cfg = load_run_config(members[0].info.run_id, uri)
    models = [load_model(f"runs:/{m.info.run_id}/model", uri) for m in members]
    check_members(models, [_short(m) for m in members])
    ensemble = build_ensemble(models, args.vote)
    vote = "soft vote (averaged probabilities)" if args.vote == "soft" else "majority vote"
    print(f"{len(members)} models, {vote}:", flush=True)
    for m in members:
        accuracy = m.data.metrics.get(TEST_METRIC)
        print(f"  {m.info.run_id[:8]}  {m.info.run_name:<24}  {TEST_METRIC}="
              + (f"{accuracy:.4f}" if accuracy is not None else "-"), flush=True)
    experiment = args.experiment or client.get_experiment(members[0].info.experiment_id).name
    report, run_id, link, seconds_per_1000 = test_and_record(cfg, ensemble, members, args, uri, experiment)
    print(f"ensemble: test_accuracy={report['test_accuracy']:.4f} test_loss={report['test_loss']:.4f} on "
          f"{len(report['y_true']):,} test images, predict {seconds_per_1000:.3f} s per 1,000 images")
    print(f"MLflow run {run_id}: {link} (ocrexp ui)")
    return 0


def _check_combination(args: argparse.Namespace) -> None:
    sources = [name for name, given in (("RUN", args.runs), ("--sweep", args.sweep),
                                        ("--filter", args.filter is not None)) if given]
    if len(sources) > 1:
        raise OcrexpError(f"{' and '.join(sources)} choose the models in different ways; give one of them.")
    if args.runs:
        if args.top is not None or args.metric:
            raise OcrexpError("--top and --metric choose among --sweep's trials or --filter's runs; with named RUNs "
                              "leave them out.")
        if len(args.runs) < 2:
            raise OcrexpError(f"an ensemble needs at least two models; name more runs than {args.runs[0]!r}.")
    elif args.top is None:
        raise OcrexpError("name the runs to combine (RUN RUN ...), or say how many to take with --top K "
                          "(with --sweep REF or --filter EXPR).")


# -- choosing the members ------------------------------------------------------------------------
def choose_members(client, args: argparse.Namespace, uri: str) -> list:
    """The runs whose models the ensemble combines, in order: the named ones, or the ``--top`` best
    of a sweep's COMPLETE trials or of the runs ``--filter`` matches."""
    from ocrexp.tracking import refs

    if args.runs:
        members = [refs.find_run(client, ref, uri) for ref in args.runs]
        named: dict[str, str] = {}
        for ref, member in zip(args.runs, members):
            if member.info.run_id in named:
                raise OcrexpError(f"{named[member.info.run_id]!r} and {ref!r} both name run {_short(member)}; "
                                  "name each model once.")
            named[member.info.run_id] = ref
        return members
    if args.sweep:
        return sweep_members(client, args.sweep, uri, args.top, args.metric)
    return filtered_members(client, args.filter or "", uri, args.top, args.metric or TEST_METRIC, args.experiment)


def sweep_members(client, ref: str, uri: str, top: int, metric: str | None) -> list:
    """The ``top`` best COMPLETE trials of the sweep ``ref`` names: by the study's value as ``ocrexp runs
    --sweep`` ranks them, or by ``metric`` (also when the study has several objectives and no single
    value: then ``val_accuracy``)."""
    from ocrexp.commands.runs import sweep_listing

    shown = [metric or SWEEP_METRIC]
    table, _ = sweep_listing(client, ref, uri, shown, [])
    complete = [row for row in table.rows if row["state"] == "COMPLETE"]
    if metric is None and any(row["value"] is not None for row in complete):
        ranked = complete  # the listing's order: best value first
    else:
        ranked = _ranked(complete, lambda row: row[shown[0]], shown[0])
    if len(ranked) < top:
        raise OcrexpError(f"sweep {ref!r} has {len(ranked)} COMPLETE trial{'s' if len(ranked) != 1 else ''}"
                          + (f" with metric {shown[0]!r}" if len(ranked) < len(complete) else "")
                          + f"; give --top {len(ranked)} or fewer.")
    return [client.get_run(row["run_id"]) for row in ranked[:top]]


def filtered_members(client, filter_string: str, uri: str, top: int, metric: str, experiment: str | None) -> list:
    """The ``top`` best (by ``metric``) finished runs of ``experiment`` that match ``filter_string`` and
    logged a model of their own; ensembles are left out (name one to nest it)."""
    from ocrexp.commands.runs import experiment_id_of, search
    from ocrexp.config import TrackingConf

    experiment = experiment or TrackingConf.experiment_name
    runs = search(client, experiment_id_of(client, experiment, uri), filter_string, NEWEST_FIRST, None, uri,
                   scope="attributes.status = 'FINISHED'")
    models = [r for r in runs if r.data.tags.get(MODEL_TAG) == f"runs:/{r.info.run_id}/model"
              and ENSEMBLE_TAG not in r.data.tags]
    ranked = _ranked(models, lambda r: r.data.metrics.get(metric), metric)
    if len(ranked) < top:
        where = f"experiment {experiment!r}" + (f" matching --filter {filter_string!r}" if filter_string else "")
        raise OcrexpError(f"{len(ranked)} finished run{'s' if len(ranked) != 1 else ''} of {where} logged a model "
                          f"and metric {metric!r}; give --top {len(ranked)} or fewer, or another --filter.")
    return ranked[:top]


def _ranked(items: list, value, metric: str) -> list:
    """``items`` that have a ``value``, best first: largest first, smallest for a loss (stable)."""
    scored = [item for item in items if value(item) is not None]
    return sorted(scored, key=value, reverse=not metric.endswith("loss"))


def _short(run) -> str:
    return f"{run.info.run_id[:8]} ({run.info.run_name})"


def _check_same_training_data(members: list) -> None:
    """The members were trained on the same images (dataset checksum) scaled the same way."""
    for what, of in (("dataset (checksum)", lambda r: r.data.tags.get(CHECKSUM_TAG)),
                     ("pixel scale (dataset.scale)", lambda r: r.data.params.get("dataset.scale"))):
        first = of(members[0])
        other = next((m for m in members[1:] if of(m) != first), None)
        if other is not None:
            raise OcrexpError(f"the models were trained on different data: run {_short(members[0])} has {what} "
                              f"{first}, run {_short(other)} has {of(other)}; combine models of one dataset.")


# -- testing and recording -----------------------------------------------------------------------
def test_and_record(cfg, ensemble, members: list, args: argparse.Namespace, uri: str, experiment: str):
    """Test ``ensemble`` on the first member's test split and record it as a new run in ``experiment``;
    returns the test report, the run's id and link, and the seconds it took per 1,000 images."""
    from omegaconf import OmegaConf

    from ocrexp import config
    from ocrexp.data.pipeline import scale_images
    from ocrexp.report import log_report, test_report
    from ocrexp.tracking import RunTracker
    from ocrexp.tracking.run import NOTE_TAG

    data = config.instantiate(cfg.dataset.source)
    if data.checksum != members[0].data.tags.get(CHECKSUM_TAG):
        raise OcrexpError(f"dataset {data.name} here has checksum {data.checksum}, but the models were trained on "
                          f"{members[0].data.tags.get(CHECKSUM_TAG)}; fetch the dataset they were trained on.")
    n = min(cfg.dataset.limit_test or len(data.x_test), len(data.x_test))
    images, labels = data.x_test[:n], data.y_test[:n]
    x = scale_images(images, cfg.dataset.scale)
    ids = [m.info.run_id for m in members]
    record = OmegaConf.create(OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["paths", "dataset", "tracking"])))
    record.tracking.update(uri=uri, experiment_name=experiment, enabled=True, log_model=True, log_plots=True,
                           register_as=args.register_as)
    record.ensemble = {"members": ids, "vote": args.vote, "batch_size": args.batch_size}
    again = " ".join(["ocrexp", "ensemble", *ids, "--vote", args.vote])
    links = ", ".join(f"[{i[:8]}](#/runs/{i})" for i in ids)
    tags = {"mlflow.source.name": "ocrexp ensemble", ENSEMBLE_TAG: ",".join(ids), VOTE_TAG: args.vote,
            "ocrexp.dataset": data.name, CHECKSUM_TAG: data.checksum,
            NOTE_TAG: f"Ensemble ({args.vote} vote) of the models of runs {links}. Rebuild: `{again}`."}
    name = args.run_name or f"ensemble-{args.vote}-{len(members)}"
    with RunTracker(record, name, tags) as tracker:
        tracker.log_evaluation_dataset(data, labels)
        ensemble(x[:1], training=False)  # the first call builds the graph: not part of the timing
        started = time.perf_counter()
        report = test_report(ensemble, x, labels, args.batch_size)
        seconds_per_1000 = (time.perf_counter() - started) / max(n, 1) * 1000
        log_report(tracker, report, images, data.class_names, True)
        tracker.log_metrics({"params": ensemble.count_params(), "members": len(members),
                             "predict_s_per_1000": seconds_per_1000})
        tracker.log_model(ensemble, x[:4], report["outputs"][:4], class_names=list(data.class_names),
                          pixel_scale=cfg.dataset.scale)
    return report, tracker.run_id, tracker.link, seconds_per_1000
