"""What users see on the terminal: ocrexp's lines and Keras' epoch lines, no library chatter."""

from __future__ import annotations

import logging
import re

import pytest

from ocrexp import console

CHATTER = ("absl::InitializeLog", "I0000", "E0000", "oneDNN", "cuda", "cuInit", "fontManager", "INFO mlflow",
           "Downloading artifacts", "\x1b[")


@pytest.mark.slow
def test_a_run_prints_a_header_epoch_lines_and_a_summary_with_the_runs_link(trained):
    project, run_id = trained
    out = (project.root / "train.stdout").read_text()
    err = (project.root / "train.stderr").read_text()
    for noise in CHATTER:
        assert noise not in out + err, noise
    lines = out.splitlines()
    assert re.fullmatch(r"fixture: cnn \(225,034 params\) on mnist \(1,600 train / 400 val / 1,000 test images\), "
                        r"1 epoch, cpu:\d+ cores", lines[0]), lines[0]
    assert re.match(r"25/25 - .* - accuracy: [\d.]+ - loss: [\d.]+ - val_accuracy: [\d.]+ - val_loss", lines[1])
    experiment = project.client().get_run(run_id).info.experiment_id
    assert lines[-1].startswith("test_accuracy=")
    assert lines[-1].endswith(f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"
                              "?workflowType=machine_learning (ocrexp ui)")  # the UI's model-training views
    assert len(lines) == 3, out


def record(name: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


def test_the_console_shows_ocrexp_lines_and_warnings_and_hides_library_info(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    shown = console.ConsoleFilter().filter
    assert shown(record("ocrexp.train")) and shown(record("hydra_plugins.ocrexp_optuna_sweeper._impl"))
    assert not shown(record("mlflow.store")) and not shown(record("hydra.core.utils"))
    assert shown(record("mlflow.store", logging.WARNING))
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    assert shown(record("hydra.core.utils"))


def test_tensorflows_retracing_warning_of_a_sweep_worker_stays_off_the_console(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    retraced = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, "5 out of the last 9 calls to "
                                 "<function f> triggered tf.function retracing. Tracing is expensive", None, None)
    assert not console.ConsoleFilter().filter(retraced)
    assert console.ConsoleFilter().filter(record("tensorflow", logging.WARNING))  # other warnings still show
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    assert console.ConsoleFilter().filter(retraced)


def test_inside_a_trial_the_runs_own_lines_stay_in_its_log_file(monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    job_console = logging.NullHandler()  # as Hydra sets up a job's console (conf/hydra/job_logging)
    job_console.addFilter(console_filter := console.ConsoleFilter())
    monkeypatch.setattr(logging.getLogger(), "handlers", [job_console])
    shown = console_filter.filter
    with console.run_lines_shown(False):  # what ocrexp-train's task function says for a sweep's trial
        assert not shown(record("ocrexp.train"))
        assert shown(record("hydra_plugins.ocrexp_optuna_sweeper._impl"))
        assert shown(record("ocrexp.train", logging.ERROR))
    assert shown(record("ocrexp.train"))  # once the trial's job is over


def test_warnings_of_other_libraries_name_their_logger():
    fmt = console.ConsoleFormatter()
    assert fmt.format(record("ocrexp.train")) == "message"
    assert fmt.format(record("mlflow.store", logging.WARNING)) == "warning [mlflow.store]: message"


@pytest.mark.parametrize("failing", [False, True])
def test_tensorflow_startup_lines_are_dropped_and_anything_else_is_kept(capfd, failing):
    import os

    try:
        with console.tensorflow_chatter_hidden():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                        b"I0000 00:00:1.2 123 port.cc:153] oneDNN custom operations are on.\n"
                        b"E0000 00:00:1.3 123 cuda_executor.cc:1] failed call to cuInit: UNKNOWN ERROR (303)\n"
                        b"a real problem\n")
            if failing:
                raise ImportError("broken install")
    except ImportError:
        pass
    err = capfd.readouterr().err
    assert "a real problem" in err
    assert ("oneDNN" in err) == failing  # a failed import shows everything, to explain itself
