"""Reading Linux's /proc: which processes run, their state, parent, session and command line."""

from __future__ import annotations

from pathlib import Path

from ocrexp.processes import stat_fields


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process, or None once it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]), int(fields[3]))


def argv(pid: int) -> list[str]:
    """The process's command line as a list (raises OSError once it is gone)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
