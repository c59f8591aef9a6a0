"""Processes on this machine, as the kernel reports them, and a heartbeat for other machines.

Owners of runs (``tracking.liveness``) and of sweep trials (the sweeper's ``_resume``) are judged
the same way: on this host by their pid (``alive``, with ``start_time`` telling a reused pid from the
original), on other hosts by how recent their heartbeat is (``Heartbeat`` keeps one fresh). The
details come from Linux's ``/proc``; where there is none, a live pid is taken at its word.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent pid, ...: field 3
    of ``man proc_pid_stat`` is item 0), or None when the process is gone or there is no /proc. The
    command name is skipped by its closing parenthesis, as it may hold spaces and parentheses."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def start_time(pid: int) -> str | None:
    """When ``pid`` started, in the kernel's clock ticks since boot (a reused pid has another), or None."""
    fields = stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie, which has ended, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    fields = stat_fields(pid)
    if fields is None:  # gone since, or no /proc to ask
        return not Path("/proc").is_dir()
    return fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (empty where there is no /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields and len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


class Heartbeat:
    """Calls ``beat()`` every ``interval`` seconds on a daemon thread until ``stop()``. A beat that
    raises is skipped (the next one retries): the owner must not fail because a store hiccuped."""

    def __init__(self, interval: float, beat: Callable[[], None], name: str = "ocrexp-heartbeat"):
        self.interval, self._beat = interval, beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - see the class docstring
                pass

    def stop(self) -> None:
        self._stop.set()
