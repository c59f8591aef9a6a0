"""The built wheel works on its own: configs, experiments and Hydra plugins travel inside it, and
the dependencies it declares are enough to train.

The checkout's editable install hides packaging mistakes (``conf/`` is found next to ``src/``),
so this builds the real wheel with pip and runs it from a directory outside the checkout: once in
a venv that borrows this environment's packages (fast checks), and once installed by pip with its
declared dependencies into a fresh venv (at the versions tested here), training ``debug=fast``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, timeout=600)
    (built,) = out.glob("ocrexp-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A venv with the wheel installed and this environment's site-packages (the dependencies)
    on its path, without the editable install's finder (a plain path entry runs no .pth files)."""
    env = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    return python


def test_wheel_carries_configs_and_experiments(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for member in ("ocrexp/conf/config.yaml", "ocrexp/conf/model/cnn_bn.yaml", "ocrexp/experiments/mnist_best.yaml",
                   "hydra_plugins/ocrexp_optuna_sweeper/sweeper.py", "hydra_plugins/ocrexp_experiments/__init__.py"):
        assert member in names, member


def _clean_env() -> dict[str, str]:
    """The environment a user's shell would have: no store or project root left by other tests."""
    return {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OCREXP_ROOT")}


def _run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), *args], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=120)


def test_installed_wheel_composes_experiments_outside_the_checkout(installed, tmp_path):
    where = _run(installed, tmp_path, "-c", "import ocrexp.paths as p; print(p.PACKAGE_DIR, p.conf_dir())")
    package_dir, conf = where.stdout.split()
    assert str(REPO) not in package_dir and conf == f"{package_dir}/conf", where.stdout + where.stderr

    job = _run(installed, tmp_path, "-m", "ocrexp.train", "experiment=mnist_best", "--cfg", "job", "--resolve")
    assert job.returncode == 0, job.stderr
    assert "cnn_bn" in job.stdout and "- 16" in job.stdout  # the experiment's model and its filters
    assert f"root_dir: {tmp_path}" in job.stdout  # outside a checkout the project root is the cwd


def test_installed_wheel_registers_the_optuna_sweeper(installed, tmp_path):
    info = _run(installed, tmp_path, "-m", "ocrexp.train", "--info", "plugins")
    assert info.returncode == 0, info.stderr
    assert "OcrexpOptunaSweeper" in info.stdout and "ExperimentsSearchPath" in info.stdout


def _versions_here(path: Path) -> Path:
    """A constraints file holding this environment's versions: pip still installs only what the wheel
    declares, but resolves to releases already tested rather than whatever the registry
    published minutes ago, so a new upstream release cannot fail this test."""
    pins = sorted({f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                   if d.metadata["Name"] and d.metadata["Name"].lower() != "ocrexp"})
    path.write_text("\n".join(pins) + "\n")
    return path


@pytest.fixture(scope="module")
def installed_with_dependencies(wheel, tmp_path_factory) -> Iterator[Path]:
    """A fresh venv where pip installed the wheel and whatever it declares, nothing else; removed
    afterwards, since pytest keeps its last three temporary trees and each such venv is ~3 GB."""
    env = tmp_path_factory.mktemp("venv_deps")
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(_versions_here(env / "constraints.txt")),
                          str(wheel)], timeout=1200, capture_output=True, text=True)
    if pip.returncode != 0:
        shutil.rmtree(env)
        pytest.fail(f"pip could not install the wheel with its dependencies:\n{pip.stdout[-2000:]}{pip.stderr[-4000:]}")
    yield python
    shutil.rmtree(env)


def test_wheel_installed_with_its_declared_dependencies_trains_outside_the_checkout(installed_with_dependencies,
                                                                                     tmp_path, mnist):
    train = subprocess.run([str(installed_with_dependencies.parent / "ocrexp-train"), "debug=fast",
                            "tracking.log_model=false"], cwd=tmp_path, env=_clean_env(), capture_output=True,
                           text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-3000:]
    assert "test_accuracy=" in train.stdout
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()  # outside a checkout the project root is the cwd
