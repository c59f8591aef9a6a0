"""``ocrexp reproduce RUN``: run a logged config again and compare its metrics."""

from __future__ import annotations

import argparse
import math

COMPARED = ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "accuracy", "loss")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce", help="rerun a logged run from its config and compare metrics",
        description="Run the config logged with RUN again as a new MLflow run (tagged with the "
                    "source run id) and print logged and new metrics side by side.")
    parser.add_argument("run_id", metavar="RUN", help="the run to reproduce: its id, a unique id prefix "
                        "(4+ characters, as `ocrexp runs` shows) or a unique run name")
    parser.add_argument("--tracking-uri", default=None, help="store holding the run (default: the project's)")
    parser.set_defaults(run=run)


def load_run_config(run_id: str, uri: str):
    """The composed config logged with ``run_id``, under the schema, with today's paths."""
    import mlflow
    from omegaconf import OmegaConf

    from ocrexp.config import OcrexpConf, register
    from ocrexp.errors import OcrexpError
    from ocrexp.renames import upgrade

    register()  # the path resolvers the logged config refers to
    try:
        text = mlflow.MlflowClient(uri).download_artifacts(run_id, "config.yaml")
    except Exception as exc:
        raise OcrexpError(f"run {run_id} in {uri} has no config.yaml artifact to reproduce ({exc}).") from None
    logged = upgrade(OmegaConf.load(text))  # runs logged under names that changed since
    logged.pop("paths", None)  # the data cache and store are this machine's, not the original's
    cfg = OmegaConf.merge(OmegaConf.structured(OcrexpConf), logged)
    if cfg.tracking.uri is None:
        cfg.tracking.uri = uri
    return cfg


def run(args: argparse.Namespace) -> int:
    import mlflow

    from ocrexp.tracking.refs import resolve_run
    from ocrexp.tracking.store import tracking_uri
    from ocrexp.train import run_experiment

    uri = args.tracking_uri or tracking_uri()
    source = resolve_run(args.run_id, uri)
    run_id = source.info.run_id
    cfg = load_run_config(run_id, uri)
    result = run_experiment(cfg, tags={"ocrexp.reproduced_from": run_id,
                                       "mlflow.note.content": f"Reproduction of run [{run_id}](#/runs/{run_id})."})
    new = mlflow.MlflowClient(uri).get_run(result.run_id).data.metrics
    old = source.data.metrics
    print(f"\n{'metric':<16}{'logged':>14}{'reproduced':>14}{'diff':>12}")
    same = True
    for name in COMPARED:
        if name in old and name in new:
            diff = new[name] - old[name]
            same &= diff == 0 or (math.isnan(old[name]) and math.isnan(new[name]))
            print(f"{name:<16}{old[name]:>14.6f}{new[name]:>14.6f}{diff:>12.2e}")
    print(f"\nsource run {run_id} -> new run {result.run_id}: "
          + ("identical metrics" if same else "metrics differ (bitwise equality needs trainer.deterministic=true on CPU)"))
    return 0
