"""End to end: ``ocrexp-train -m hparams_search=cnn_optuna`` on real MNIST (``debug=fast``).

Four trials, two at a time, on a 2x2 grid where one learning rate (1e-5) cannot reach 50% validation
accuracy after one epoch: a threshold pruner stops those two after their first epoch, the other two
train both epochs. The MLflow store must then hold one parent run with the study's results and
plots, and four child runs tagged with their trial numbers and states.
"""

from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_cnn_optuna_sweep_prunes_and_records_parent_and_child_runs(project, mnist):
    proc = project.run(
        "ocrexp-train", "-m", "hparams_search=cnn_optuna", "debug=fast", "trainer.epochs=2",
        "optimizer.lr=choice(1e-5,3e-3)", "model.dense_units=choice(32,64)",
        "model.conv1_filters=16", "model.conv2_filters=32", "model.dropout=0.2", "tracking.log_model=false",
        "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 0.5}", timeout=600)

    (results_file,) = project.root.glob("multirun/*/*/optimization_results.yaml")
    results = yaml.safe_load(results_file.read_text())
    assert results["counts"]["COMPLETE"] == 2 and results["counts"]["PRUNED"] == 2
    assert results["best_params"]["optimizer.lr"] == 3e-3 and results["best_value"] > 0.5

    runs = project.runs()
    (parent,) = [r for r in runs if r.data.tags.get("ocrexp.role") == "optuna-study"]
    assert parent.info.run_id == results["mlflow_parent_run_id"] and parent.info.status == "FINISHED"
    assert parent.data.params["space.optimizer.lr"] == "choice of [1e-05, 0.003]"
    assert parent.data.metrics["trials_complete"] == 2 and parent.data.metrics["trials_pruned"] == 2
    assert parent.data.metrics["best_value"] == pytest.approx(results["best_value"])
    artifacts = {a.path for a in project.client().list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/optimization_history.png", "plots/intermediate_values.png"} <= artifacts

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == [0, 1, 2, 3]
    states = {}
    for child in children:
        assert child.info.status == "FINISHED"
        lr = float(child.data.params["optimizer.lr"])
        states[lr] = states.get(lr, []) + [child.data.tags["ocrexp.trial_state"]]
        epochs = len(project.client().get_metric_history(child.info.run_id, "val_accuracy"))
        assert epochs == (1 if lr == 1e-5 else 2)
    assert states == {1e-5: ["PRUNED", "PRUNED"], 3e-3: ["COMPLETE", "COMPLETE"]}

    # The terminal shows the sweep's header, a line per trial and a summary; the launcher's lines
    # and each trial's own output go to log files.
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("[") and " trial " in line for line in lines) == 4, proc.stdout
    assert lines[0].startswith("Optuna study") and lines[-1].startswith("Study "), proc.stdout
    for noise in ("Launching", "env_set", "Joblib", "Epoch", "test_accuracy=", "\x1b["):
        assert noise not in proc.stdout + proc.stderr, noise
    (sweep_log,) = project.root.glob("multirun/*/*/sweep.log")
    assert "Launching" in sweep_log.read_text() or "Joblib" in sweep_log.read_text()


def test_a_sweep_trains_every_trial_data_parallel_in_reused_workers(project, mnist):
    # Joblib's workers run several trials each: every trial must get a working MirroredStrategy.
    project.run("ocrexp-train", "-m", "hparams_search=cnn_optuna", "debug=fast", "trainer.strategy=mirrored",
                "trainer.cpu_replicas=2", "tracking.log_model=false", "tracking.log_plots=false",
                "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1", timeout=600)
    (results_file,) = project.root.glob("multirun/*/*/optimization_results.yaml")
    assert yaml.safe_load(results_file.read_text())["counts"]["COMPLETE"] == 4
    children = [r for r in project.runs() if "optuna.trial_number" in r.data.tags]
    assert len(children) == 4 and all(r.data.tags["ocrexp.replicas"] == "2" for r in children)


def test_sigterm_to_a_sweep_ends_it_and_its_running_trials_killed_and_queues_them_again(project, mnist):
    """``kill`` (SIGTERM) reaches only the sweep's process, which passes it on to the running jobs as
    Ctrl-C. Each job ends its run KILLED and returns; the sweep waits for them before it exits (joblib
    used to end one job's worker mid-cleanup, leaving its run RUNNING)."""
    import signal
    import subprocess
    import time

    from ocrexp.tracking.store import ensure_store
    from tests.project import BIN

    ensure_store(project.tracking_uri)
    proc = subprocess.Popen([str(BIN / "ocrexp-train"), "-m", "hparams_search=cnn_optuna", "debug=fast",
                             "trainer.epochs=30", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                             "tracking.log_model=false", "tracking.log_plots=false"],
                            cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            training = [r for r in project.runs() if r.info.status == "RUNNING" and "val_accuracy" in r.data.metrics]
            if len(training) == 2:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    runs = project.runs()
    (parent,) = [r for r in runs if r.data.tags.get("ocrexp.role") == "optuna-study"]
    trials = [r for r in runs if r is not parent]
    numbers = ", ".join(sorted(r.data.tags["optuna.trial_number"] for r in trials))
    assert f"Interrupted: trials {numbers} marked FAIL and queued again; run the same command again to resume" in out
    assert parent.info.status == "KILLED"
    assert [(r.info.status, r.data.tags["ocrexp.error"]) for r in trials] == [("KILLED", "interrupted (Ctrl-C)")] * 2
    assert "2 FAIL, 2 WAITING" in out  # the interrupted trials, and their parameters queued again
