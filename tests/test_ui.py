"""``ocrexp ui``: serves the project's store, links its runs page, keeps the server's output in
logs/ui.log, and leaves nothing running when stopped.

The server-process tests read Linux's /proc: a stopped UI must leave no process in the server's
session (the MLflow server starts in a session of its own, so its id is the server's pid).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from ocrexp.commands._server import serve
from ocrexp.errors import OcrexpError
from tests import processes
from tests.servers import assert_stops_cleanly, children, free_port, kill_session, session_members, wait_until

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


@pytest.mark.slow
def test_ui_prints_only_its_link_and_log_file_and_the_server_output_goes_to_the_log(project, start_ui):
    ui = start_ui(project)
    with urllib.request.urlopen(f"http://127.0.0.1:{ui.port}/health", timeout=30) as resp:
        assert resp.status == 200
    assert_stops_cleanly(ui.proc, signal.SIGTERM, ui.server_pid, ui.port)
    log = project.root / "logs" / "ui.log"
    assert ui.first_line.startswith("MLflow UI for sqlite:///")
    assert ui.out.read_text() == f"{ui.first_line}\nServer log: {log}\n"
    assert ui.err.read_text() == ""
    text = log.read_text()
    assert text.startswith("--- ") and " starting the MLflow server: " in text.splitlines()[0]
    assert f"Uvicorn running on http://127.0.0.1:{ui.port}" in text
    assert '"GET /health HTTP/1.1" 200' in text


@pytest.mark.slow
def test_verbose_ui_shows_the_server_output_and_writes_no_log(project, start_ui):
    ui = start_ui(project, OCREXP_VERBOSE="1")
    assert_stops_cleanly(ui.proc, signal.SIGTERM, ui.server_pid, ui.port)
    terminal = ui.out.read_text() + ui.err.read_text()
    assert ui.first_line.startswith("MLflow UI for sqlite:///")
    assert f"Uvicorn running on http://127.0.0.1:{ui.port}" in terminal
    assert "Server log:" not in terminal
    assert not (project.root / "logs").exists()


@pytest.mark.parametrize("kind", ["text", "other-sqlite"])
def test_ui_refuses_a_file_that_is_not_an_mlflow_store_in_one_line_and_leaves_it_as_it_was(project, kind):
    store = project.root / "notes.db"
    if kind == "text":
        store.write_text("not a database\n")
    else:
        with sqlite3.connect(store) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
        db.close()
    before = store.read_bytes()
    proc = project.run("ocrexp", "ui", "--port", str(free_port()), "--tracking-uri", f"sqlite:///{store}",
                       check=False, timeout=120)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"error: {store} is ") and "not an MLflow store" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert store.read_bytes() == before
    assert [p.name for p in project.root.iterdir()] == ["notes.db"]  # no lock file, store or log beside it


# A server that fails as a database-backed one does: a specific error wrapped in a general one.
FAILING_SERVER = textwrap.dedent("""
    import sqlite3, sys
    print("starting up", flush=True)
    try:
        sqlite3.connect(sys.argv[1]).execute("SELECT name FROM sqlite_master")
    except sqlite3.DatabaseError as exc:
        raise RuntimeError("cannot open the store") from exc
""")


def test_a_server_that_stops_on_its_own_is_one_sentence_quoting_the_cause_from_its_log(tmp_path, capsys):
    server, not_a_db = tmp_path / "server.py", tmp_path / "store.db"
    server.write_text(FAILING_SERVER)
    not_a_db.write_text("not a database\n")
    log = tmp_path / "logs" / "test.log"
    for _ in range(2):
        with pytest.raises(OcrexpError) as raised:
            serve([sys.executable, str(server), str(not_a_db)], log=log, what="the test server")
        assert str(raised.value) == ("the test server stopped with exit status 1: sqlite3.DatabaseError: file is "
                                     f"not a database; its output is in {log}")
    assert capsys.readouterr().out == f"Server log: {log}\n" * 2
    text = log.read_text()
    assert text.count(" starting the test server: ") == 2
    assert text.count("starting up\n") == 2 and text.count("RuntimeError: cannot open the store\n") == 2


def test_the_error_quoted_is_from_this_start_of_the_server_not_an_earlier_one(tmp_path):
    log = tmp_path / "test.log"
    log.write_text("--- an earlier start\nValueError: what went wrong then\n")
    script = "import sys; print('INFO: starting'); print('ERROR:    address   already in use'); sys.exit(4)"
    with pytest.raises(OcrexpError, match=r"^the test server stopped with exit status 4: ERROR: address already "
                                          r"in use; its output is in "):
        serve([sys.executable, "-c", script], log=log, what="the test server")


SERVE = "import sys; from ocrexp.commands._server import serve; sys.exit(serve(sys.argv[1:], grace=1))"


@pytest.mark.slow
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
