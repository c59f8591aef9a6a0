"""``ocrexp ui``: the MLflow UI on this project's store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ocrexp.commands._server import browser_url, check_port_free, log_path, serve
from ocrexp.console import verbose
from ocrexp.errors import OcrexpError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ui", help="browse runs in the MLflow UI",
                                   description="Start the MLflow UI on this project's tracking store and print "
                                               "the link to the experiment's runs. The server's output goes to "
                                               "logs/ui.log (OCREXP_VERBOSE=1: to the terminal). Ctrl-C or "
                                               "SIGTERM stops it.")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: only this machine can connect)")
    parser.add_argument("--tracking-uri", default=None, help="store to browse (default: the project's)")
    parser.add_argument("--experiment", default="ocrexp",
                        help="experiment whose runs page is linked; created if missing (default ocrexp)")
    parser.add_argument("--workers", type=int, default=1,
                        help="web worker processes, each a few hundred MB (default 1)")
    parser.set_defaults(run=run)


def command(uri: str, host: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line serving ``uri``."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port),
           "--workers", str(workers)]
    if uri.startswith("sqlite:///"):  # artifacts uploaded through the UI/server stay beside the DB
        cmd += ["--artifacts-destination", str(Path(uri[len("sqlite:///"):]).parent / "artifacts")]
    return cmd


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise OcrexpError(f"--workers must be at least 1 (got {args.workers})")
    check_port_free(args.host, args.port)  # before the slow MLflow import, and instead of a server traceback
    from ocrexp.tracking.refs import check_store
    from ocrexp.tracking.store import tracking_uri

    uri = args.tracking_uri or tracking_uri()
    # A missing SQLite file is a fresh project's store, which ensure_store creates; any other file must
    # already be MLflow's, or MLflow would write its tables into it.
    if not uri.startswith("sqlite:///") or Path(uri[len("sqlite:///"):]).exists():
        check_store(uri)

    import mlflow

    from ocrexp.tracking import liveness
    from ocrexp.tracking.store import ensure_store, get_experiment_id, ui_link

    ensure_store(uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = get_experiment_id(client, args.experiment)
    liveness.close_dead_runs(client, [experiment_id])  # so that no dead run shows as RUNNING
    link = ui_link(uri, experiment_id, base=browser_url(args.host, args.port))
    print(f"MLflow UI for {uri}: {link} (Ctrl-C to stop)", flush=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    # With a database store MLflow also starts GenAI job workers (a runner and seven consumers, about
    # 1 GB); nothing in this project submits jobs. Exporting the variable as true brings them back.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return serve(command(uri, args.host, args.port, args.workers), env=env,
                 log=None if verbose() else log_path("ui"), what="the MLflow server")
