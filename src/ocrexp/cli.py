# PYTHON_ARGCOMPLETE_OK
"""``ocrexp``: the project's command-line tool (data, ui, dashboard, export, reproduce, resume, predict, runs,
ensemble).

Each subcommand lives in ``ocrexp.commands.<name>`` and exposes ``add_parser(subparsers)``
and ``run(args) -> int``. Those modules must stay light to import: TensorFlow, MLflow and Optuna
are imported inside ``run`` so that ``ocrexp --help`` and tab completion (argcomplete) are instant.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import NoReturn

import argcomplete

from ocrexp.commands import _complete
from ocrexp.console import quiet_libraries, to_terminal
from ocrexp.errors import USAGE_EXIT, OcrexpError, interrupted, print_error, raise_terminated

COMMANDS = ("data", "ui", "dashboard", "export", "reproduce", "resume", "predict", "runs", "ensemble")
TRAINING = ("reproduce", "resume")  # their Ctrl-C or SIGTERM ends a run as KILLED


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage mistakes as the one ``error:`` line every ocrexp command prints, naming
    the ``--help`` that lists what it takes (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{self.prog}: {message}; `{self.prog} --help` lists what it takes.")
        sys.exit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ocrexp", description="ocrexp tools: fetch data, browse runs, export and reproduce models.",
        epilog="Training is ocrexp-train (a Hydra app: ocrexp-train --help); evaluation is ocrexp-eval.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ocrexp.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ocrexp.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    _complete.attach(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``ocrexp``): run the subcommand named in ``argv``; returns the exit status."""
    quiet_libraries()  # before a subcommand imports TensorFlow or MLflow
    parser = build_parser()
    argcomplete.autocomplete(parser)  # answers a shell's TAB and exits; nothing happens otherwise
    args = parser.parse_args(argv)
    to_terminal()
    signal.signal(signal.SIGTERM, raise_terminated)  # a training command ends its MLflow run as KILLED
    try:
        return int(args.run(args) or 0)
    except OcrexpError as exc:
        print_error(str(exc))
        return USAGE_EXIT
    except KeyboardInterrupt as exc:
        message, status = interrupted(exc, training=args.command in TRAINING)
        print(message, file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
