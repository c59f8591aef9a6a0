"""Running a local web server (MLflow UI, optuna-dashboard) so that it never outlives its command.

The server starts in a session of its own, so one process group holds it and everything it forks
(web workers, job runners). Whatever ends the command - Ctrl-C, SIGTERM from ``kill`` or a
supervisor, SIGHUP when the terminal closes - is passed to that whole group as SIGTERM, and the
group is killed outright if anything of it is still there a few seconds later.

The server's own output (start-up notices, warnings, a line per request) goes to a log file in the
project, ``logs/<command>.log``, so that the terminal shows the command's link and nothing else; if the
server stops on its own, the command ends with one line quoting the log's last error.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ocrexp import paths
from ocrexp.errors import OcrexpError
from ocrexp.sweep_protocol import redact

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The group always gets SIGTERM: on SIGINT uvicorn shuts down and then prints a KeyboardInterrupt
# traceback, and worker supervisors (uvicorn, gunicorn) read SIGHUP as "reload", not "stop".
_FORWARDED = signal.SIGTERM
LOG_DIR = "logs"
# How a Python traceback names its exception ("sqlalchemy.exc.DatabaseError: ..."), from the start of a line.
_EXCEPTION_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit)(?::|$)")
_DIRECT_CAUSE = "The above exception was the direct cause of the following exception:"
_ERROR_WORD = re.compile(r"\berror\b", re.IGNORECASE)
_TAIL_BYTES = 64 * 1024  # of the log, searched for the error to quote
_QUOTED_CHARS = 300


def log_path(command: str) -> Path:
    """``<project root>/logs/<command>.log``: where the server of ``ocrexp <command>`` writes."""
    return paths.project_root() / LOG_DIR / f"{command}.log"


def browser_url(host: str, port: int) -> str:
    """``http://host:port`` as a browser on this machine reaches a server bound to ``host``."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`OcrexpError` unless a server could listen on ``host:port`` now."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise OcrexpError(f"cannot listen on host {host!r} ({exc.strerror}); "
                          "pass --host an address of this machine such as 127.0.0.1") from None
    with socket.socket(family, kind, proto) as sock:
        # Servers set SO_REUSEADDR too, so a port still in TIME_WAIT after the last server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OcrexpError(f"port {port} on {host} is already in use (another server is running there); "
                                  "stop it or choose another port with --port") from None
            raise OcrexpError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                              "choose another --host or --port") from None


def serve(cmd: Sequence[str], env: Mapping[str, str] | None = None, grace: float = 5.0,
          log: Path | None = None, what: str = "the server") -> int:
    """Run the server ``cmd`` until it exits or this process gets SIGINT, SIGTERM or SIGHUP.

    A stop signal reaches the server's whole process group as SIGTERM; if the group is not gone
    ``grace`` seconds later, or a second stop signal arrives, it is killed. Nothing of the group is
    left running on return. Returns 0 after a stop signal, else the server's own exit status.

    With ``log``, the server's stdout and stderr are appended to that file after a line with the date
    and ``cmd``, a line printed here names the file, and a server that stops on its own raises
    :class:`OcrexpError` naming ``what`` stopped and quoting the log. Without it the server writes to
    this process's terminal.
    """
    output, start = _start_log(log, cmd, what) if log is not None else (None, 0)
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    proc = None
    try:
        proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
                                stdout=output, stderr=None if output is None else subprocess.STDOUT,
                                start_new_session=True)
        status = _wait(proc, received, grace)
    finally:
        if output is not None:
            output.close()
        if proc is not None:
            _end_group(proc.pid, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 0
    if log is not None:
        how = f"was killed by signal {-status}" if status < 0 else f"stopped with exit status {status}"
        quoted = last_error_line(log, start)
        raise OcrexpError(f"{what} {how}{': ' + quoted if quoted else ''}; its output is in {log}")
    return 128 - status if status < 0 else status  # killed by signal N: the shell's 128+N


def _start_log(log: Path, cmd: Sequence[str], what: str) -> tuple[BinaryIO, int]:
    """Open ``log`` for appending, write the line that marks this start and print the line naming the
    file; returns the file and where this start's output begins."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        output = log.open("ab")
    except OSError as exc:
        raise OcrexpError(f"cannot write the server log {log} ({exc.strerror}); make it writable, or set "
                          "OCREXP_VERBOSE=1 to see the server's output here instead") from None
    shown = shlex.join(redact(part) for part in cmd)  # a storage URL may hold a password
    output.write(f"--- {datetime.now():%Y-%m-%d %H:%M:%S} starting {what}: {shown}\n".encode())
    output.flush()
    print(f"Server log: {log}", flush=True)
    return output, output.tell()


def last_error_line(log: Path, start: int = 0) -> str:
    """The line of ``log`` after byte ``start`` that best says why a server stopped: the exception that
    its last Python traceback began with (``raise … from`` wraps the specific cause in a general one),
    else the last line that mentions an error, else the last line; "" if there is none."""
    with log.open("rb") as f:
        f.seek(max(start, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
        lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    cause, wrapped = None, False
    for line in lines:
        if _EXCEPTION_LINE.match(line):
            cause = cause if wrapped and cause else line
            wrapped = False
        elif line.strip() == _DIRECT_CAUSE:
            wrapped = True
    found = cause or next((line for line in reversed(lines) if _ERROR_WORD.search(line)), lines[-1] if lines else "")
    line = " ".join(found.split())  # log formats pad their level names
    return line if len(line) <= _QUOTED_CHARS else line[:_QUOTED_CHARS] + "…"


def _wait(proc: subprocess.Popen, received: list[int], grace: float) -> int:
    """Wait for the group leader, passing on stop signals as they arrive (the handler only records)."""
    forwarded = 0
    kill_at = float("inf")
    while True:
        if len(received) > forwarded:
            if forwarded == 0:
                _signal_group(proc.pid, _FORWARDED)
                kill_at = time.monotonic() + grace
            if len(received) > 1:  # asked twice: stop waiting
                kill_at = 0.0
            forwarded = len(received)
        if time.monotonic() >= kill_at:
            _signal_group(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass


def _end_group(pgid: int, grace: float) -> None:
    """Stop what is left of the group once its leader has gone: SIGTERM, then SIGKILL after ``grace``."""
    if not _signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if not _signal_group(pgid, 0):
            return
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False if no process of it exists any more."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
