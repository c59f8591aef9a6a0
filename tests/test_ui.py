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
from pathlib import Path

import pytest

from tests import processes
from tests.servers import assert_stops_cleanly, children, kill_session, session_members, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


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
