"""The Optuna sweeper plugin: search-space syntax, samplers, and real multiruns of a tiny task.

The sweeps here run a trivial Hydra app (no TensorFlow) through the real plugin and the joblib
launcher, so they take seconds; ``test_sweeper_e2e.py`` runs ``ocrexp-train`` itself.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from omegaconf import OmegaConf

from hydra_plugins.ocrexp_optuna_sweeper import _search_space
from hydra_plugins.ocrexp_optuna_sweeper._errors import SweeperError
from hydra_plugins.ocrexp_optuna_sweeper._sampler import make_sampler
from hydra_plugins.ocrexp_optuna_sweeper._study import check_pruner
from ocrexp.config import compose
from ocrexp.pruning import make_pruner
from ocrexp.sweep_protocol import FAIL_KIND, RETRY_OF
from tests.system_packages import require
from tests.toy_sweep import by_state, events, kill_group, load_study, start_sweep, sweep


optuna.logging.set_verbosity(optuna.logging.WARNING)

# -- search space ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("choice(16, 32, 64)", CategoricalDistribution([16, 32, 64])),
    ("relu,tanh", CategoricalDistribution(["relu", "tanh"])),
    ("range(32, 128, 32)", IntDistribution(32, 128, step=32)),
    ("range(1, 10, 4)", IntDistribution(1, 9, step=4)),
    ("range(0.2, 0.5, 0.1)", FloatDistribution(0.2, 0.5, step=0.1)),
    ("interval(0.1, 0.5)", FloatDistribution(0.1, 0.5)),
    ("int(interval(1, 4))", IntDistribution(1, 4)),
    ("tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("tag(log, int(interval(8, 512)))", IntDistribution(8, 512, log=True)),
    ("shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3])),
    ({"type": "float", "low": 0.1, "high": 1, "log": True}, FloatDistribution(0.1, 1.0, log=True)),
    ({"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}, FloatDistribution(0.0, 0.5, step=0.1)),
    ({"type": "int", "low": 1, "high": 9, "step": 2}, IntDistribution(1, 9, step=2)),
    ({"type": "categorical", "choices": ["a", "b"]}, CategoricalDistribution(["a", "b"])),
    ({"choices": [1, 2]}, CategoricalDistribution([1, 2])),
])
def test_each_search_space_form_maps_to_its_optuna_distribution(value, expected):
    space = _search_space.build({"model.k": value}, [])
    dist = space.distributions["model.k"]
    if isinstance(expected, CategoricalDistribution):
        assert sorted(dist.choices, key=str) == sorted(expected.choices, key=str)
    else:
        assert dist == expected


def test_fixed_values_and_command_line_overrides_replace_params_entries():
    space = _search_space.build(
        {"a": "choice(1, 2)", "b": "interval(0, 1)", "c": 3, "d": "cnn", "+e.f": "choice(x, y)"},
        ["a=7", "b=tag(log, interval(1e-3, 1e-1))", "model=cnn", "g=range(1, 3)"])
    assert sorted(space.distributions) == ["b", "e.f", "g"]
    assert space.distributions["b"] == FloatDistribution(1e-3, 1e-1, log=True)
    assert space.fixed == ["c=3", "d=cnn", "a=7", "model=cnn"]
    overrides = space.overrides({"b": 0.01, "e.f": "y", "g": 2})
    assert overrides == ["c=3", "d=cnn", "a=7", "model=cnn", "b=0.01", "+e.f=y", "g=2"]


def test_stepped_floats_reach_the_config_without_float_noise():
    space = _search_space.build({"model.dropout": "range(0.2, 0.5, 0.1)"}, [])
    assert space.overrides({"model.dropout": 0.30000000000000004}) == ["model.dropout=0.3"]
    assert _search_space.grid_values(space) == {"model.dropout": [0.2, 0.3, 0.4, 0.5]}


@pytest.mark.parametrize("text", ["a b", "it's", "x\\", "a\\'b", "${foo}", '{"optuna.study": "s", "n": "3"}',
                                  "postgresql://u:p@127.0.0.1:5432/db", "true", "123", "a,b", "c\\\\'d"])
def test_override_values_read_back_unchanged(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    assert OverridesParser.create().parse_override("k=" + _search_space.format_value(text)).value() == text


@pytest.mark.parametrize("value, needle", [
    ("choice(", "is not a valid search space"),
    ("tag(foo, interval(0, 1))", "tag 'foo'"),
    ("tag(log, interval(0, 1))", "low > 0"),
    ("range(5, 1)", "range needs low <= high"),
    ({"type": "float", "low": 1}, "needs 'high'"),
    ({"kind": "float"}, "unknown key 'kind'"),
    ({"type": "normal", "low": 0, "high": 1}, "not one of float, int, categorical"),
])
def test_a_bad_search_space_is_one_sentence_naming_it(value, needle):
    with pytest.raises(SweeperError) as err:
        _search_space.build({"model.dropout": value}, [])
    message = str(err.value)
    assert needle in message and "model.dropout" in message and "\n" not in message


def test_unknown_sampler_and_pruner_name_the_accepted_ones():
    space = _search_space.build({"x": "interval(0, 1)"}, [])
    with pytest.raises(SweeperError, match=r"'annealing' is not a known sampler: choose one of tpe, random, grid"):
        make_sampler("annealing", 0, space)
    with pytest.raises(Exception, match=r"'patient' is not a known pruner: choose one of hyperband, median"):
        make_pruner("patient")
    with pytest.raises(SweeperError, match="grid sampler needs discrete values but x is float"):
        make_sampler("grid", 0, space)


def test_a_removed_sampler_names_what_to_use_instead(app, tmp_path):
    space = _search_space.build({"x": "interval(0, 1)"}, [])
    for spec in ("rung_tpe", {"name": "rung_tpe", "min_trials": 5}):
        with pytest.raises(SweeperError, match=r"^hydra.sweeper.sampler='rung_tpe' was removed from ocrexp "
                                               r"\(it sampled no better than plain TPE\): use tpe instead\.$"):
            make_sampler(spec, 0, space)
    out = sweep(app, tmp_path, "hydra.sweeper.sampler=rung_tpe", "hydra/launcher=basic", ok=False)
    assert "hydra.sweeper.sampler='rung_tpe' was removed from ocrexp" in out and "Traceback" not in out, out


@pytest.mark.parametrize("name", ["tpe", "random", "grid", "cmaes", "gp", "qmc", "nsgaii", "motpe"])
def test_every_sampler_is_seeded_so_a_sweep_repeats(name):
    needs = {"cmaes": "cmaes", "gp": "torch"}.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        with pytest.raises(SweeperError, match=f"needs the {needs} package"):
            make_sampler(name, 0, _search_space.build({"x": "interval(0, 1)"}, []))
        pytest.skip(f"{needs} is not installed")
    params = {"x": "range(0.0, 1.0, 0.25)", "n": "range(1, 4)"} if name == "grid" else \
        {"x": "interval(0, 1)", "n": "int(interval(1, 4))"}
    space = _search_space.build(params, [])

    def draws(seed):
        study = optuna.create_study(sampler=make_sampler(name, seed, space))
        out = []
        for _ in range(4):
            trial = study.ask(space.distributions)
            study.tell(trial, trial.params["x"] + trial.params["n"])
            out.append(trial.params)
        return out

    assert draws(3) == draws(3)


def test_pruners_build_from_names_and_mappings():
    assert type(make_pruner("none")).__name__ == "NopPruner"
    assert type(make_pruner({"name": "median", "n_startup_trials": 2})).__name__ == "MedianPruner"
    assert type(make_pruner({"name": "successive_halving"})).__name__ == "SuccessiveHalvingPruner"
    hb = make_pruner({"name": "hyperband", "min_resource": 1, "max_resource": 9, "reduction_factor": 3})
    assert type(hb).__name__ == "HyperbandPruner"
    assert type(make_pruner({"_target_": "optuna.pruners.ThresholdPruner", "lower": 0.5})).__name__ == "ThresholdPruner"


@pytest.mark.parametrize("search", ["cnn_optuna", "cnn_optuna_hyperband", "cnn_optuna_rung_rank", "vgg16_optuna"])
def test_shipped_hparams_search_configs_compose_with_the_sweeper(search):
    cfg = compose(f"hparams_search={search}", "trainer.epochs=9", hydra=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("ocrexp_optuna_sweeper.sweeper.OcrexpOptunaSweeper")
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and sweeper.seed == cfg.seed
    space = _search_space.build(sweeper.params, [])
    assert space.distributions["optimizer.lr"].log
    assert space.distributions["model.dropout"] == FloatDistribution(0.2, 0.5, step=0.1)
    if search.startswith("cnn"):
        assert space.distributions["model.conv1_filters"] == IntDistribution(32, 128, step=32)
        assert space.distributions["model.dense_units"] == IntDistribution(64, 256, step=64)
    if search in ("cnn_optuna_hyperband", "vgg16_optuna"):
        assert sweeper.pruner.name == "hyperband" and sweeper.pruner.max_resource == 3
    if search == "cnn_optuna_rung_rank":
        assert make_pruner(sweeper.pruner).rungs == (1, 2) and cfg.schedule._target_.endswith(".cosine")
        sampler = make_sampler(OmegaConf.to_container(sweeper.sampler), 0, space)
        assert type(sampler).__name__ == "TPESampler" and sampler._n_startup_trials == 8


def test_slurm_launcher_config_composes_with_the_sweeper():
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        pytest.skip("hydra-submitit-launcher is not installed")
    cfg = compose("hparams_search=cnn_optuna", "hydra/launcher=slurm", hydra=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
    assert cfg.hydra.sweeper._target_.endswith("OcrexpOptunaSweeper")


# -- sweeps of a trivial task ------------------------------------------------------------------------

def test_parallel_trials_start_as_soon_as_a_slot_frees(app, tmp_path):
    # Trial 0 holds its slot until three other trials have finished. With batches of two that never
    # happens (its batch partner finishes, then the batch waits for it) and it gives up after 120 s;
    # here the free slot keeps taking new trials.
    out = sweep(app, tmp_path, "hydra.sweeper.n_jobs=2", "slow_trial=0", "wait_for_others=3")
    runs = {e["number"]: e for e in events(tmp_path)}
    assert runs.pop(0)["released"] is True, "the other slot did not go on while trial 0 ran"
    assert len(runs) == 5
    study = load_study(tmp_path)
    assert len(by_state(study)["COMPLETE"]) == 6
    assert sum("/6] trial " in line for line in out.splitlines()) == 6
    (results_file,) = tmp_path.glob("multirun/*/optimization_results.yaml")
    import yaml

    results = yaml.safe_load(results_file.read_text())
    assert results["counts"]["COMPLETE"] == 6 and results["best_value"] == pytest.approx(study.best_value)
    assert results["best_params"] == study.best_params


def test_the_pruner_stops_losing_trials_after_a_reported_step(app, tmp_path):
    out = sweep(app, tmp_path, "hydra.sweeper.n_trials=8", "steps=4", "hydra/launcher=basic",
                "hydra.sweeper.pruner={name: median, n_startup_trials: 2, n_warmup_steps: 0}")
    states = by_state(load_study(tmp_path))
    assert len(states["COMPLETE"]) + len(states["PRUNED"]) == 8
    assert states["PRUNED"], "no trial was pruned"
    for trial in states["PRUNED"]:
        assert max(trial.intermediate_values) < 4
    assert " PRUNED in " in out


def test_a_trial_is_never_pruned_after_its_last_epoch_and_a_resumed_one_replays_earlier_epochs(tmp_path):
    import optuna

    from ocrexp.pruning import TrialReporter, open_storage
    from ocrexp.sweep_protocol import PRUNER_ATTR

    url = str(tmp_path / "study.journal")
    study = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    study.set_user_attr(PRUNER_ATTR, {"_target_": "optuna.pruners.ThresholdPruner", "lower": 1.0})  # prunes all
    trial = study.ask()
    reporter = TrialReporter(url, "s", trial._trial_id)
    reporter.replay([0.2, 0.5, 0.4])  # what an earlier attempt trained: reported as best so far, never pruned
    reporter.report(4, 0.6, last=True)  # the final epoch: the trial completes
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 3"):
        TrialReporter(url, "s", study.ask()._trial_id).report(3, 0.9)
    assert study.trials[0].intermediate_values == {1: 0.2, 2: 0.5, 3: 0.5, 4: 0.6}


def test_a_job_killed_without_a_result_is_queued_again_once_and_the_sweep_goes_on(app, tmp_path):
    out = sweep(app, tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "die_at=1")
    study = load_study(tmp_path)
    states = by_state(study)
    assert len(states["COMPLETE"]) == 4, out[-4000:]
    # joblib ends every job of a pool one of whose workers died: the other running trial is lost too.
    lost = {t.number: t for t in states.get("FAIL", []) if t.user_attrs[FAIL_KIND] == "lost"}
    assert 1 in lost and len(states.get("FAIL", [])) == len(lost), out[-4000:]
    for number, trial in lost.items():
        (retry,) = [t for t in states["COMPLETE"] if t.user_attrs.get(RETRY_OF) == number]
        assert retry.params == trial.params
        assert f"trial {number}: its job ended without a result (TerminatedWorkerError: " in out
        assert f"queued again as trial {retry.number}" in out
    assert "Traceback" not in out


def test_a_study_storage_that_stops_answering_interrupts_the_job_instead_of_failing_its_trial(tmp_path):
    # Interrupted, the job's run ends KILLED and keeps its checkpoint (ocrexp.train), so the trial's
    # retry goes on from its last epoch once the storage is back.
    import optuna

    from ocrexp.pruning import TrialReporter, open_storage
    from ocrexp.sweep_protocol import JobInterrupted, TrialEnded

    db = tmp_path / "study.db"
    study = optuna.create_study(study_name="s", storage=open_storage(f"sqlite:///{db}"), direction="maximize")
    reporter = TrialReporter(f"sqlite:///{db}", "s", study.ask()._trial_id)
    reporter.report(1, 0.3)
    with open(db, "r+b") as f:  # the database goes away: its file is no database any more
        f.write(b"gone" * 1024)
    with pytest.raises(JobInterrupted, match=r"^the study's storage stopped answering \(.+\); the trial's "
                                             r"checkpoint is kept for its retry$") as stopped:
        reporter.report(2, 0.4)
    assert not isinstance(stopped.value, TrialEnded)


@pytest.mark.slow
def test_a_job_whose_trial_the_sweep_ended_stops_and_its_run_ends_killed_saying_why(tmp_path):
    # A sweep that took the job for a dead one (or was interrupted) has failed the trial and queued
    # its parameters again: the job's next report is refused, and the job stops with the reason.
    import mlflow
    import optuna

    from hydra_plugins.ocrexp_optuna_sweeper._resume import mark_failed
    from ocrexp.pruning import TrialReporter, open_storage
    from ocrexp.sweep_protocol import TrialEnded
    from ocrexp.tracking import RunTracker

    url = str(tmp_path / "study.journal")
    storage = open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    reporter = TrialReporter(url, "s", trial._trial_id)
    reporter.report(1, 0.3)
    assert mark_failed(study, storage, trial, "orphaned", "left RUNNING: no heartbeat for 130 s", requeue=True) == 1
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(TrialEnded) as ended, RunTracker(compose(f"tracking.uri={uri}"), "trial-0") as tracker:
        reporter.report(2, 0.4)
    assert str(ended.value) == ("the sweep ended trial 0 (FAIL: left RUNNING: no heartbeat for 130 s) "
                                "while this job trained it")
    run = mlflow.MlflowClient(uri).get_run(tracker.run_id)
    assert (run.info.status, run.data.tags["ocrexp.error"]) == ("KILLED", str(ended.value))
    assert study.trials[0].intermediate_values == {1: 0.3}


def sweep_with_shipped_pruner(app, tmp_path, search: str) -> dict:
    """12 toy trials of 9 steps under ``hparams_search=search``'s pruner; the study's trials by state."""
    shipped = compose(f"hparams_search={search}", hydra=True).hydra.sweeper.pruner
    spec = "{" + ", ".join(f"{k}: {v}" for k, v in shipped.items()) + "}"
    sweep(app, tmp_path, "hydra.sweeper.n_trials=12", "steps=9", "hydra/launcher=basic", f"hydra.sweeper.pruner={spec}")
    states = by_state(load_study(tmp_path))
    assert len(states["COMPLETE"]) + len(states["PRUNED"]) == 12
    return states


@pytest.mark.slow
def test_the_shipped_hyperband_config_prunes_most_trials_early(app, tmp_path):
    states = sweep_with_shipped_pruner(app, tmp_path, "cnn_optuna_hyperband")
    assert len(states["PRUNED"]) >= 6, "the shipped Hyperband settings should stop most trials"
    assert all(max(t.intermediate_values) <= 3 for t in states["PRUNED"])  # both brackets decide by epoch 3


@pytest.mark.slow
def test_the_shipped_rung_rank_config_prunes_most_trials_early(app, tmp_path):
    # The toy trials rise linearly, so ranks never change: after the first few, only a trial that
    # beats the quarter of all before it at epoch 1 goes on.
    states = sweep_with_shipped_pruner(app, tmp_path, "cnn_optuna_rung_rank")
    assert len(states["PRUNED"]) >= 8, "the shipped rung_rank settings should stop most trials"
    epochs = sum(len(t.intermediate_values) for t in states["COMPLETE"] + states["PRUNED"])
    assert epochs <= 12 * 9 / 3
    leader = max(states["COMPLETE"] + states["PRUNED"], key=lambda t: t.intermediate_values[1])
    assert leader.state.name == "COMPLETE"  # the best at every rung is never stopped


def test_failing_trials_are_recorded_and_the_sweep_goes_on(app, tmp_path):
    sweep(app, tmp_path, "fail_below=0.3", "nan_above=0.9", "hydra.sweeper.max_failure_rate=1", "hydra/launcher=basic")
    states = by_state(load_study(tmp_path))
    assert len(states["COMPLETE"]) == 6
    reasons = {t.user_attrs["ocrexp.fail_reason"] for t in states["FAIL"]}
    assert any(r.startswith("ValueError: x=") for r in reasons) and "the task returned nan" in reasons


def test_too_many_failures_stop_the_sweep_with_one_sentence(app, tmp_path):
    out = sweep(app, tmp_path, "fail_below=2", "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.5",
                "hydra/launcher=basic", ok=False)
    assert len(by_state(load_study(tmp_path))["FAIL"]) == 3
    (line,) = [ln for ln in out.splitlines() if ln.startswith("The sweep stopped")]
    assert "3 trials" in line and "max_failure_rate=0.5 of n_trials=4 allows (2)" in line and "ValueError" in line


@pytest.mark.slow
def test_two_objectives_give_a_pareto_front(app, tmp_path):
    import yaml

    out = sweep(app, tmp_path, "objectives=2", "optimized_metric=[score,y]",
                "hydra.sweeper.direction=[maximize,minimize]", "hydra.sweeper.n_trials=5", "hydra/launcher=basic")
    study = load_study(tmp_path)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and len(by_state(study)["COMPLETE"]) == 5
    (results_file,) = tmp_path.glob("multirun/*/optimization_results.yaml")
    front = yaml.safe_load(results_file.read_text())["solutions"]
    assert sorted(t["number"] for t in front) == sorted(t.number for t in study.best_trials)
    assert "on the Pareto front" in out
    with pytest.raises(SweeperError, match="cannot prune a study with 2 objectives"):
        check_pruner("median", ["maximize", "minimize"])


@pytest.mark.slow
def test_killed_sweep_resumes_with_exact_trial_count(app, tmp_path):
    tracking = f"+tracking={{enabled: true, uri: 'sqlite:///{tmp_path}/mlflow.db', experiment_name: sweeps}}"
    args = ["hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2", "sleep=1", tracking]
    proc = start_sweep(app, tmp_path, *args)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.5)
            if glob.glob(str(tmp_path / "mlruns" / "optuna" / "*.journal")):
                states = by_state(load_study(tmp_path))
                if len(states.get("COMPLETE", [])) >= 2 and states.get("RUNNING"):
                    break
        else:
            pytest.fail("the sweep never had 2 complete and 1 running trial")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        kill_group(proc)
    killed = by_state(load_study(tmp_path))
    orphans = {t.number for t in killed["RUNNING"]}
    parent_id = load_study(tmp_path).user_attrs["ocrexp.mlflow_parent_run_id"]

    out = sweep(app, tmp_path, *args)
    study = load_study(tmp_path)
    states = by_state(study)
    assert len(states["COMPLETE"]) == 8 and "RUNNING" not in states and "WAITING" not in states
    assert {t.number for t in states["FAIL"]} == orphans
    assert all(t.user_attrs["ocrexp.fail_kind"] == "orphaned" for t in states["FAIL"])
    retried = [t for t in states["COMPLETE"] if "ocrexp.retry_of" in t.user_attrs]
    assert sorted(t.user_attrs["ocrexp.retry_of"] for t in retried) == sorted(orphans)
    assert "was left RUNNING" in out
    # Every COMPLETE trial ran exactly once; numbers are unique by construction in Optuna.
    ran = [e["number"] for e in events(tmp_path) if e["number"] not in orphans]
    assert sorted(ran) == sorted(t.number for t in states["COMPLETE"])
    # The resumed study kept its MLflow parent run and finished it.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.get_run(parent_id)
    assert study.user_attrs["ocrexp.mlflow_parent_run_id"] == parent_id
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_complete"] == 8
    assert parent.data.tags["ocrexp.role"] == "optuna-study"
    exp = client.get_experiment_by_name("sweeps")
    assert len(client.search_runs([exp.experiment_id], "tags.`ocrexp.role` = 'optuna-study'")) == 1


@pytest.mark.slow
def test_ctrl_c_to_a_sweep_waits_for_its_jobs_and_keeps_the_results_they_finish(app, tmp_path):
    # Ctrl-C reached the sweep alone, and its jobs run on to their last step: each slot tells its
    # trial's result before the sweep fails whatever is still running, so no job has its trial
    # ended under it (CI once saw UpdateFinishedTrialError fail a KILLED run that way).
    # Many trials, so that the Ctrl-C cannot arrive as the sweep ends on its own (it once came while
    # the last two reported, and the finished sweep exited 0).
    proc = start_sweep(app, tmp_path, "hydra.sweeper.n_trials=40", "hydra.sweeper.n_jobs=2", "steps=8", "sleep=0.5")
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.2)
            if glob.glob(str(tmp_path / "mlruns" / "optuna" / "*.journal")):
                states = by_state(load_study(tmp_path))
                running = states.get("RUNNING", [])
                if len(running) == 2 and all(t.intermediate_values for t in running) \
                        and len(states.get("COMPLETE", [])) < 30:
                    break
        else:
            pytest.fail("the sweep never had 2 trials reporting at once")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        kill_group(proc)
    assert proc.returncode == 130, out[-4000:]
    states = by_state(load_study(tmp_path))
    assert {t.number for t in states["COMPLETE"]} >= {t.number for t in running} and "FAIL" not in states, out[-4000:]
    assert "Interrupted: no trial was left running; run the same command again to resume" in out
    assert "UpdateFinishedTrialError" not in out


# -- several workers on one PostgreSQL study --------------------------------------------------------

def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return versions[-1] if versions else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (run as the ``postgres`` user when we are root)."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    require("postgresql", bool(initdb and pg_ctl))
    base = Path(tempfile.mkdtemp(prefix="ocrexp-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C"], check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o", options, "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_four_sweeps_started_together_share_one_study_and_one_mlflow_parent(app, tmp_path, request, storage):
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else None
    mlflow_uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # Every trial waits until trials run in two sweep processes at once, so the sweeps must share.
    args = ["hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=12", "hydra/launcher=basic", "rendezvous=2",
            f"+tracking={{enabled: true, uri: '{mlflow_uri}', experiment_name: ocrexp}}",
            *([f"hydra.sweeper.storage={url}"] if url else [])]
    workers = [start_sweep(app, tmp_path, *args) for _ in range(4)]
    try:
        outputs = [w.communicate(timeout=240)[0] for w in workers]
    finally:
        for w in workers:
            kill_group(w)
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-3000:]
    assert len({e["pid"] for e in events(tmp_path)}) >= 2, "the trials did not spread over the sweeps"
    assert all(e["released"] for e in events(tmp_path)), "a trial ran while no other sweep did"
    states = by_state(load_study(tmp_path, url))
    assert len(states["COMPLETE"]) == 12 and set(states) <= {"COMPLETE", "FAIL"}
    # A FAIL can only be a worker that lost the race for the last trial, before running it.
    assert all(t.user_attrs["ocrexp.fail_kind"] == "surplus" for t in states.get("FAIL", []))
    ran = [e["number"] for e in events(tmp_path)]
    assert sorted(ran) == sorted(t.number for t in states["COMPLETE"])  # each trial ran once
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("ocrexp")
    parents = client.search_runs([experiment.experiment_id], "tags.`ocrexp.role` = 'optuna-study'")
    assert len(parents) == 1 and parents[0].data.metrics["trials_complete"] == 12


def test_a_parent_run_whose_params_another_worker_logged_first_starts_all_the_same(tmp_path, monkeypatch):
    """Two workers starting one study at the same instant both log the parent's params; a PostgreSQL-
    backed MLflow refuses the second batch (SQLite takes it), and the second worker goes on."""
    import optuna
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    from hydra_plugins.ocrexp_optuna_sweeper._mlflow import StudyRun

    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    tracking = OmegaConf.create({"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment_name": "ocrexp"})
    parent = StudyRun(tracking, optuna.create_study(), "race")
    real = parent.client.log_batch
    raced = []

    def other_worker_first(run_id, params=(), **kwargs):
        if params and not raced:
            raced.append(True)
            real(run_id, params=params[:1])  # the other worker's batch lands first
            raise MlflowException("duplicate key value violates unique constraint \"param_pk\"")
        return real(run_id, params=params, **kwargs)

    monkeypatch.setattr(parent.client, "log_batch", other_worker_first)
    parent.start({"space.x": "interval(0, 1)", "sampler": "tpe"}, {"optuna.study": "race"})
    assert raced and parent.client.get_run(parent.run_id).data.params == {"space.x": "interval(0, 1)",
                                                                          "sampler": "tpe"}


@pytest.mark.slow
def test_a_study_storage_that_stops_answering_ends_the_sweep_in_one_line(app, tmp_path):
    db = tmp_path / "study.db"
    out = sweep(app, tmp_path, f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.n_trials=4",
                "break_storage_at=1", ok=False)
    assert "Traceback" not in out, out[-4000:]
    assert f"the study's storage sqlite:///{db} stopped answering (" in out, out[-4000:]
    assert "run the same command again once it answers" in out
