"""Run figures drawn by the process's helper (``ocrexp.tracking.figures``)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ocrexp import plots
from ocrexp.tracking import figures
from ocrexp.tracking.figures import RunFigures

CURVES = functools.partial(plots.learning_curves, {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
BROKEN = functools.partial(plots.learning_curves, None)


@pytest.fixture(autouse=True)
def own_helper():
    """Each test starts and ends this process's helper (it would otherwise live as long as pytest)."""
    figures.stop()
    yield
    figures.stop()


def test_runs_share_one_helper_that_draws_what_each_sends_and_reports_what_failed(tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("def figure():\n    raise AssertionError('never called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # this process's path only: the helper cannot import it
    import only_here

    first = RunFigures()
    assert first.draw(CURVES, "plots/curves.png")
    assert first.draw(BROKEN, "plots/broken.png")
    assert first.draw(only_here.figure, "plots/elsewhere.png")
    assert not first.draw(lambda: None, "plots/lambda.png")  # not picklable: the caller draws it itself
    drawn, failed = first.finish()
    assert [name for name, _ in drawn] == ["plots/curves.png"]
    assert drawn[0][1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [reason.split(":")[:2] for reason in failed] == [["plots/broken.png", " AttributeError"],
                                                            ["plots/elsewhere.png", " ModuleNotFoundError"]]
    first.discard()
    assert not first.folder.exists()

    second = RunFigures()  # the next run (a sweep worker's next trial): same helper, its own folder
    assert second.helper is first.helper and second.folder != first.folder
    assert second.draw(CURVES, "plots/curves.png")
    assert [name for name, _ in second.finish()[0]] == ["plots/curves.png"]
    second.discard()


def test_a_helper_that_died_is_reported_for_the_run_and_replaced_for_the_next(tmp_path):
    run = RunFigures()
    run.helper.process.kill()
    run.helper.process.wait()
    assert run.draw(CURVES, "plots/curves.png")
    drawn, failed = run.finish()
    assert drawn == [] and failed == ["plots/curves.png: the figure process ended with status -9"]
    assert RunFigures().helper is not run.helper


def test_signals_to_the_runs_process_group_do_not_reach_the_helper():
    run = RunFigures()
    assert os.getpgid(run.helper.process.pid) != os.getpgid(0)  # Ctrl-C goes to the terminal's group


def test_the_helper_ends_when_its_process_is_killed():
    script = textwrap.dedent("""
        import time
        from ocrexp.tracking.figures import RunFigures
        print(RunFigures().helper.process.pid, flush=True)
        time.sleep(60)
    """)
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper_pid = int(run.stdout.readline())
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{helper_pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[-1].split()[0] == "Z":  # exited, not yet reaped
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the figure helper {helper_pid} outlived its process")


def test_a_figure_that_cannot_be_drawn_fails_the_run_and_names_it(tmp_path):
    import mlflow

    from ocrexp.config import compose
    from ocrexp.errors import OcrexpError
    from ocrexp.tracking import RunTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose(f"tracking.uri={uri}", "tracking.log_plots=true")
    with pytest.raises(OcrexpError, match=r"a figure could not be drawn: plots/broken.png: AttributeError.*; "
                                          r"tracking.log_plots=false skips the figures$"):
        with RunTracker(cfg, "figures") as tracker:
            tracker.log_figure(CURVES, "plots/curves.png")
            tracker.log_figure(BROKEN, "plots/broken.png")
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([tracker.experiment_id])
    assert run.info.status == "FAILED" and "plots/broken.png" in run.data.tags["ocrexp.error"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]
