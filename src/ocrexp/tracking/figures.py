"""Run figures drawn by a helper process, so that importing matplotlib and drawing (about 0.8 s of a
``debug=fast`` run) take nothing from the training process: the helper starts with the first run,
imports matplotlib while the model trains, and draws each figure it is sent into the run's folder;
the run logs the files when it ends. One helper serves all the runs a process makes one after
another (Hydra's sequential multirun jobs), so only the first pays for its start. Sweep trials draw
on their worker's thread instead (``RunTracker.__enter__`` says why).

A figure is sent as a picklable function and its arguments (``functools.partial(plots.confusion_matrix,
y, y_pred, names)``); the helper writes the PNG, or ``<png>.error`` with the reason, then answers
one line. It reads jobs until its input closes, so it ends with its process, or soon after that
process dies. It runs in a session of its own, so that Ctrl-C in the terminal and signals to the
run's process group reach only the run, which decides what an interruption means.

    python -m ocrexp.tracking.figures       # the helper; jobs are pickles on its stdin
"""

from __future__ import annotations

import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


class FigureProcess:
    """The helper process, fed by a thread: a job larger than the pipe would otherwise block the
    run while the helper is still drawing the one before."""

    def __init__(self) -> None:
        self.log = Path(tempfile.mkstemp(prefix="ocrexp-figures-", suffix=".log")[1])
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "ocrexp.tracking.figures"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, env={**os.environ, "MPLBACKEND": "Agg"},
                                            start_new_session=True)
        self.pending = 0  # jobs sent whose answer has not been read
        self._jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="ocrexp-figures", daemon=True)
        self._feeder.start()

    def alive(self) -> bool:
        return self.process.poll() is None

    def submit(self, target: Path, make) -> bool:
        """Send ``make`` (a picklable function returning a figure) to be saved as ``target``; False if
        it cannot be pickled (a lambda or a closure)."""
        try:  # the target travels apart, so that a function the helper cannot import is still reported
            job = pickle.dumps((str(target), pickle.dumps(make)))
        except (pickle.PicklingError, AttributeError, TypeError):
            return False
        self._jobs.put(job)
        self.pending += 1
        return True

    def wait(self) -> bool:
        """Wait until every job sent has been drawn; False if the helper ended first."""
        while self.pending:
            if not self.process.stdout.readline():
                return False
            self.pending -= 1
        return True

    def last_words(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return f"the figure process ended with status {self.process.poll()}" + (f" ({lines[-1]})" if lines else "")

    def close(self) -> None:
        self._jobs.put(None)
        self._feeder.join()
        self.process.wait()
        self.log.unlink(missing_ok=True)

    def _feed(self) -> None:
        try:
            with self.process.stdin as pipe:  # closing it flushes, which fails too if the helper died
                while (job := self._jobs.get()) is not None:
                    pipe.write(job)
                    pipe.flush()
        except OSError:  # the helper died; wait() says so
            return


_helper: FigureProcess | None = None
os.register_at_fork(after_in_child=lambda: globals().update(_helper=None))  # a child starts its own


def helper() -> FigureProcess:
    """This process's helper, started (again) when there is none."""
    global _helper
    if _helper is None or not _helper.alive():
        _helper = FigureProcess()
    return _helper


def stop() -> None:
    """End this process's helper now (it would end with the process anyway)."""
    global _helper
    if _helper is not None:
        _helper.close()
        _helper = None


class RunFigures:
    """One run's figures, drawn by the helper into a folder of the run's own."""

    def __init__(self) -> None:
        self.helper = helper()
        self.folder = Path(tempfile.mkdtemp(prefix="ocrexp-figures-"))
        self.files: list[str] = []

    def draw(self, make, artifact_file: str) -> bool:
        """Have ``make()`` drawn as ``artifact_file``; False if it cannot be sent (draw it yourself)."""
        if not self.helper.submit(self.folder / artifact_file, make):
            return False
        self.files.append(artifact_file)
        return True

    def finish(self) -> tuple[list[tuple[str, Path]], list[str]]:
        """Wait for the figures: ``([(artifact_file, png)], [reasons for the ones that failed])``."""
        ended = None if self.helper.wait() else self.helper.last_words()
        drawn, failed = [], []
        for name in self.files:
            png, error = self.folder / name, self.folder / f"{name}.error"
            if png.is_file():
                drawn.append((name, png))
            elif error.is_file():
                failed.append(f"{name}: {error.read_text().strip()}")
            else:
                failed.append(f"{name}: {ended or 'not drawn'}")
        return drawn, failed

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def serve() -> None:
    """Draw every job read from stdin, answering a line for each, until stdin closes."""
    answers = os.fdopen(os.dup(1), "w")  # the answers' own channel: whatever else prints goes to the log
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import matplotlib.pyplot as plt  # now, while the run trains, not when the first figure is due

    from ocrexp.plots import SAVE_KWARGS

    jobs = sys.stdin.buffer
    while True:
        try:
            target, make = pickle.load(jobs)
        except EOFError:
            return
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            figure = pickle.loads(make)()
            try:
                figure.savefig(target, **SAVE_KWARGS)  # as RunTracker saves a figure it draws itself
            finally:
                plt.close(figure)
        except Exception as exc:  # reported by the run, which fails as it would have drawing inline
            Path(f"{target}.error").write_text(f"{type(exc).__name__}: {exc}")
        answers.write("done\n")
        answers.flush()


if __name__ == "__main__":
    serve()
