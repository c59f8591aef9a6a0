"""A throw-away ocrexp project for benchmarks that run the real commands: its own MLflow store and
outputs, the shared MNIST cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def new_project(prefix: str) -> tuple[Path, dict[str, str]]:
    """A fresh throw-away project: (root, environment for commands run in it)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    env = {**os.environ, "OCREXP_ROOT": str(root),
           "OCREXP_DATA_DIR": os.environ.get("OCREXP_DATA_DIR", str(REPO / "data"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    return root, env
