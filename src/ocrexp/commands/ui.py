"""``ocrexp ui``: the MLflow UI on this project's store, bound to 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ui", help="browse runs in the MLflow UI",
                                   description="Start the MLflow UI on this project's tracking store.")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: only this machine can connect)")
    parser.add_argument("--tracking-uri", default=None, help="store to browse (default: the project's)")
    parser.set_defaults(run=run)


def command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line serving ``uri``."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    if uri.startswith("sqlite:///"):  # artifacts uploaded through the UI/server stay beside the DB
        cmd += ["--artifacts-destination", str(Path(uri[len("sqlite:///"):]).parent / "artifacts")]
    return cmd


def run(args: argparse.Namespace) -> int:
    from ocrexp.tracking.store import ensure_store, tracking_uri

    uri = args.tracking_uri or tracking_uri()
    ensure_store(uri)
    print(f"MLflow UI for {uri} at http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        return subprocess.call(command(uri, args.host, args.port), env=env)
    except KeyboardInterrupt:
        return 0
