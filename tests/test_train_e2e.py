"""Real ``ocrexp-train`` runs (debug=fast on MNIST) and what they leave in a real MLflow store."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.project import BIN
from tests.training import mlflow_env_kept

pytestmark = pytest.mark.slow


def artifacts(client, run_id: str, path: str = "") -> set[str]:
    out = set()
    for f in client.list_artifacts(run_id, path):
        out |= artifacts(client, run_id, f.path) if f.is_dir else {f.path}
    return out


def test_run_records_params_metrics_artifacts_and_tags(trained):
    project, run_id = trained
    client = project.client()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "fixture"
    p = run.data.params
    assert p["trainer.epochs"] == "1" and p["model.dropout"] == "0.5" and p["optimizer.lr"] == "0.001"
    assert p["dataset.limit_train"] == "2000" and p["trainer.deterministic"] == "True"
    m = run.data.metrics
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "test_accuracy", "test_loss"):
        assert key in m, key
    assert m["test_accuracy"] > 0.6 and m["params"] == 225_034 and m["lr"] == pytest.approx(1e-3)
    assert [h.step for h in client.get_metric_history(run_id, "val_accuracy")] == [1]
    t = run.data.tags
    assert t["ocrexp.overrides"] == "debug=fast trainer.deterministic=true run_name=fixture"
    assert t["ocrexp.dataset"] == "mnist" and len(t["ocrexp.dataset.checksum"]) == 64
    assert {"ocrexp.tensorflow_version", "ocrexp.keras_version", "ocrexp.version", "ocrexp.device"} <= set(t)
    assert t["ocrexp.device"].startswith(("cpu", "gpu"))
    files = artifacts(client, run_id)
    assert {"config.yaml", "config.resolved.yaml", "dataset.json", "hydra/config.yaml", "hydra/overrides.yaml",
            "hydra/hydra.yaml", "plots/learning_curves.png", "plots/confusion_matrix.png",
            "plots/misclassified.png"} <= files
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.artifact_location.startswith((project.root / "mlruns").as_uri())


def test_logged_model_loads_with_signature_and_predicts(trained, mnist):
    import mlflow

    project, run_id = trained
    with mlflow_env_kept():  # set_tracking_uri exports MLFLOW_TRACKING_URI: later tests must not see it
        mlflow.set_tracking_uri(project.tracking_uri)
        try:
            info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
        finally:
            mlflow.set_tracking_uri(None)
    assert info.signature is not None and info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 28, 28, 1)
    assert info.signature.outputs.to_dict()[0]["tensor-spec"] == {"dtype": "float32", "shape": (-1, 10)}
    from ocrexp.models.io import load_model

    model = load_model(f"runs:/{run_id}/model", project.tracking_uri)
    probs = model.predict(mnist.x_test[:200].astype("float32") / 255, verbose=0)
    assert probs.shape == (200, 10) and np.mean(probs.argmax(1) == mnist.y_test[:200]) > 0.6


@pytest.mark.parametrize("name", ["model", "reader"])
def test_logged_models_serve_their_input_example_and_pin_this_environment(trained, name):
    """Runs skip MLflow's serving-input check when they log (ocrexp.compat.mlflow.log_model): this
    test makes it, with MLflow's own function, on what a run logged."""
    from importlib.metadata import version

    import mlflow
    from mlflow.models import validate_serving_input

    project, run_id = trained
    with mlflow_env_kept():
        mlflow.set_tracking_uri(project.tracking_uri)
        try:
            local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{name}"))
            predictions = validate_serving_input(str(local), (local / "serving_input_example.json").read_text())
        finally:
            mlflow.set_tracking_uri(None)
    assert len(predictions) == (4 if name == "model" else 1)
    requirements = (local / "requirements.txt").read_text().split()
    assert f"tensorflow=={version('tensorflow')}" in requirements and f"mlflow=={version('mlflow')}" in requirements


def test_the_reader_ships_the_keras_flavors_file_and_clean_code(trained):
    """The model is saved once per run: the reader's artifact is the Keras flavor's file, byte for byte
    (a second save would differ, if only in its timestamp); its code is the package without caches."""
    import mlflow

    project, run_id = trained
    with mlflow_env_kept():
        mlflow.set_tracking_uri(project.tracking_uri)
        try:
            model = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
            reader = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/reader"))
        finally:
            mlflow.set_tracking_uri(None)
    shipped = list((reader / "artifacts").glob("*.keras"))
    assert len(shipped) == 1 and shipped[0].read_bytes() == (model / "data" / "model.keras").read_bytes()
    code = reader / "code" / "ocrexp"
    assert (code / "reading" / "served_model.py").is_file() and not list(code.rglob("__pycache__"))


