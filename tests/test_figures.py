"""Run figures drawn by the run's helper process (``ocrexp.tracking.figures``)."""

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
from ocrexp.tracking.figures import FigureProcess

CURVES = functools.partial(plots.learning_curves, {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})


def test_the_helper_draws_what_it_is_sent_and_reports_what_failed(tmp_path, monkeypatch):
    (tmp_path / "only_here.py").write_text("def figure():\n    raise AssertionError('never called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # this process's path only: the helper cannot import it
    import only_here

    helper = FigureProcess()
    try:
        assert helper.draw(CURVES, "plots/curves.png")
        assert helper.draw(functools.partial(plots.learning_curves, None), "plots/broken.png")
        assert helper.draw(only_here.figure, "plots/elsewhere.png")
        assert not helper.draw(lambda: None, "plots/lambda.png")  # not picklable: the caller draws it itself
        drawn, failed = helper.finish()
        assert [name for name, _ in drawn] == ["plots/curves.png"]
        assert drawn[0][1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert [reason.split(":")[:2] for reason in failed] == [["plots/broken.png", " AttributeError"],
                                                                ["plots/elsewhere.png", " ModuleNotFoundError"]]
        assert helper.process.returncode == 0
    finally:
        helper.discard()
    assert not helper.folder.exists()


def test_signals_to_the_runs_process_group_do_not_reach_the_helper():
    helper = FigureProcess()
    try:
        assert os.getpgid(helper.process.pid) != os.getpgid(0)  # Ctrl-C goes to the terminal's group
    finally:
        helper.finish()
        helper.discard()


def test_the_helper_ends_when_the_run_is_killed(tmp_path):
    script = textwrap.dedent("""
        import sys, time
        from ocrexp.tracking.figures import FigureProcess
        helper = FigureProcess()
        print(helper.process.pid, flush=True)
        time.sleep(60)
    """)
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper_pid = int(run.stdout.readline())
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(helper_pid, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{helper_pid}/stat") as stat:  # reaped by init only when it exits: zombie = ended
            if stat.read().split(")")[-1].split()[0] == "Z":
                break
        time.sleep(0.1)
    else:
        pytest.fail(f"the figure helper {helper_pid} outlived its run")


def test_a_figure_that_cannot_be_drawn_fails_the_run_and_names_it(tmp_path):
    import mlflow

    from ocrexp.config import compose
    from ocrexp.tracking import RunTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose(f"tracking.uri={uri}", "tracking.log_plots=true")
    with pytest.raises(RuntimeError, match=r"a figure could not be drawn: plots/broken.png: AttributeError"):
        with RunTracker(cfg, "figures") as tracker:
            tracker.log_figure(CURVES, "plots/curves.png")
            tracker.log_figure(functools.partial(plots.learning_curves, None), "plots/broken.png")
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([tracker.experiment_id])
    assert run.info.status == "FAILED" and "plots/broken.png" in run.data.tags["ocrexp.error"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/curves.png"]
