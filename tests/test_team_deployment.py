"""The team deployment, as the README's "Several machines" shows it, started whole on 127.0.0.1.

PostgreSQL holds two databases: MLflow's (behind an ``mlflow server`` that also serves the
artifacts) and the Optuna study's. Two sweep workers, each in a project folder of its own with its
own dataset cache, share nothing on disk: they meet only in the study and on the tracking server.
A third folder then lists, reproduces and uses their runs through the server alone.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.project import BIN
from tests.servers import start_mlflow_server, stop_mlflow_server, wait_until
from tests.test_browser import browser, row_of, shoot, text_is, visible  # noqa: F401  (browser: the fixture)
from tests.test_checkpoints_on_server import env, machine
from tests.test_sweeper import postgres_url  # noqa: F401  (the fixture: a throw-away PostgreSQL server)
from tests.toy_sweep import kill_group

pytestmark = pytest.mark.slow
N_TRIALS = 4


def create_database(url: str, name: str) -> str:
    """A new database on the server of ``url``; its URL."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True  # CREATE DATABASE refuses to run in a transaction
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return url.rsplit("/", 1)[0] + f"/{name}"


def test_two_workers_on_one_postgresql_study_and_one_tracking_server_run_each_trial_once(
        tmp_path, shared_data_dir, postgres_url, browser):  # noqa: F811
    import mlflow
    import optuna

    backend = create_database(postgres_url, "mlflow").replace("postgresql://", "postgresql+psycopg2://")
    # The server trusts local connections, so any password works: it must not reach the tracking server.
    storage = create_database(postgres_url, "optuna").replace("postgres@", "postgres:hush-hush@")
    server = start_mlflow_server(tmp_path / "server", backend)
    try:
        workers = [machine(tmp_path / f"worker{i}", shared_data_dir) for i in (1, 2)]
        sweep = ["ocrexp-train", "-m", "hparams_search=cnn_optuna", "debug=fast", f"hydra.sweeper.storage={storage}",
                 "hydra.sweeper.study_name=team", f"hydra.sweeper.n_trials={N_TRIALS}"]
        client = mlflow.MlflowClient(server.uri)
        procs = []
        try:
            for w in workers:
                procs.append(subprocess.Popen([str(BIN / sweep[0]), *sweep[1:]], cwd=w.root, env=env(w, server.uri),
                                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                              start_new_session=True))
                # The second starts once the first has logged the study's parent run: two workers opening
                # it at the same instant collide on its params in a PostgreSQL-backed MLflow (the sweeper
                # checks, then inserts).
                assert wait_until(lambda: procs[0].poll() is not None or parent_ready(client), timeout=300)
            outputs = [p.communicate(timeout=900)[0] for p in procs]
        finally:
            for p in procs:
                kill_group(p)
        for p, out in zip(procs, outputs):
            assert p.returncode == 0, out[-3000:]

        study = optuna.load_study(study_name="team", storage=storage.replace("postgresql://", "postgresql+psycopg2://"))
        finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(finished) == N_TRIALS
        others = [t for t in study.trials if t not in finished]
        assert all(t.state.name == "FAIL" and t.user_attrs["ocrexp.fail_kind"] == "surplus" for t in others)

        experiment = client.get_experiment_by_name("ocrexp")
        runs = client.search_runs([experiment.experiment_id])
        trial_runs = [r for r in runs if "optuna.trial_number" in r.data.tags]
        numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in trial_runs)
        assert numbers == sorted(t.number for t in finished)  # every trial ran, none twice
        for run in trial_runs:
            assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
            plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
            assert "plots/learning_curves.png" in plots
            models = client.search_logged_models([experiment.experiment_id],
                                                 filter_string=f"source_run_id = '{run.info.run_id}'")
            assert {m.name for m in models if m.status.name == "READY"} >= {"model"}
            assert client.list_artifacts(run.info.run_id, "checkpoint") == []  # removed when the run ended
            logged = Path(client.download_artifacts(run.info.run_id, "hydra", str(tmp_path / run.info.run_id)))
            texts = [f.read_text() for f in logged.iterdir()] + [*run.data.tags.values(), *run.data.params.values()]
            assert "hush-hush" not in "".join(texts) and storage.replace("hush-hush", "***") in "".join(texts)

        # A third machine, with nothing but the server's address.
        third = machine(tmp_path / "third", shared_data_dir)
        listed = third.run("ocrexp", "runs", "--json", **env(third, server.uri)).stdout
        assert {r["run_id"] for r in json.loads(listed)} >= {r.info.run_id for r in trial_runs}
        best = max(trial_runs, key=lambda r: r.data.metrics["val_accuracy"])
        prefix = best.info.run_id[:8]
        reproduced = third.run("ocrexp", "reproduce", prefix, timeout=600, **env(third, server.uri)).stdout
        assert f"source run {best.info.run_id} -> new run " in reproduced
        image = third.root / "digit.png"
        write_test_digit(shared_data_dir, image)
        read = third.run("ocrexp", "predict", "--model", f"runs:/{prefix}/model", "--json", str(image),
                         **env(third, server.uri)).stdout
        assert len(json.loads(read)) == 1, read
        ui_shows_the_sweep_and_a_trials_confusion_matrix(browser, server.uri, client, trial_runs, best, tmp_path)
    finally:
        stop_mlflow_server(server)


def ui_shows_the_sweep_and_a_trials_confusion_matrix(driver, uri: str, client, trial_runs, best, tmp_path) -> None:
    """The tracking server's own MLflow UI, as a teammate opens it: the study's parent run with its
    trials nested under it, and a trial's confusion matrix served from the server's artifacts."""
    from PIL import Image

    experiment_id = best.info.experiment_id
    driver.get(f"{uri}/#/experiments/{experiment_id}?workflowType=machine_learning")
    (parent_id,) = {r.data.tags["mlflow.parentRunId"] for r in trial_runs}
    parent = client.get_run(parent_id)
    parent_row = row_of(visible(driver, f"//a[{text_is(parent.info.run_name)}]"))
    assert parent_row.get_attribute("row-id") == parent_id
    parent_row.find_element(By.TAG_NAME, "button").click()  # unfold the sweep: its trials are nested runs
    for run in trial_runs:
        assert row_of(visible(driver, f"//a[{text_is(run.info.run_name)}]")).get_attribute("row-id") == run.info.run_id
    shoot(driver, "team-1-runs")

    driver.get(f"{uri}/#/experiments/{experiment_id}/runs/{best.info.run_id}/artifacts/plots/confusion_matrix.png")
    image = visible(driver, "//img[@alt='plots/confusion_matrix.png']")
    size = WebDriverWait(driver, 60).until(
        lambda d: image.get_property("complete") and image.get_property("naturalWidth"),
        "the confusion matrix did not load from the server")
    local = client.download_artifacts(best.info.run_id, "plots/confusion_matrix.png", str(tmp_path))
    with Image.open(local) as png:
        assert (size, image.get_property("naturalHeight")) == png.size
    shoot(driver, "team-2-confusion-matrix")


def parent_ready(client) -> bool:
    experiment = client.get_experiment_by_name("ocrexp")
    parents = client.search_runs([experiment.experiment_id], "tags.`ocrexp.role` = 'optuna-study'") if experiment else []
    return bool(parents) and "optuna.storage" in parents[0].data.params and "ocrexp.role" in parents[0].data.tags


def write_test_digit(data_dir, path) -> None:
    from PIL import Image

    with np.load(data_dir / "mnist.npz") as f:
        Image.fromarray(f["x_test"][0]).save(path)
