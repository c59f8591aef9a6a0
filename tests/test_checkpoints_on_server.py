"""Checkpoints follow the run: with a tracking server, a run's checkpoint is stored with the run, so
another machine goes on from it.

Each "machine" is a project folder with its own dataset cache; the two share nothing but an ``mlflow
server`` on 127.0.0.1 (``--serve-artifacts``). The first is killed (``kill -9`` of its process group)
once the server holds its epoch-2 checkpoint, and its folder is deleted; the second resumes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.project import BIN, Project
from tests.servers import start_mlflow_server, stop_mlflow_server
from tests.test_resume import COMMAND, COMPARED
from tests.test_sweeper import postgres_url  # noqa: F401  (the fixture: a throw-away PostgreSQL server)

pytestmark = pytest.mark.slow


def machine(root: Path, shared_data_dir: Path) -> Project:
    """A project folder with a dataset cache of its own (a copy of the shared one)."""
    data = root / "data"
    data.mkdir(parents=True)
    for name in ("mnist.npz", "mnist.manifest.json"):
        shutil.copy(shared_data_dir / name, data / name)
    return Project(root)


def env(project: Project, uri: str) -> dict[str, str]:
    return project.env(MLFLOW_TRACKING_URI=uri, OCREXP_DATA_DIR=str(project.root / "data"))


def history(client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in COMPARED}


def stored_epoch(uri: str, run_id: str) -> int:
    from ocrexp.tracking import checkpoint_artifacts

    found = checkpoint_artifacts.pointer(uri, run_id)
    return found["epoch"] if found else 0


def kill_when_stored(project: Project, uri: str, command, epoch: int) -> str:
    """Start ``command`` in ``project``, ``kill -9`` its process group once the server holds the
    checkpoint of ``epoch``; the run's id."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    proc = subprocess.Popen([str(BIN / command[0]), *command[1:]], cwd=project.root, env=env(project, uri),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run_id = None
    try:
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            experiment = client.get_experiment_by_name("ocrexp")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            run_id = runs[0].info.run_id if runs else None
            if run_id and stored_epoch(uri, run_id) >= epoch:
                break
            time.sleep(0.1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself: exit {proc.returncode}\n{stderr[-3000:]}"
    assert run_id is not None
    return run_id


def test_a_run_killed_on_one_machine_resumes_on_another_from_its_checkpoint_on_the_server(
        tmp_path, shared_data_dir, mnist):
    import mlflow

    server = start_mlflow_server(tmp_path / "server")
    try:
        first = machine(tmp_path / "first", shared_data_dir)
        second = machine(tmp_path / "second", shared_data_dir)
        client = mlflow.MlflowClient(server.uri)
        run_id = kill_when_stored(first, server.uri, (*COMMAND, "run_name=resumed"), epoch=2)
        saved = stored_epoch(server.uri, run_id)
        assert 2 <= saved < 4
        shutil.rmtree(first.root)  # the first machine is gone, its checkpoint folder with it

        out = second.run("ocrexp", "resume", run_id, **env(second, server.uri)).stdout
        assert f"resuming run {run_id} at epoch {saved + 1} of 4 from its checkpoint {second.root}" in out, out
        assert "Epoch 1/4" not in out
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["ocrexp.resumed_at_epoch"] == str(saved + 1)
        assert client.list_artifacts(run_id, "checkpoint") == []  # removed from the server when the run ended
        assert not list(second.root.glob("checkpoints/*/"))

        second.run(*COMMAND, "run_name=uninterrupted", **env(second, server.uri))
        (whole,) = client.search_runs([run.info.experiment_id], "attributes.run_name = 'uninterrupted'")
        resumed = history(client, run_id)
        assert resumed == history(client, whole.info.run_id)
        assert all([s for s, _ in v] == [1, 2, 3, 4] for v in resumed.values())  # each epoch logged once
        for name in ("test_accuracy", "test_loss"):
            assert run.data.metrics[name] == whole.data.metrics[name], name
    finally:
        stop_mlflow_server(server)


def test_a_trial_whose_worker_was_killed_is_retried_by_the_other_worker_from_its_checkpoint_on_the_server(
        tmp_path, shared_data_dir, mnist, postgres_url):  # noqa: F811
    """Two sweep workers in folders of their own on one PostgreSQL study: ``kill -9`` of one worker's
    process group once its trial's epoch 2 is on the server; the other reaps the orphan, re-queues it
    and runs the retry, which goes on from that checkpoint."""
    import mlflow
    import optuna

    from tests.toy_sweep import kill_group

    storage = postgres_url
    server = start_mlflow_server(tmp_path / "server")
    sweep = ["ocrexp-train", "-m", "hparams_search=cnn_optuna", *COMMAND[1:], "hydra.sweeper.sampler=grid",
             f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=killed", "hydra.sweeper.n_trials=2",
             "optimizer.lr=choice(3e-3)", "model.conv1_filters=choice(16)", "model.conv2_filters=choice(32)",
             "model.dense_units=choice(32,64)", "model.dropout=choice(0.2)"]
    procs = []
    try:
        client = mlflow.MlflowClient(server.uri)
        workers = [machine(tmp_path / f"worker{i}", shared_data_dir) for i in (1, 2)]
        for w in workers:
            procs.append(subprocess.Popen([str(BIN / sweep[0]), *sweep[1:]], cwd=w.root, env=env(w, server.uri),
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          start_new_session=True))
        doomed, survivor = procs
        victim = None
        deadline = time.time() + 400
        while victim is None and doomed.poll() is None and time.time() < deadline:
            experiment = client.get_experiment_by_name("ocrexp")
            for run in client.search_runs([experiment.experiment_id]) if experiment else []:
                pid = run.data.tags.get("ocrexp.pid")
                if pid and _in_group(int(pid), doomed.pid) and stored_epoch(server.uri, run.info.run_id) >= 2:
                    victim = run
            time.sleep(0.1)
        kill_group(doomed)  # the worker and its trial's job, as a lost machine would
        doomed.wait(timeout=30)
        assert victim is not None, "the first worker's trial never stored epoch 2"
        saved = stored_epoch(server.uri, victim.info.run_id)
        assert 2 <= saved < 4
        shutil.rmtree(workers[0].root)
        out = survivor.communicate(timeout=600)[0]
        assert survivor.returncode == 0, out[-3000:]

        study = optuna.load_study(study_name="killed", storage=storage.replace("postgresql://", "postgresql+psycopg2://"))
        number = int(victim.data.tags["optuna.trial_number"])
        (retry,) = [t for t in study.trials if t.user_attrs.get("ocrexp.retry_of") == number]
        assert study.trials[number].state.name == "FAIL" and retry.state.name == "COMPLETE"
        assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
        (new,) = client.search_runs([victim.info.experiment_id], f"tags.`optuna.trial_number` = '{retry.number}'")
        assert new.data.tags["ocrexp.resumed_from"] == victim.info.run_id
        assert new.data.tags["ocrexp.resumed_at_epoch"] == str(saved + 1)
        assert [s for s, _ in history(client, new.info.run_id)["loss"]] == [1, 2, 3, 4]  # each epoch once
        assert client.list_artifacts(new.info.run_id, "checkpoint") == []
        assert client.list_artifacts(victim.info.run_id, "checkpoint") == []  # the retry's, now done
    finally:
        for p in procs:
            kill_group(p)
        stop_mlflow_server(server)


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False
