"""Run figures drawn by a helper process, so that importing matplotlib and drawing (about 0.8 s of a
``debug=fast`` run) take nothing from the training process: the helper starts with the run, imports
matplotlib while the model trains, and draws each figure it is sent into a folder; the run logs the
files when it ends.

A figure is sent as a picklable function and its arguments (``functools.partial(plots.confusion_matrix,
y, y_pred, names)``); the helper writes ``<folder>/<artifact_file>``, or ``<artifact_file>.error``
with the reason. It reads jobs until its input closes, so it ends with the run, or soon after the
run's process dies. It runs in a session of its own, so that Ctrl-C in the terminal and signals to
the run's process group reach only the run, which decides what an interruption means.

    python -m ocrexp.tracking.figures FOLDER      # the helper; jobs are pickles on its stdin
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
    """The helper process of one run."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ocrexp-figures-"))
        self.files: list[str] = []
        with open(self.folder / "helper.log", "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "ocrexp.tracking.figures", str(self.folder)],
                                            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "MPLBACKEND": "Agg"},
                                            start_new_session=True)  # Ctrl-C is for the run, not for it
        # A thread feeds the helper: a job larger than the pipe would block the run while the
        # helper is still drawing the one before.
        self._jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._feeder = threading.Thread(target=self._feed, name="ocrexp-figures", daemon=True)
        self._feeder.start()

    def draw(self, make, artifact_file: str) -> bool:
        """Send ``make`` (a picklable function returning a figure); False if it cannot be sent."""
        try:  # the name travels apart, so that a function the helper cannot import is still reported
            job = pickle.dumps((artifact_file, pickle.dumps(make)))
        except (pickle.PicklingError, AttributeError, TypeError):  # a lambda or a closure
            return False
        self._jobs.put(job)
        self.files.append(artifact_file)
        return True

    def _feed(self) -> None:
        with self.process.stdin as pipe:
            while (job := self._jobs.get()) is not None:
                try:
                    pipe.write(job)
                    pipe.flush()
                except OSError:  # the helper died; finish() says so
                    return

    def finish(self) -> tuple[list[tuple[str, Path]], list[str]]:
        """Wait for the figures: ``([(artifact_file, png)], [reasons for the ones that failed])``."""
        self._jobs.put(None)
        self._feeder.join()
        self.process.wait()
        drawn, failed = [], []
        for name in self.files:
            png, error = self.folder / name, self.folder / f"{name}.error"
            if png.is_file():
                drawn.append((name, png))
            elif error.is_file():
                failed.append(f"{name}: {error.read_text().strip()}")
            else:
                log = (self.folder / "helper.log").read_text(errors="replace").strip().splitlines()
                failed.append(f"{name}: the figure process ended with status {self.process.returncode}"
                              + (f" ({log[-1]})" if log else ""))
        return drawn, failed

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def serve(folder: Path) -> None:
    """Draw every job read from stdin into ``folder`` until stdin closes."""
    import matplotlib.pyplot as plt  # now, while the run trains, not when the first figure is due

    jobs = sys.stdin.buffer
    while True:
        try:
            artifact_file, make = pickle.load(jobs)
        except EOFError:
            return
        target = folder / artifact_file
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            figure = pickle.loads(make)()
            try:
                figure.savefig(target)  # as mlflow's log_figure saves a matplotlib figure
            finally:
                plt.close(figure)
        except Exception as exc:  # reported by the run, which fails as it would have drawing inline
            Path(f"{target}.error").write_text(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
