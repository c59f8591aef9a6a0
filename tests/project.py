"""A throw-away ocrexp project (its own root and MLflow store) and the installed commands, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts (ocrexp-train, ocrexp, ...)


@dataclass(frozen=True)
class Project:
    """A throw-away project root with its own MLflow store."""

    root: Path

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlruns' / 'mlflow.db'}"

    def env(self, **extra: str) -> dict[str, str]:
        # mlflow.set_tracking_uri() in this process exports MLFLOW_TRACKING_URI; the project's own
        # store must win in subprocesses.
        base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        return {**base, "OCREXP_ROOT": str(self.root), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}

    def run(self, *cmd: str, check: bool = True, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        """Run an installed console script (``ocrexp-train``, ``ocrexp`` …) in this project."""
        proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def client(self):
        import mlflow

        return mlflow.MlflowClient(self.tracking_uri)

    def experiment(self, name: str = "ocrexp"):
        """``(client, experiment id)``: the store migrated and experiment ``name`` created as ocrexp does,
        its artifacts inside the throw-away root."""
        import pytest

        from ocrexp.tracking.store import ensure_store, get_experiment_id

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OCREXP_ROOT", str(self.root))
            ensure_store(self.tracking_uri)
            client = self.client()
            return client, get_experiment_id(client, name)

    def runs(self, experiment: str = "ocrexp"):
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
