"""``ocrexp ui``: serves the project's store, links its runs page, and leaves nothing running when stopped.

The server-process tests read Linux's /proc: a stopped UI must leave no process in the server's
session (the MLflow server starts in a session of its own, so its id is the server's pid).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import processes
from tests.project import BIN, Project

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def children(pid: int) -> list[int]:
    return [p for p in processes.pids() if (st := processes.stat(p)) and st[1] == pid]


def session_members(sid: int) -> list[str]:
    """Live processes of the session (zombies are dead, only not yet reaped): "pid cmdline" each."""
    members = []
    for pid in processes.pids():
        st = processes.stat(pid)
        if st and st[2] == sid and st[0] != "Z":
            try:
                members.append(f"{pid} {' '.join(processes.argv(pid))}")
            except OSError:
                continue
    return members


def kill_session(sid: int | None) -> None:
    """SIGKILL the process group ``sid`` leads, if any of it is left (cleanup after a failed test)."""
    try:
        if sid is not None:
            os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def assert_stops_cleanly(proc: subprocess.Popen, sig: int, server_sid: int, port: int | None = None) -> None:
    """Send ``sig`` to the ocrexp process only; it must exit 0 and take its server's session with it."""
    assert session_members(server_sid), "the server was not running before the signal"
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 0
    assert wait_until(lambda: not session_members(server_sid), timeout=5), session_members(server_sid)
    if port is not None:
        assert wait_until(lambda: port_is_free(port), timeout=5), f"port {port} still taken"


@dataclass
class RunningUI:
    proc: subprocess.Popen
    port: int
    server_pid: int  # leads the server's own session
    first_line: str


@pytest.fixture
def start_ui():
    """Start the installed ``ocrexp ui`` in a project and wait until it answers; kill what is left at the end."""
    started: list[RunningUI] = []

    def start(project: Project, *args: str) -> RunningUI:
        port = free_port()
        out, err = project.root / "ui.out", project.root / "ui.err"
        with open(out, "w") as stdout, open(err, "w") as stderr:  # files: a full pipe would stall the server
            proc = subprocess.Popen([str(BIN / "ocrexp"), "ui", "--port", str(port), *args], cwd=project.root,
                                    env=project.env(), stdout=stdout, stderr=stderr)

        def answers() -> bool:
            assert proc.poll() is None, f"ocrexp ui exited {proc.returncode}\n{err.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        try:
            assert wait_until(answers, timeout=120), f"no answer on port {port}\n{err.read_text()[-3000:]}"
            (server_pid,) = children(proc.pid)
        except BaseException:
            for server_pid in children(proc.pid):
                kill_session(server_pid)
            proc.kill()
            proc.wait()
            raise
        ui = RunningUI(proc, port, server_pid, out.read_text().splitlines()[0])
        started.append(ui)
        return ui

    yield start
    for ui in started:
        if ui.proc.poll() is None:
            ui.proc.kill()
            ui.proc.wait()
        kill_session(ui.server_pid)


@pytest.mark.slow
def test_ui_serves_the_project_store_and_links_its_runs_page(trained, start_ui):
    project, run_id = trained
    ui = start_ui(project)
    experiment_id = project.client().get_run(run_id).info.experiment_id
    assert f"http://127.0.0.1:{ui.port}/#/experiments/{experiment_id}/runs" in ui.first_line
    with urllib.request.urlopen(f"http://127.0.0.1:{ui.port}/api/2.0/mlflow/runs/get?run_id={run_id}",
                                timeout=30) as resp:
        assert json.load(resp)["run"]["info"]["status"] == "FINISHED"
    with urllib.request.urlopen(f"http://127.0.0.1:{ui.port}/", timeout=30) as resp:
        assert resp.status == 200 and b"<html" in resp.read().lower()
    assert_stops_cleanly(ui.proc, signal.SIGTERM, ui.server_pid, ui.port)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGHUP, 2)],
                         ids=["SIGTERM", "SIGINT", "SIGHUP-two-workers"])
def test_stop_signal_to_ocrexp_alone_ends_every_server_process(project, start_ui, sig, workers):
    ui = start_ui(project, *(["--workers", str(workers)] if workers != 1 else []))
    experiment = project.client().get_experiment_by_name("ocrexp")  # created by ocrexp ui for the link
    assert f"http://127.0.0.1:{ui.port}/#/experiments/{experiment.experiment_id}/runs" in ui.first_line
    if workers == 1:  # the MLflow launcher and one uvicorn process: no worker pool, no job consumers
        assert len(session_members(ui.server_pid)) == 2, session_members(ui.server_pid)
    assert_stops_cleanly(ui.proc, sig, ui.server_pid, ui.port)


def test_ui_refuses_a_port_in_use_in_one_sentence(project):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = project.run("ocrexp", "ui", "--port", str(port), check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: port {port} on 127.0.0.1 is already in use")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (project.root / "mlruns").exists()  # refused before touching the store


SERVE = "import sys; from ocrexp.commands._server import serve; sys.exit(serve(sys.argv[1:], grace=1))"


def test_serve_kills_a_server_that_ignores_the_stop_signal_after_the_grace_period():
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "sh", "-c", "trap '' TERM INT HUP; sleep 300 & sleep 300"])
    sid = None
    try:
        assert wait_until(lambda: len(children(proc.pid)) == 1, timeout=30)
        (sid,) = children(proc.pid)
        assert wait_until(lambda: len(session_members(sid)) >= 2, timeout=10), session_members(sid)
        started = time.monotonic()
        assert_stops_cleanly(proc, signal.SIGTERM, sid)
        assert time.monotonic() - started < 10
    finally:
        proc.kill()
        proc.wait()
        kill_session(sid)


def test_serve_stops_what_an_exited_server_left_behind(tmp_path):
    pid_file = tmp_path / "background.pid"
    proc = subprocess.run([sys.executable, "-c", SERVE, "sh", "-c", f"sleep 300 & echo $! > {pid_file}; exit 3"],
                          timeout=30)
    background = int(pid_file.read_text())
    try:
        assert proc.returncode == 3
        assert wait_until(lambda: (processes.stat(background) or "Z")[0] == "Z", timeout=5), "the background sleep survived"
    finally:
        if (processes.stat(background) or "Z")[0] != "Z":  # only if the assertion failed
            os.kill(background, signal.SIGKILL)
