"""``ocrexp dashboard``: optuna-dashboard, Optuna's live study viewer, on a sweep's storage.

    ocrexp dashboard                        # the most recently updated study in mlruns/optuna/
    ocrexp dashboard cnn_optuna-1a2b3c4d    # that study (the sweep's first lines print this command)
    ocrexp dashboard --storage postgresql://optuna@db-host/optuna     # any storage a sweep used

A sweep keeps each study in its own journal file, mlruns/optuna/<study>.journal, unless
hydra.sweeper.storage names another storage. optuna-dashboard serves one storage at a time, so
without an argument the most recently updated journal is opened and the names of the others are
printed. The server binds to 127.0.0.1 unless --host says otherwise; Ctrl-C or SIGTERM stops it.
Its output goes to logs/dashboard.log in the project (OCREXP_VERBOSE=1: to the terminal).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ocrexp import paths
from ocrexp.commands._server import browser_url, check_port_free, log_path, serve
from ocrexp.console import verbose
from ocrexp.errors import OcrexpError
from ocrexp.sweep_protocol import JOURNAL_DIR, JOURNAL_SUFFIX, journal_path, redact

PROGRAM = "optuna-dashboard"
INSTALL_HINT = "pip install 'ocrexp[dashboard]'"
SWEEP_HINT = "ocrexp-train -m hparams_search=cnn_optuna"
SQLITE_HEADER = b"SQLite format 3\x00"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``ocrexp dashboard``."""
    parser = subparsers.add_parser(
        "dashboard", help="watch Optuna studies live in optuna-dashboard",
        description="Start optuna-dashboard on a study's storage and print its address. "
                    "Ctrl-C or SIGTERM stops it.", epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("study", nargs="?", default=None,
                       help="a study kept in the project's mlruns/optuna/ (default: the most recently updated)")
    which.add_argument("--storage", metavar="URL_OR_PATH", default=None,
                       help="a journal file (relative paths start at the project root, as hydra.sweeper.storage "
                            "does), sqlite:///path.db or postgresql://user@host/db; shows every study in it")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to bind (default 127.0.0.1: only this machine can connect)")
    parser.set_defaults(run=run)


@dataclass(frozen=True)
class Target:
    """What to serve: ``storage`` as optuna-dashboard takes it, how to show it (no password), and
    the project's other studies when the newest was chosen for the user."""

    storage: str
    shown: str
    others: tuple[str, ...] = ()


def journals(root: Path) -> list[Path]:
    """The project's study journals, most recently updated first."""
    folder = root / JOURNAL_DIR
    found = [p for p in folder.glob(f"*{JOURNAL_SUFFIX}") if p.is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def resolve(study: str | None, storage: str | None, root: Path) -> Target:
    """The storage to open for a study name, a ``--storage`` value, or neither (the newest journal)."""
    if storage:
        url = storage_from_option(storage, root)
        return Target(url, redact(storage) if "://" in storage else url)
    found = journals(root)
    names = [p.name[: -len(JOURNAL_SUFFIX)] for p in found]
    if not found:
        raise OcrexpError(f"no Optuna studies in {root / JOURNAL_DIR}: run a sweep first ({SWEEP_HINT}), "
                          f"or pass --storage for a study kept elsewhere")
    if study is None:
        return Target(str(found[0]), str(found[0]), tuple(names[1:]))
    path = journal_path(root, study)
    if not path.is_file():
        raise OcrexpError(f"no study {study!r} in {root / JOURNAL_DIR}: known studies are {', '.join(sorted(names))}")
    return Target(str(path), str(path))


def storage_from_option(storage: str, root: Path) -> str:
    """``--storage`` as optuna-dashboard takes it: a URL (with the installed PostgreSQL driver), or
    an existing journal file; a path to an SQLite database becomes its ``sqlite:///`` URL."""
    from ocrexp.pruning import _with_driver  # the sweep's own choice of PostgreSQL driver

    if "://" in storage:
        database = storage[len("sqlite:///"):] if storage.startswith("sqlite:///") else None
        if database is not None and not Path(database).is_file():
            raise OcrexpError(f"no SQLite database at {database}: check the path in --storage")
        return _with_driver(storage)
    path = Path(storage).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise OcrexpError(f"no Optuna storage at {path}: pass a journal file, sqlite:///path.db "
                          f"or postgresql://user@host/db to --storage")
    with path.open("rb") as f:
        is_sqlite = f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    return f"sqlite:///{path}" if is_sqlite else str(path)


def program() -> str:
    """The optuna-dashboard console script beside this Python, else on PATH."""
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which(PROGRAM, path=search)
    if found is None:
        raise OcrexpError(f"optuna-dashboard is not installed: {INSTALL_HINT}")
    return found


def command(executable: str, storage: str, host: str, port: int) -> list[str]:
    """The ``optuna-dashboard`` command line serving ``storage``."""
    # Not --quiet: its output goes to the log (or, asked for, the terminal), where its start-up lines help.
    return [executable, storage, "--host", host, "--port", str(port)]


def run(args: argparse.Namespace) -> int:
    executable = program()
    target = resolve(args.study, args.storage, paths.project_root())
    check_port_free(args.host, args.port)
    if target.others:
        print(f"Showing the most recently updated study; `ocrexp dashboard NAME` opens another: "
              f"{', '.join(shlex.quote(name) for name in target.others)}", flush=True)
    print(f"optuna-dashboard for {target.shown}: {browser_url(args.host, args.port)}/ (Ctrl-C to stop)", flush=True)
    return serve(command(executable, target.storage, args.host, args.port),
                 log=None if verbose() else log_path("dashboard"), what="optuna-dashboard")
