"""The MLflow store served from a forked process (``ocrexp.tracking.store_process``).

Each scenario runs in a fresh interpreter: the server forks only from a process that has not yet
imported TensorFlow or MLflow's store and runs a single thread, which the test process is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ocrexp.tracking import store_process

START = """
import json, os, sys
from ocrexp.tracking import store_process
uri = "sqlite:///" + os.path.abspath("mlruns/mlflow.db")
store_process.enable()  # as ocrexp-train and ocrexp-eval do
started = store_process.start(uri)
import mlflow
store_process.install()
client = mlflow.MlflowClient(uri)
"""


def _python(tmp_path, body: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(store_process.ENV, None)
    return subprocess.Popen([sys.executable, "-c", START + textwrap.dedent(body)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _ctrl_c_enabled() -> None:
    """Undo an inherited SIG_IGN for SIGINT (tests started in the background by a shell without job
    control have one, and Python then never raises KeyboardInterrupt), as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gone(pid: int, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended; its parent (init) reaps it
                if stat.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_a_run_recorded_through_the_server_is_in_the_store_and_this_process_never_imports_it(tmp_path):
    proc = _python(tmp_path, """
        from mlflow.entities import Metric
        from mlflow.exceptions import MlflowException
        exp = client.create_experiment("e")
        run = client.create_run(exp, run_name="r", tags={"t": "v"})
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 0.5, 0, 1)])
        client.set_terminated(run.info.run_id, "FINISHED")
        try:
            client.get_run("0" * 32)
            missing = None
        except MlflowException as exc:
            missing = [type(exc).__name__, exc.error_code, "0" * 32 in str(exc)]
        server = store_process._server.pid
        store_process.stop()
        print(json.dumps({"started": started, "run": run.info.run_id, "missing": missing, "server": server,
                          "imported_store_here": "mlflow.store.tracking.sqlalchemy_store" in sys.modules}))
    """)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["started"] and not result["imported_store_here"]
    assert result["missing"] == ["MlflowException", "RESOURCE_DOES_NOT_EXIST", True]
    assert _gone(result["server"], within_s=0)  # stop() waited for it

    import mlflow  # the same store, opened here without the server

    run = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").get_run(result["run"])
    assert (run.info.status, run.data.tags["t"], run.data.metrics) == ("FINISHED", "v", {"loss": 0.5})


@pytest.mark.slow
def test_the_server_outlives_ctrl_c_so_the_run_can_record_it_and_ends_with_its_process(tmp_path):
    proc = _python(tmp_path, """
        import time
        exp = client.create_experiment("e")
        run = client.create_run(exp, run_name="r")
        try:  # ready for Ctrl-C once this line is out: the test may send it before print() returns
            print(store_process._server.pid, flush=True)
            time.sleep(60)
        except KeyboardInterrupt:
            client.set_terminated(run.info.run_id, "KILLED")
            print(client.get_run(run.info.run_id).info.status, flush=True)
    """, start_new_session=True, preexec_fn=_ctrl_c_enabled)
    server = int(proc.stdout.readline())
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole foreground group
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out.strip()) == (0, "KILLED"), err
    assert _gone(server)  # the interpreter's exit (atexit) ended it


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_store_call_is_raised_after_its_reply_so_later_calls_get_their_own(tmp_path, sig):
    proc = _python(tmp_path, f"""
        import signal
        class Stop(BaseException):
            pass
        def stop(signum, frame):
            raise Stop()
        signal.signal(signal.{sig}, stop)  # as ocrexp-train's SIGTERM handler; Ctrl-C alike
        exp = client.create_experiment("e")
        client.create_run(exp, run_name="zero")  # the proxy has looked up create_run: one call each now
        conn = store_process._server.conn
        recv = conn.recv
        def recv_after_a_signal():  # the signal arrives while the reply is on its way
            conn.recv = recv
            signal.raise_signal(signal.{sig})
            return recv()
        conn.recv = recv_after_a_signal
        try:
            client.create_run(exp, run_name="first")
            stopped = False
        except Stop:
            stopped = True
        second = client.create_run(exp, run_name="second").info.run_name
        runs = sorted(r.info.run_name for r in client.search_runs([exp]))
        print(json.dumps({{"stopped": stopped, "second": second, "runs": runs,
                          "handler_back": signal.getsignal(signal.{sig}) is stop}}))
    """)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {
        "stopped": True, "second": "second", "runs": ["first", "second", "zero"], "handler_back": True}


@pytest.mark.slow
def test_the_server_ends_when_its_run_is_killed(tmp_path):
    proc = _python(tmp_path, """
        import time
        client.create_experiment("e")
        print(store_process._server.pid, flush=True)
        time.sleep(60)
    """)
    server = int(proc.stdout.readline())
    proc.kill()  # SIGKILL: no exit handler runs; the server sees its pipe close
    proc.communicate(timeout=60)
    assert _gone(server)


@pytest.mark.slow
def test_an_unexpected_end_of_the_server_is_one_clear_error(tmp_path):
    proc = _python(tmp_path, """
        import signal
        from ocrexp.errors import OcrexpError
        exp = client.create_experiment("e")
        os.kill(store_process._server.pid, signal.SIGKILL)
        os.waitpid(store_process._server.pid, 0)
        try:
            client.create_run(exp)
        except OcrexpError as exc:
            print(exc)
    """)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.startswith("the process serving the MLflow store ended unexpectedly; run the same command again")


@pytest.mark.parametrize("why", ["not a command", "switched off", "a thread runs", "not sqlite",
                                 "TensorFlow imported", "fork fails"])
def test_no_server_starts_where_forking_is_unsafe_or_gains_nothing(why, monkeypatch):
    # Everything else as in a fresh single-threaded command, so that ``why`` is the only reason.
    uri = "sqlite:////nonexistent/mlflow.db"
    monkeypatch.setattr(store_process, "_enabled", why != "not a command")
    monkeypatch.setattr(threading, "active_count", lambda: 2 if why == "a thread runs" else 1)
    monkeypatch.delitem(sys.modules, "mlflow.store.tracking.sqlalchemy_store", raising=False)
    if why == "TensorFlow imported":
        monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow") or object())
    else:
        monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setenv(store_process.ENV, "0" if why == "switched off" else "1")
    if why == "not sqlite":
        uri = "http://127.0.0.1:5000"

    def no_room():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_room)  # every case: this test process must never be forked
    assert store_process.start(uri) is False
    assert store_process._server is None
