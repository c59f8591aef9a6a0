"""Errors a user can fix, and how every entry point prints them: one sentence, exit status 2."""

from __future__ import annotations

import sys
from typing import NoReturn

USAGE_EXIT = 2  # argparse's status for a usage mistake


class OcrexpError(Exception):
    """A problem the user can fix, described in one sentence that says what to do."""


class ConfigError(OcrexpError):
    """A config value is missing, of the wrong type, or out of range."""


class DataError(OcrexpError):
    """A dataset cannot be found, fetched, verified or parsed."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that runs end as KILLED and sweeps pass it on."""


def raise_terminated(signum, frame) -> None:
    """The SIGTERM handler of the commands that record runs, so that their runs end as KILLED."""
    raise Terminated()


def interrupted(exc: KeyboardInterrupt, *, training: bool = True) -> tuple[str, int]:
    """What a command prints when Ctrl-C or SIGTERM ended it, and its exit status (the shell's
    128 + signal number). The run that ended as KILLED, if any, is on ``exc.killed_run``; a training
    run goes on from its checkpoint when the command runs again."""
    how, status = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
    run_id = getattr(exc, "killed_run", None)
    if run_id is None:
        return (f"{how} before an MLflow run began: nothing was recorded" if training else how), status
    again = "; run the same command again to go on from its last finished epoch" if training else ""
    return f"{how}: run {run_id} ended as KILLED{again}", status


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, the one line every command prints for a mistake."""
    print(f"error: {message}", file=sys.stderr)


def exit_with_error(message: str) -> NoReturn:
    """End the command with ``error: <message>`` on stderr and the usage exit status."""
    print_error(message)
    sys.exit(USAGE_EXIT)
