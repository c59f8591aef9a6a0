"""Resumable training: per-epoch checkpoints, a rerun or ``ocrexp resume`` going on from the last
finished epoch in the same MLflow run, and a retried sweep trial going on from its checkpoint.

The end-to-end cases kill real ``ocrexp-train`` processes (SIGKILL, SIGTERM) once the checkpoint on
disk says the wanted epoch is saved, and compare with an uninterrupted run of the same command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ocrexp import checkpoints
from ocrexp.config import compose
from tests.project import BIN, Project

# Four epochs of 4,800 images: long enough to kill between epochs, short enough for the suite.
COMMAND = ("ocrexp-train", "debug=fast", "dataset.limit_train=6000", "trainer.epochs=4",
           "trainer.deterministic=true", "tracking.log_model=false", "tracking.log_plots=false")
COMPARED = ("loss", "accuracy", "val_loss", "val_accuracy")


# -- units ----------------------------------------------------------------------------------------
def test_the_key_is_the_composed_config_without_how_to_treat_checkpoints():
    base = compose("debug=fast")
    assert checkpoints.config_key(base) == checkpoints.config_key(
        compose("debug=fast", "trainer.resume=never", "trainer.keep_checkpoint=true", "trainer.verbose=0",
                "paths.checkpoint_dir=/elsewhere"))
    assert checkpoints.config_key(base) != checkpoints.config_key(compose("debug=fast", "seed=1"))
    assert checkpoints.config_key(base) != checkpoints.config_key(base, study="a-study")


def _cfg(tmp_path: Path, *overrides: str):
    return compose("debug=fast", f"paths.checkpoint_dir={tmp_path}", *overrides)


def test_state_round_trips_and_a_half_written_file_never_replaces_the_last_one(tmp_path):
    slot = checkpoints.claim(_cfg(tmp_path))
    progress = checkpoints.Progress(epoch=2, history={"loss": [1.0, 0.5]}, best=float("inf"))
    slot.save(progress, {"model": [np.arange(3.0), np.ones((2, 2), np.float32)]})
    # A writer killed mid-write leaves only its temporary file behind.
    (slot.folder / f".{checkpoints.STATE}.999.tmp").write_bytes(b"PK\x03\x04 half a zip")
    back = slot.read()
    assert back.progress.epoch == 2 and back.progress.history == {"loss": [1.0, 0.5]}
    assert back.progress.best == float("inf")
    np.testing.assert_array_equal(back.group("model")[1], np.ones((2, 2)))
    slot.finish()
    assert not slot.folder.exists()


def test_an_unreadable_state_file_is_ignored_with_a_warning(tmp_path, caplog):
    slot = checkpoints.claim(_cfg(tmp_path))
    slot.state_file.write_bytes(b"not a checkpoint")
    slot.release()
    again = checkpoints.claim(_cfg(tmp_path))
    assert again.resumed is None and "ignoring the unreadable checkpoint" in caplog.text
    again.release()


def test_a_live_run_keeps_its_folder_and_a_second_run_of_the_config_gets_its_own(tmp_path):
    cfg = _cfg(tmp_path)
    first = checkpoints.claim(cfg)
    first.save(checkpoints.Progress(epoch=1), {})
    # Another process: the lock is per open file description, so a child process tells the truth.
    code = ("import sys; from ocrexp import checkpoints; from ocrexp.config import compose; "
            f"s = checkpoints.claim(compose('debug=fast', 'paths.checkpoint_dir={tmp_path}')); "
            "print(s.folder.name, s.resumed is not None)")
    out = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [f"{first.folder.name}.1", "False"]
    assert checkpoints.held_by(first.folder) == os.getpid()
    first.release()
    assert checkpoints.held_by(first.folder) is None
    resumed = checkpoints.claim(cfg)
    assert resumed.folder == first.folder and resumed.resumed.progress.epoch == 1
    resumed.release()
    fresh = checkpoints.claim(_cfg(tmp_path, "trainer.resume=never"))
    assert fresh.folder == first.folder and fresh.resumed is None and not fresh.state_file.exists()
    fresh.release()


def test_a_sweep_trial_resumes_only_the_checkpoint_of_the_trial_it_retries(tmp_path):
    cfg = _cfg(tmp_path)
    slot = checkpoints.claim(cfg, study="s", trial=3)
    slot.save(checkpoints.Progress(epoch=2, trial=3), {})
    slot.release()
    other = checkpoints.claim(cfg, study="s", trial=5, retry_of=None)  # a first attempt: a folder of its own
    assert other.resumed is None and other.folder != slot.folder
    retry = checkpoints.claim(cfg, study="s", trial=6, retry_of=3)
    assert retry.folder == slot.folder and retry.resumed.progress.epoch == 2
    other.release(), retry.release()


def test_each_epochs_order_depends_on_the_seed_and_the_epoch_alone():
    from ocrexp.data.pipeline import EpochStream

    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1)
    y = np.arange(20) % 10

    def epoch_order(stream, epoch):
        stream.begin(epoch)
        pixels = np.concatenate([images.numpy().reshape(-1) for images, _ in stream.dataset])
        return (pixels * 255).round().astype(int)  # each image's one pixel is its index

    from_start = EpochStream(x, y, batch_size=8, num_classes=10, scale=255.0, seed=7)
    orders = [epoch_order(from_start, e) for e in range(3)]
    assert all(sorted(o) == list(range(20)) for o in orders) and len({tuple(o) for o in orders}) == 3
    resumed = EpochStream(x, y, batch_size=8, num_classes=10, scale=255.0, seed=7, first_epoch=2)
    np.testing.assert_array_equal(epoch_order(resumed, 2), orders[2])


# -- end to end -----------------------------------------------------------------------------------
def _saved_epoch(root: Path) -> tuple[int, bool]:
    """The furthest epoch any checkpoint under ``root`` holds, and whether its phase had ended."""
    best = (0, False)
    for state in root.glob(f"checkpoints/*/{checkpoints.STATE}"):
        found = checkpoints.read_state(state)
        if found is not None:
            best = max(best, (found.progress.epoch, found.progress.phase_done))
    return best


def _kill_when(project: Project, command, sig: int, reached) -> subprocess.CompletedProcess:
    """Run ``command`` and send it ``sig`` once ``reached(epoch, phase_done)`` holds for its checkpoint."""
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)
    proc = subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=project.root, env=project.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if reached(*_saved_epoch(project.root)):
                proc.send_signal(sig)
                break
            time.sleep(0.02)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode in (-signal.SIGKILL, 143), f"the run was not stopped: exit {proc.returncode}\n{stderr}"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _history(project: Project, run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = project.client()
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in COMPARED}


@pytest.mark.slow
@pytest.mark.parametrize("placement", [(), ("trainer.strategy=mirrored", "trainer.cpu_replicas=2")],
                         ids=["one-device", "mirrored"])
def test_a_run_killed_after_epoch_2_of_4_resumes_to_exactly_the_uninterrupted_metrics(project, placement):
    command = (*COMMAND, *placement, "run_name=resumed")
    killed = _kill_when(project, command, signal.SIGKILL, lambda epoch, done: epoch >= 2)
    (run,) = project.runs()
    assert run.info.status == "RUNNING"  # nobody could end it
    saved = _saved_epoch(project.root)[0]
    assert 2 <= saved < 4, killed.stdout

    again = project.run(*command)
    assert f"resuming run {run.info.run_id} at epoch {saved + 1} of 4 from its checkpoint " in again.stdout
    assert "Epoch 1/4" not in again.stdout
    (run,) = project.runs()
    assert run.info.status == "FINISHED" and "ocrexp.error" not in run.data.tags
    assert run.data.tags["ocrexp.resumed_at_epoch"] == str(saved + 1)
    assert not list(project.root.glob("checkpoints/*/"))  # removed when the run finished

    project.run(*COMMAND, *placement, "run_name=uninterrupted")
    resumed, whole = sorted(project.runs(), key=lambda r: r.info.run_name != "resumed")
    assert _history(project, resumed.info.run_id) == _history(project, whole.info.run_id)
    assert all(len(v) == 4 for v in _history(project, resumed.info.run_id).values())  # each epoch once
    for name in ("test_accuracy", "test_loss"):
        assert resumed.data.metrics[name] == whole.data.metrics[name], name


@pytest.mark.slow
def test_sigterm_mid_training_ends_killed_and_ocrexp_resume_finishes_the_same_run(project):
    _kill_when(project, COMMAND, signal.SIGTERM, lambda epoch, done: epoch >= 1)
    (run,) = project.runs()
    assert run.info.status == "KILLED"

    out = project.run("ocrexp", "resume", run.info.run_id).stdout
    assert f"resuming run {run.info.run_id} at epoch " in out
    (run,) = project.runs()
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    assert [s for s, _ in _history(project, run.info.run_id)["loss"]] == [1, 2, 3, 4]

    again = project.run("ocrexp", "resume", run.info.run_id, check=False)
    assert again.returncode == 2 and again.stderr.strip() == (
        f"error: run {run.info.run_id} has no checkpoint to resume (it finished); "
        f"`ocrexp reproduce {run.info.run_id}` trains its config anew.")


def _logging_a_model(project: Project) -> bool:
    """Whether a run of the project has begun logging a model (MLflow creates it PENDING first)."""
    exp = project.client().get_experiment_by_name("ocrexp")
    return exp is not None and bool(project.client().search_logged_models([exp.experiment_id], max_results=1))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["after training", "during model logging"])
def test_a_run_killed_after_training_resumes_at_the_test_evaluation_and_logs_the_model_once(project, moment):
    command = (*COMMAND[:-2], "trainer.epochs=2")
    if moment == "after training":  # as soon as the last epoch is saved: test evaluation or plots
        _kill_when(project, command, signal.SIGKILL, lambda epoch, done: epoch == 2 and done)
    else:
        _kill_when(project, command, signal.SIGKILL, lambda epoch, done: done and _logging_a_model(project))
    again = project.run(*command)
    (run,) = project.runs()
    assert f"resuming run {run.info.run_id} at the test evaluation" in again.stdout
    assert "Epoch " not in again.stdout
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    assert run.data.tags["ocrexp.model_uri"] == f"runs:/{run.info.run_id}/model"
    exp = project.client().get_experiment_by_name("ocrexp").experiment_id
    models = project.client().search_logged_models([exp], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert sorted((m.name, m.status.name) for m in models) == [("model", "READY"), ("reader", "READY")]


@pytest.mark.slow
def test_a_retried_sweep_trial_resumes_its_checkpoint_and_reports_each_epoch_once(project, mnist):
    from tests.toy_sweep import kill_group, load_study

    command = ["ocrexp-train", "-m", "hparams_search=cnn_optuna", *COMMAND[1:], "hydra.sweeper.sampler=grid",
               "hydra.sweeper.n_trials=1", "optimizer.lr=choice(3e-3)", "model.conv1_filters=choice(16)",
               "model.conv2_filters=choice(32)", "model.dense_units=choice(64)", "model.dropout=choice(0.2)"]
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)
    proc = subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=project.root, env=project.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while _saved_epoch(project.root)[0] < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        kill_group(proc)  # the sweep and its trial's worker, as a lost node would
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    saved = _saved_epoch(project.root)[0]
    assert 2 <= saved < 4

    project.run(*command, timeout=600)
    study = load_study(project.root)
    first, retry = sorted(study.trials, key=lambda t: t.number)
    assert first.state.name == "FAIL" and retry.state.name == "COMPLETE"
    assert retry.user_attrs["ocrexp.retry_of"] == first.number
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]  # epochs 1..saved replayed once, then trained
    # The kill can land after an epoch's checkpoint and before that epoch's report (the checkpoint is
    # written first, so that nothing reported is lost): the dead trial then lacks the epoch, and the
    # retry replays it from the checkpoint all the same.
    reported = [s for s in range(1, saved + 1) if s in first.intermediate_values]
    assert reported[:1] == [1] and len(reported) >= saved - 1
    assert [retry.intermediate_values[s] for s in reported] == [first.intermediate_values[s] for s in reported]
    runs = {r.data.tags.get("optuna.trial_number"): r for r in project.runs()}
    old, new = runs[str(first.number)], runs[str(retry.number)]
    assert new.data.tags["ocrexp.resumed_from"] == old.info.run_id
    assert new.data.tags["ocrexp.resumed_at_epoch"] == str(saved + 1)
    assert [s for s, _ in _history(project, new.info.run_id)["loss"]] == [1, 2, 3, 4]
    assert not list(project.root.glob("checkpoints/*/"))


def test_the_checkpoint_folder_config_composes_back_to_the_same_key(tmp_path):
    from ocrexp.config import OcrexpConf, register

    cfg = _cfg(tmp_path, "model=cnn_bn", "seed=3")
    slot = checkpoints.claim(cfg)
    register()
    back = OmegaConf.merge(OmegaConf.structured(OcrexpConf), OmegaConf.load(slot.folder / checkpoints.CONFIG))
    assert checkpoints.config_key(back) == checkpoints.config_key(cfg)
    slot.release()


def test_the_resume_line_says_where_training_goes_on(tmp_path):
    from ocrexp.train import resume_line

    cfg = _cfg(tmp_path, "trainer.epochs=4")
    line = resume_line(cfg, checkpoints.Progress(epoch=2, run_id="abc"), tmp_path)
    assert line == f"resuming run abc at epoch 3 of 4 from its checkpoint {tmp_path}"
    stopped_early = checkpoints.Progress(epoch=2, phase_done=True, run_id="abc")  # early stopping ended it
    assert " at the test evaluation " in resume_line(cfg, stopped_early, tmp_path)
