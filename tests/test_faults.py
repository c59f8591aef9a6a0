"""Fault injection with real processes: a locked MLflow store, a read-only or full data cache.

Each case ends in a documented state (README "When things go wrong"): one sentence naming what was
wrong and what to do, no traceback, and nothing half-written. Kills and signals during training
are in ``test_resume.py`` and ``test_train_e2e.py``.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.project import BIN, Project

pytestmark = pytest.mark.slow
FAST = ("ocrexp-train", "debug=fast", "tracking.log_model=false", "tracking.log_plots=false")


def _locked_store(project: Project):
    """An exclusive transaction on the project's store, as another writer holds it."""
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)
    db = sqlite3.connect(project.tracking_uri.removeprefix("sqlite:///"), timeout=1, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    return db


def test_a_store_locked_for_a_few_seconds_is_waited_for(project):
    db = _locked_store(project)
    proc = subprocess.Popen([str(BIN / FAST[0]), *FAST[1:]], cwd=project.root, env=project.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)
    db.execute("ROLLBACK")
    db.close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    (run,) = project.runs()
    assert run.info.status == "FINISHED"


def test_a_store_locked_for_longer_than_ocrexp_waits_is_one_sentence_and_leaves_nothing(project):
    db = _locked_store(project)
    try:
        proc = project.run(*FAST, check=False, OCREXP_STORE_WAIT_S="2")
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: the MLflow store {project.root / 'mlruns' / 'mlflow.db'} stayed locked by another process for over "
        "2 s; run the same command again once it is free (training goes on from its last checkpoint).")
    assert not project.runs() and not list(project.root.glob("checkpoints/*"))
    assert project.run(*FAST).returncode == 0  # and the same command then works


def test_sigterm_while_waiting_for_a_locked_store_says_nothing_was_recorded(project):
    db = _locked_store(project)
    try:
        proc = subprocess.Popen([str(BIN / FAST[0]), *FAST[1:]], cwd=project.root, env=project.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        header = proc.stdout.readline()  # out once TensorFlow is imported: the SIGTERM handler is in place
        assert header.startswith("cnn"), header + proc.stderr.read()
        time.sleep(2)  # and now retrying the store
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert (proc.returncode, err.strip()) == (143, "terminated (SIGTERM) before an MLflow run began: nothing was "
                                                   "recorded")
    assert not project.runs() and not list(project.root.glob("checkpoints/*"))


@pytest.fixture(scope="module")
def world_readable(mnist):
    """A folder others may read, holding Keras' MNIST cache (what ocrexp converts into its own)."""
    base = Path(tempfile.mkdtemp(prefix="ocrexp-faults-"))
    keras_file = base / "keras" / "datasets" / "mnist.npz"
    keras_file.parent.mkdir(parents=True)
    np.savez(keras_file, x_train=mnist.x_train[..., 0], y_train=mnist.y_train.astype(np.uint8),
             x_test=mnist.x_test[..., 0], y_test=mnist.y_test.astype(np.uint8))
    for d in (base, *base.rglob("*")):
        d.chmod(0o755 if d.is_dir() else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _train_with_cache(base: Path, data_dir: Path, preexec=None) -> subprocess.CompletedProcess:
    root = Path(tempfile.mkdtemp(dir=base, prefix="project-"))
    root.chmod(0o777)
    env = {**Project(root).env(), "OCREXP_DATA_DIR": str(data_dir), "KERAS_HOME": str(base / "keras"),
           "HOME": str(root), "MPLCONFIGDIR": str(root / ".mpl")}
    return subprocess.run([str(BIN / FAST[0]), *FAST[1:], "tracking=none"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=preexec)


def _unprivileged():
    """Make file modes apply to root too (CI runs as root): the child loses the capabilities that
    override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as any unprivileged user lacks them."""
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # PR_CAPBSET_DROP = 24
            if libc.prctl(24, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "cannot drop CAP_DAC_OVERRIDE for the read-only test")


def _can_drop_capabilities() -> bool:
    """Whether this process may drop capabilities from its children's bounding set (CAP_SETPCAP)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << 8))
    return False


def test_a_read_only_data_cache_is_one_sentence_and_stays_empty(world_readable):
    if os.geteuid() == 0 and not _can_drop_capabilities():
        pytest.skip("root without CAP_SETPCAP: file modes cannot be made to apply to the child")
    data_dir = world_readable / "read-only-data"
    data_dir.mkdir()
    data_dir.chmod(0o555)
    proc = _train_with_cache(world_readable, data_dir, preexec=_unprivileged)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"error: Cannot write the MNIST cache {data_dir / 'mnist.npz'} (")
    assert "\n" not in proc.stderr.strip() and "Traceback" not in proc.stderr
    assert list(data_dir.iterdir()) == []


def test_a_data_cache_that_runs_out_of_room_is_one_sentence_and_never_half_written(world_readable):
    data_dir = world_readable / "full-data"
    data_dir.mkdir()
    data_dir.chmod(0o777)

    def small_disk():  # files this process writes stop growing at 8 MB, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))

    proc = _train_with_cache(world_readable, data_dir, preexec=small_disk)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f"error: Cannot write the MNIST cache {data_dir / 'mnist.npz'} (")
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert list(data_dir.iterdir()) == []  # no partial mnist.npz, no temporary file
    # With room again, the same command converts the cache and trains.
    assert _train_with_cache(world_readable, data_dir).returncode == 0
    assert (data_dir / "mnist.npz").is_file()
