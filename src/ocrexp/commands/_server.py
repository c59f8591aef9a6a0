"""Running a local web server (MLflow UI, optuna-dashboard) so that it never outlives its command.

The server starts in a session of its own, so one process group holds it and everything it forks
(web workers, job runners). Whatever ends the command - Ctrl-C, SIGTERM from ``kill`` or a
supervisor, SIGHUP when the terminal closes - is passed to that whole group as SIGTERM, and the
group is killed outright if anything of it is still there a few seconds later.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence

from ocrexp.errors import OcrexpError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# The group always gets SIGTERM: on SIGINT uvicorn shuts down and then prints a KeyboardInterrupt
# traceback, and worker supervisors (uvicorn, gunicorn) read SIGHUP as "reload", not "stop".
_FORWARDED = signal.SIGTERM


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


def serve(cmd: Sequence[str], env: Mapping[str, str] | None = None, grace: float = 5.0) -> int:
    """Run the server ``cmd`` until it exits or this process gets SIGINT, SIGTERM or SIGHUP.

    A stop signal reaches the server's whole process group as SIGTERM; if the group is not gone
    ``grace`` seconds later, or a second stop signal arrives, it is killed. Nothing of the group is
    left running on return. Returns 0 after a stop signal, else the server's own exit status.
    """
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.append(signum)) for sig in STOP_SIGNALS}
    proc = None
    try:
        proc = subprocess.Popen(list(cmd), env=None if env is None else dict(env),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        status = _wait(proc, received, grace)
    finally:
        if proc is not None:
            _end_group(proc.pid, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        return 0
    return 128 - status if status < 0 else status  # killed by signal N: the shell's 128+N


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