def test_eval_records_a_linked_run(trained):
    project, run_id = trained
    proc = project.run("ocrexp-eval", f"model_uri=runs:/{run_id}/model", "dataset.limit_test=500")
    assert "test_accuracy=" in proc.stdout and "on 500 mnist test images" in proc.stdout
    run = [r for r in project.runs() if r.data.tags.get("ocrexp.source_run_id") == run_id][-1]
    assert run.info.status == "FINISHED" and run.data.metrics["test_accuracy"] > 0.6
    assert run.data.tags["mlflow.source.name"] == "ocrexp-eval"
    assert "plots/confusion_matrix.png" in artifacts(project.client(), run.info.run_id)


def test_reproduce_in_deterministic_mode_gives_identical_metrics(trained):
    project, run_id = trained
    proc = project.run("ocrexp", "reproduce", run_id)
    assert "identical metrics" in proc.stdout
    client = project.client()
    new = [r for r in project.runs() if r.data.tags.get("ocrexp.reproduced_from") == run_id][-1]
    old = client.get_run(run_id).data.metrics
    for key in ("loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        assert new.data.metrics[key] == old[key], key


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_export_writes_a_file_that_predicts_the_same(trained, tmp_path, suffix, mnist):
    import keras

    from ocrexp.models.io import load_model

    project, run_id = trained
    out = tmp_path / f"cnn_model{suffix}"
    project.run("ocrexp", "export", run_id, str(out))
    x = mnist.x_test[:64].astype("float32") / 255
    logged = load_model(f"runs:/{run_id}/model", project.tracking_uri).predict(x, verbose=0)
    exported = keras.models.load_model(out, safe_mode=True, compile=False).predict(x, verbose=0)
    np.testing.assert_allclose(exported, logged, atol=1e-6)


def test_raising_run_ends_failed_with_the_error_as_a_tag(project):
    # Inputs scaled by 1e-30 overflow to inf, so the loss is NaN after the first epoch.
    proc = project.run("ocrexp-train", "debug=fast", "dataset.scale=1e-30", "tracking.log_model=false", check=False)
    assert proc.returncode != 0
    (run,) = project.runs()
    assert run.info.status == "FAILED"
    assert "loss became nan" in run.data.tags["ocrexp.error"].lower()


def test_sigterm_ends_the_run_killed(project):
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)  # so that polling below never races the job's first migration
    proc = subprocess.Popen([str(BIN / "ocrexp-train"), "debug=fast", "trainer.epochs=50"], cwd=project.root,
                            env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = project.runs()
            if runs and project.client().get_metric_history(runs[0].info.run_id, "val_accuracy"):
                break
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    (run,) = project.runs()
    assert run.info.status == "KILLED" and proc.returncode == 143
    assert run.data.tags["ocrexp.error"] == "terminated (SIGTERM)"
    err = proc.stderr.read()
    assert "Traceback" not in err and err.strip().endswith(
        f"terminated (SIGTERM): run {run.info.run_id} ended as KILLED; run the same command again to go on from "
        "its last finished epoch"), err


def test_multirun_sweeps_overrides_into_separate_runs(project):
    project.run("ocrexp-train", "-m", "debug=fast", "trainer.batch_size=64,128", "tracking.log_model=false")
    runs = project.runs()
    assert sorted(r.data.params["trainer.batch_size"] for r in runs) == ["128", "64"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert (project.root / "multirun").is_dir()



def test_mirrored_strategy_trains_data_parallel_on_two_cpu_replicas(project):
    proc = project.run("ocrexp-train", "debug=fast", "trainer.strategy=mirrored", "trainer.cpu_replicas=2",
                       "tracking.log_model=false")
    assert proc.stdout.splitlines()[0].endswith(", 2 replicas"), proc.stdout
    (run,) = project.runs()
    assert run.info.status == "FINISHED" and run.data.tags["ocrexp.replicas"] == "2"
    assert run.data.metrics["test_accuracy"] > 0.5


def test_an_unreachable_tracking_server_is_one_sentence_before_training(project):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = project.run("ocrexp-train", "debug=fast", f"tracking.uri=http://127.0.0.1:{port}", check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: the MLflow tracking server http://127.0.0.1:{port} does not answer")
    assert "\n" not in proc.stderr.strip() and proc.stdout == ""  # no header: nothing was loaded or trained


def test_a_run_killed_with_sigkill_is_closed_failed_when_ocrexp_next_touches_the_store(project):
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)
    proc = subprocess.Popen([str(BIN / "ocrexp-train"), "debug=fast", "trainer.epochs=50", "tracking.log_model=false"],
                            cwd=project.root, env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            runs = project.runs()
            if runs and len(project.client().get_metric_history(runs[0].info.run_id, "loss")) >= 2:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    (run,) = project.runs()
    assert run.info.status == "RUNNING"  # nobody could end it
    epochs = len(project.client().get_metric_history(run.info.run_id, "loss"))
    project.run("ocrexp", "runs")
    (run,) = project.runs()
    assert run.info.status == "FAILED"
    error = run.data.tags["ocrexp.error"]
    assert error.startswith(f"the process died: its process (pid {proc.pid} on ")
    assert f"the last epoch it finished was {epochs}; `ocrexp resume {run.info.run_id}` (or the same command) goes " \
           "on from its checkpoint" in error
