"""Servers that tests start (``ocrexp ui``, ``ocrexp dashboard``): free ports, waiting, and checking
that a stopped server left no process of its session and freed its port. Reads Linux's /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass

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


def ui_starter():
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
