"""Servers that tests start (``ocrexp ui``, ``ocrexp dashboard``, ``mlflow server``): free ports, waiting, and checking
that a stopped server left no process of its session and freed its port. Reads Linux's /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests import processes
from tests.project import BIN, Project


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


def wait_answering(proc: subprocess.Popen, url: str, output, timeout: float = 120) -> None:
    """Return once ``url`` answers 200; fail with ``output()`` (the server's log) if ``proc`` exits or
    ``timeout`` passes first."""

    def answers() -> bool:
        assert proc.poll() is None, f"{' '.join(map(str, proc.args[:2]))} exited {proc.returncode}\n{output()}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    assert wait_until(answers, timeout=timeout), f"no answer from {url}\n{output()}"


def assert_stops_cleanly(proc: subprocess.Popen, sig: int, server_sid: int, port: int | None = None) -> None:
    """Send ``sig`` to the ocrexp process only; it must exit 0 and take its server's session with it."""
    assert session_members(server_sid), "the server was not running before the signal"
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == 0
    assert wait_until(lambda: not session_members(server_sid), timeout=5), session_members(server_sid)
    if port is not None:
        assert wait_until(lambda: port_is_free(port), timeout=5), f"port {port} still taken"


@dataclass
class RunningServer:
    """An ``ocrexp ui`` or ``ocrexp dashboard`` that a test started, answering on ``port``."""

    proc: subprocess.Popen
    port: int
    server_pid: int  # leads the server's own session
    first_line: str
    out: Path  # what ocrexp printed on stdout
    err: Path  # and on stderr


def server_starter(command: str, ready_path: str):
    """A function that starts the installed ``ocrexp <command>`` in a project (its arguments, then
    environment variables as keywords) and waits until ``ready_path`` answers, when it is ready for a
    stop signal; kills what is left at the end."""
    started: list[RunningServer] = []

    def start(project: Project, *args: str, **env: str) -> RunningServer:
        port = free_port()
        out, err = project.root / f"{command}.out", project.root / f"{command}.err"
        log = project.root / "logs" / f"{command}.log"
        with open(out, "w") as stdout, open(err, "w") as stderr:  # files: a full pipe would stall the server
            proc = subprocess.Popen([str(BIN / "ocrexp"), command, "--port", str(port), *args], cwd=project.root,
                                    env=project.env(**env), stdout=stdout, stderr=stderr)

        def output() -> str:
            return err.read_text()[-3000:] + (log.read_text()[-3000:] if log.exists() else "")

        try:
            wait_answering(proc, f"http://127.0.0.1:{port}{ready_path}", output)
            (server_pid,) = children(proc.pid)
        except BaseException:
            for server_pid in children(proc.pid):
                kill_session(server_pid)
            proc.kill()
            proc.wait()
            raise
        server = RunningServer(proc, port, server_pid, out.read_text().splitlines()[0], out, err)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
        kill_session(server.server_pid)


def ui_starter():
    """:func:`server_starter` for ``ocrexp ui``, ready once MLflow's /health answers."""
    return server_starter("ui", "/health")


@dataclass
class TrackingServer:
    """An ``mlflow server`` that tests start: its URI, its process (leading its own group) and log."""

    uri: str
    proc: subprocess.Popen
    log: Path


def start_mlflow_server(base: Path, backend_uri: str | None = None) -> TrackingServer:
    """``mlflow server`` on 127.0.0.1 serving run artifacts from ``base/artifacts`` (``--serve-artifacts``),
    its backend store ``backend_uri`` (default: SQLite in ``base``); returns once it answers. Stop it
    with :func:`stop_mlflow_server`: it starts worker processes, so its whole process group."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    backend = backend_uri or f"sqlite:///{base / 'mlflow.db'}"
    log = base / "server.log"
    with open(log, "w") as out:  # a file: a full pipe would stall the server
        proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", "1", "--backend-store-uri", backend,
                                 "--serve-artifacts", "--artifacts-destination", str(base / "artifacts")],
                                cwd=base, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = TrackingServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_answering(proc, f"{server.uri}/health", lambda: log.read_text()[-3000:])
    except BaseException:
        stop_mlflow_server(server)
        raise
    return server


def stop_mlflow_server(server: TrackingServer) -> None:
    kill_session(server.proc.pid)
    server.proc.wait(timeout=30)
