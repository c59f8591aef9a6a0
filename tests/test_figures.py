"""Run figures: drawn and logged on the run's background thread while the run goes on."""

from __future__ import annotations

import functools
import threading

import pytest

from ocrexp import plots

CURVES = functools.partial(plots.learning_curves, {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6]})
BROKEN = functools.partial(plots.learning_curves, None)


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
            tracker.log_figure(lambda: CURVES(), "plots/again.png")  # any function: it never leaves the process
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([tracker.experiment_id])
    assert run.info.status == "FAILED" and "plots/broken.png" in run.data.tags["ocrexp.error"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/again.png", "plots/curves.png"]


def test_a_figure_is_drawn_while_the_run_goes_on_and_logged_before_it_ends(tmp_path):
    import mlflow

    from ocrexp.config import compose
    from ocrexp.tracking import RunTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    released = threading.Event()

    def after_the_run_moved_on():
        assert released.wait(60), "log_figure waited for its figure"
        return CURVES()

    with RunTracker(compose(f"tracking.uri={uri}", "tracking.log_plots=true"), "figures") as tracker:
        tracker.log_figure(after_the_run_moved_on, "plots/curves.png")
        released.set()
    client = mlflow.MlflowClient(uri)
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(tracker.run_id, "plots")] == ["plots/curves.png"]
