"""End to end on a real one-node SLURM cluster: ``hydra/launcher=slurm`` runs every Optuna trial as its
own SLURM job (``scripts/slurm-one-node start`` brings the cluster up; ``.ci/run`` does it in CI).

Missing Debian packages skip the tests on a developer's machine and fail them under CI, like every
system-package test. A cluster that is not up skips them everywhere, CI included, with the reason:
SLURM's daemons cannot start on every machine that can install them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.project import REPO, Project
from tests.system_packages import require

pytestmark = pytest.mark.slow

# One node, CPU only: a core and 2 GB per trial, so that two trials run side by side on two cores.
ONE_NODE = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.gpus_per_node=null",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]
SWEEP = ["ocrexp-train", "-m", "hparams_search=cnn_optuna", "debug=fast", "tracking.log_model=false",
         "tracking.log_plots=false", *ONE_NODE]


@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip unless SLURM is installed, slurmctld answers and sacct has accounting to read."""
    for package, program in [("slurmctld", "slurmctld"), ("slurmd", "slurmd"), ("slurm-client", "sbatch"),
                             ("munge", "munged")]:
        require(package, shutil.which(program) is not None)
    status = subprocess.run([str(REPO / "scripts" / "slurm-one-node"), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        reason = status.stderr.strip().splitlines()[-1].removeprefix("slurm-one-node: ")
        pytest.skip(f"no one-node SLURM cluster is up here ({reason}): sudo scripts/slurm-one-node start")


@pytest.fixture(autouse=True)
def no_job_left_behind(project):
    """Cancel the test's SLURM jobs at its end: they outlive a sweep that a failing test killed."""
    yield
    if ids := job_ids(project):
        subprocess.run(["scancel", *ids], capture_output=True)


def job_ids(project: Project) -> list[str]:
    """The ids of the SLURM jobs the project's sweeps submitted (submitit's folder per job)."""
    return sorted((p.name for p in project.root.glob("multirun/*/*/.submitit/*") if p.name.isdigit()), key=int)


def slurm_jobs(project: Project) -> dict[str, dict[str, str]]:
    """The sweep's SLURM jobs as sacct records them: job id -> {State, Start, End}."""
    ids = job_ids(project)
    if not ids:
        return {}
    out = subprocess.run(["sacct", "-X", "--noheader", "--parsable2", "-o", "JobID,State,Start,End",
                          "-j", ",".join(ids)], capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return {job: {"State": state, "Start": start, "End": end} for job, state, start, end in rows}


def most_at_once(jobs: dict[str, dict[str, str]]) -> int:
    """The largest number of jobs that ran at the same time (a job ending frees its slot first)."""
    events = sorted([(datetime.fromisoformat(j["Start"]), 1) for j in jobs.values()]
                    + [(datetime.fromisoformat(j["End"]), -1) for j in jobs.values()])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def results(project: Project) -> dict:
    (path,) = project.root.glob("multirun/*/*/optimization_results.yaml")
    return yaml.safe_load(path.read_text())


def test_every_trial_is_a_slurm_job_two_at_a_time_and_the_study_tracks_n_trials_runs(slurm, project, mnist):
    project.run(*SWEEP, "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2", timeout=600)

    counts = results(project)["counts"]
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 3 and not counts.get("FAIL"), counts
    runs = project.runs()
    (parent,) = [r for r in runs if r.data.tags.get("ocrexp.role") == "optuna-study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == [0, 1, 2]
    assert all(r.info.status == "FINISHED" for r in children)

    jobs = slurm_jobs(project)
    assert [j["State"] for j in jobs.values()] == ["COMPLETED"] * 3, jobs
    # Each of the sweeper's n_jobs threads waits on its own job: two jobs ran side by side.
    assert most_at_once(jobs) == 2, jobs


def test_scancel_of_a_trial_ends_its_run_killed_and_the_sweep_runs_the_trial_again(slurm, project, mnist):
    from ocrexp.tracking.store import ensure_store
    from tests.project import BIN

    ensure_store(project.tracking_uri)
    sweep = subprocess.Popen([str(BIN / SWEEP[0]), *SWEEP[1:], "trainer.epochs=10", "hydra.sweeper.n_trials=1",
                              "hydra.sweeper.n_jobs=1"],
                             cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and sweep.poll() is None:
            if any(r.info.status == "RUNNING" and "val_accuracy" in r.data.metrics for r in project.runs()):
                break
            time.sleep(0.5)
        (cancelled,) = slurm_jobs(project)
        subprocess.run(["scancel", cancelled], check=True)
        out, err = sweep.communicate(timeout=480)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, out[-3000:] + err[-3000:]

    counts = results(project)["counts"]
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 1 and counts["FAIL"] == 1, counts
    trials = sorted((r for r in project.runs() if "optuna.trial_number" in r.data.tags),
                    key=lambda r: int(r.data.tags["optuna.trial_number"]))
    assert [r.info.status for r in trials] == ["KILLED", "FINISHED"]
    assert trials[0].data.params == trials[1].data.params  # the same trial, queued again

    jobs = slurm_jobs(project)
    assert jobs[cancelled]["State"].startswith("CANCELLED"), jobs
    assert [j["State"] for job, j in jobs.items() if job != cancelled] == ["COMPLETED"], jobs


def test_a_trial_job_killed_outright_is_queued_again_and_its_run_closed_as_failed(slurm, project, mnist):
    # SIGKILL to the job's training process, as the out-of-memory killer sends it: no result, no chance
    # to end its run. The sweep queues the trial again; the next run closes the dead one.
    from ocrexp.tracking.store import ensure_store
    from tests.project import BIN

    ensure_store(project.tracking_uri)
    sweep = subprocess.Popen([str(BIN / SWEEP[0]), *SWEEP[1:], "trainer.epochs=10", "hydra.sweeper.n_trials=1",
                              "hydra.sweeper.n_jobs=1"],
                             cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.time() + 240
        running = []
        while time.time() < deadline and sweep.poll() is None and not running:
            running = [r for r in project.runs() if r.info.status == "RUNNING" and "val_accuracy" in r.data.metrics]
            time.sleep(0.5)
        (killed,) = slurm_jobs(project)
        os.kill(int(running[0].data.tags["ocrexp.pid"]), signal.SIGKILL)
        out, err = sweep.communicate(timeout=480)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, out[-3000:] + err[-3000:]
    assert "trial 0: its job ended without a result (UncompletedJobError: " in out + err, out[-3000:] + err[-3000:]

    counts = results(project)["counts"]
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 1 and counts["FAIL"] == 1, counts
    trials = sorted((r for r in project.runs() if "optuna.trial_number" in r.data.tags),
                    key=lambda r: int(r.data.tags["optuna.trial_number"]))
    assert [r.info.status for r in trials] == ["FAILED", "FINISHED"]
    assert "the process died" in trials[0].data.tags["ocrexp.error"]
    assert trials[0].data.params == trials[1].data.params  # the same trial, queued again
    assert trials[1].data.tags["ocrexp.resumed_from"] == trials[0].info.run_id  # from its checkpoint
    assert int(trials[1].data.tags["ocrexp.resumed_at_epoch"]) >= 2
    jobs = slurm_jobs(project)
    assert jobs[killed]["State"] != "COMPLETED" and len(jobs) == 2, jobs

