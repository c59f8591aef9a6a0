"""What ocrexp prints: its own lines, Keras' epoch lines and warnings; libraries' chatter goes to log files.

A run prints a header, Keras' per-epoch lines and a summary; a sweep prints a header, one line per
finished trial and a summary. TensorFlow's C++ log, MLflow's INFO lines and progress bars, and
Hydra's launcher lines stay off the terminal (Hydra's log files still get the Python ones).
``OCREXP_VERBOSE=1`` brings everything back for debugging.

The logging side is wired in through Hydra's own logging configs (``conf/hydra/job_logging`` and
``conf/hydra/hydra_logging``), which name the filter, formatter and handler below.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

VERBOSE_ENV = "OCREXP_VERBOSE"
# Loggers whose INFO lines are meant for the terminal.
OWN_LOGGERS = ("ocrexp", "hydra_plugins.ocrexp_optuna_sweeper")


def verbose() -> bool:
    """Whether the user asked for every library's raw output (``OCREXP_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# TensorFlow's start-up lines, written by C++ straight to file descriptor 2 before its log level is read:
# absl's notice, INFO/WARNING lines (oneDNN, "Could not find cuda drivers") and GPU-probe errors.
_STARTUP_CHATTER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} "
                              r"|E\d{4} .*(cuInit|CUDA|cuda|cuDNN|cuFFT|cuBLAS|TensorRT|GPU)")


def quiet_libraries() -> None:
    """Silence TensorFlow's C++ log and MLflow's INFO lines and progress bars; must run before either
    loads, so each entry point calls it first (sweep workers too, from the task function: they are new
    interpreters). A level the user set in the environment wins."""
    # Models carry pinned pip requirements; MLflow would also copy the checkout's whole uv.lock
    # into every model logged from it.
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    if verbose():
        return
    # Level 3 also drops "failed call to cuInit" errors that every GPU-less machine logs. Sweep
    # workers inherit it from the sweep; a lower level set by the user keeps TensorFlow's lines.
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "3" and "tensorflow" not in sys.modules \
            and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


# Warnings that describe how ocrexp works rather than anything to act on: a sweep worker builds a
# new model (and so new tf.functions) for every trial, which TensorFlow reports as retracing.
_EXPECTED_WARNINGS = (("tensorflow", "triggered tf.function retracing"),)


def _expected(record: logging.LogRecord) -> bool:
    return any(record.name == name and text in record.getMessage() for name, text in _EXPECTED_WARNINGS)


def _own(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in OWN_LOGGERS)


class ConsoleFilter(logging.Filter):
    """Lets through warnings and errors, and ocrexp's INFO lines; inside a sweep's trial
    (:func:`run_lines_shown`) the run's own lines stay in the trial's log file, so the sweep's terminal
    shows one line per trial."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.run_lines = True

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose():
            return True
        if record.levelno >= logging.WARNING:
            return not _expected(record)
        if not _own(record.name):
            return False
        return record.name.startswith("hydra_plugins.") or self.run_lines


@contextmanager
def run_lines_shown(shown: bool):
    """Within this block, whether the terminal shows the run's own INFO lines: ``ocrexp-train``'s task
    function says False while it runs a sweep's trial. Applies to the console handlers Hydra has set
    up for the job (``conf/hydra/job_logging``)."""
    filters = [f for handler in logging.getLogger().handlers for f in handler.filters if isinstance(f, ConsoleFilter)]
    before = [f.run_lines for f in filters]
    for console_filter in filters:
        console_filter.run_lines = shown
    try:
        yield
    finally:
        for console_filter, value in zip(filters, before):
            console_filter.run_lines = value


class ConsoleFormatter(logging.Formatter):
    """ocrexp's lines as they are; warnings and errors prefixed, with the logger for foreign ones."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and verbose():
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno < logging.WARNING:
            return message
        where = "" if _own(record.name) else f" [{record.name}]"
        return f"{record.levelname.lower()}{where}: {message}"


def to_terminal() -> None:
    """What Hydra's ``job_logging`` config does for ``ocrexp-train``, for commands that train or
    evaluate without Hydra (``ocrexp reproduce``, ``ocrexp resume``): ocrexp's lines on stdout."""
    root = logging.getLogger()
    if any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ConsoleFilter())
    handler.setFormatter(ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class LogFile(logging.FileHandler):
    """A log file opened on the first record, creating its folder then (Hydra makes a sweep's folder
    only when it launches the first job)."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = "utf-8") -> None:
        super().__init__(filename, mode=mode, encoding=encoding, delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextmanager
def tensorflow_chatter_hidden():
    """Within this block, TensorFlow's C++ start-up lines on file descriptor 2 are dropped; any other
    output there is passed on, and all of it when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or not _STARTUP_CHATTER.match(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Runs the first ``import tensorflow`` (wherever it comes from: Keras, MLflow, ocrexp) inside
    :func:`tensorflow_chatter_hidden`, then steps out of the import system."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__spec__.loader = module.__loader__ = self._loader  # as if imported plainly
        with tensorflow_chatter_hidden():
            self._loader.exec_module(module)
