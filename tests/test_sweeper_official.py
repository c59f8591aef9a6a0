"""What the official hydra-optuna-sweeper documents, run through ``ocrexp_optuna``.

Written from its docs page, its config and its examples (not its tests' code): the override grammar,
``params`` beside command-line overrides, samplers by config group and by ``_target_``, directions,
multi-objective results, ``custom_search_space``, ``max_failure_rate``, storage and study names, the
older ``search_space`` block, a config that keeps the official ``_target_`` line, and a
lightning-hydra-template style search. Sweeps run the examples in ``tests/official_examples.py`` or
the toy app (``tests/toy_sweep.py``), in seconds; the lightning-style one trains with ``debug=fast``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.ocrexp_optuna_sweeper import _search_space
from hydra_plugins.ocrexp_optuna_sweeper._custom_space import CustomSpace
from hydra_plugins.ocrexp_optuna_sweeper._errors import SweeperError
from hydra_plugins.ocrexp_optuna_sweeper._resume import mark_failed
from hydra_plugins.ocrexp_optuna_sweeper._sampler import make_sampler
from hydra_plugins.ocrexp_optuna_sweeper.config import OFFICIAL_SWEEPER, SAMPLERS
from ocrexp.pruning import open_storage
from tests.official_examples import results, write_examples
from tests.toy_sweep import by_state, events, load_study, sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    return write_examples(tmp_path_factory.mktemp("official"))


def sweep_lines(out: str, needle: str) -> list[str]:
    return [line for line in out.splitlines() if needle in line]


# -- the override grammar, as the docs page and the config's distribution types describe it ----------

@pytest.mark.parametrize("override, expected", [
    ("int(interval(-5.0, 5.0))", IntDistribution(-5, 5)),
    ("tag(log, interval(1, 10))", FloatDistribution(1.0, 10.0, log=True)),
    ("tag(log, int(interval(1, 5)))", IntDistribution(1, 5, log=True)),
    ("interval(1, 5)", FloatDistribution(1.0, 5.0)),
    ("range(1, 3)", IntDistribution(1, 3)),
    ("range(-5.0, 5.0)", FloatDistribution(-5.0, 5.0, step=1.0)),
    ("range(-5.5, 5.5, step=0.5)", FloatDistribution(-5.5, 5.5, step=0.5)),
    ("range(0.5, 5.5, step=1)", FloatDistribution(0.5, 5.5, step=1.0)),
    ("range(0, 5, step=0.5)", FloatDistribution(0.0, 5.0, step=0.5)),
    ("shuffle(range(-5, 5))", CategoricalDistribution(list(range(-5, 5)))),
    ("choice(-5.0, 0.0, 5.0)", CategoricalDistribution([-5.0, 0.0, 5.0])),
    ("choice(true, false)", CategoricalDistribution([True, False])),
    ("choice('hello', 'world')", CategoricalDistribution(["hello", "world"])),
])
def test_the_override_grammar_maps_to_the_distributions_the_official_docs_name(override, expected):
    for space in (_search_space.build({}, [f"key={override}"]), _search_space.build({"key": override}, [])):
        dist = space.distributions["key"]
        if isinstance(expected, CategoricalDistribution):  # shuffle() reorders
            assert sorted(dist.choices, key=str) == sorted(expected.choices, key=str)
        else:
            assert dist == expected


@pytest.mark.parametrize("entry, expected", [
    ({"type": "categorical", "choices": [1, 2, 3]}, CategoricalDistribution([1, 2, 3])),
    ({"type": "int", "low": 0, "high": 10}, IntDistribution(0, 10)),
    ({"type": "int", "low": 0, "high": 10, "step": 2}, IntDistribution(0, 10, step=2)),
    ({"type": "int", "low": 1, "high": 100, "log": True}, IntDistribution(1, 100, log=True)),
    ({"type": "float", "low": 0, "high": 1}, FloatDistribution(0.0, 1.0)),
    ({"type": "float", "low": 0, "high": 10, "step": 2}, FloatDistribution(0.0, 10.0, step=2.0)),
    ({"type": "float", "low": 1, "high": 100, "log": True}, FloatDistribution(1.0, 100.0, log=True)),
    ({"type": "float", "low": 0.0001, "high": 0.2}, FloatDistribution(0.0001, 0.2)),
])
def test_the_older_search_space_entries_read_as_params_that_mean_the_same(entry, expected):
    as_params = _search_space.from_older_form({"key": entry})
    assert _search_space.build(as_params, []).distributions["key"] == expected


# -- the examples ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_sphere_example_with_its_storage_and_study_name_and_overrides_beside_params(examples, tmp_path):
    # The official example's run with a storage, a study name and `x=choice(0, 1, 2) y=0` on the
    # command line: x searched from the command line, y fixed (no parameter), its result in the file.
    storage = f"sqlite:///{tmp_path / 'test.db'}"
    out = sweep(examples, tmp_path, f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=sphere-test",
                "hydra.sweeper.n_trials=8", "x=choice(0, 1, 2)", "y=0")
    study = optuna.load_study(study_name="sphere-test", storage=storage)
    assert [d.name for d in study.directions] == ["MINIMIZE"] and len(by_state(study)["COMPLETE"]) == 8
    assert all(set(t.params) == {"x"} and t.params["x"] in (0, 1, 2) for t in study.trials)
    found = results(tmp_path)
    assert found["best_value"] == study.best_value and found["best_params"] == study.best_params
    assert "y" not in found["best_params"] and "TPESampler (seed 123)" in out


@pytest.mark.slow
def test_the_sphere_example_searches_its_params_and_repeats_with_the_samplers_seed(examples, tmp_path):
    def trials(root):
        root.mkdir()
        sweep(examples, root, "hydra.sweeper.n_trials=6")
        return [t.params for t in load_study(root).trials]

    first = trials(tmp_path / "a")
    assert first == trials(tmp_path / "b")
    assert all(x % 0.5 == 0 and -5.5 <= x <= 5.5 for x in (p["x"] for p in first))
    assert {p["y"] for p in first} <= {-5, 0, 5}
    assert results(tmp_path / "a")["best_params"].keys() == {"x", "y"}


@pytest.mark.slow
def test_the_grid_sampler_by_group_runs_each_point_once_and_lowers_n_trials(examples, tmp_path):
    out = sweep(examples, tmp_path, "hydra/sweeper/sampler=grid", "x=choice(-1, 1)", "y=range(-1.0, 1.0, step=1)",
                "z=choice(foo, bar)")
    study = load_study(tmp_path)
    points = {(t.params["x"], t.params["y"], t.params["z"]) for t in study.trials}
    assert len(study.trials) == len(points) == 12 and "n_trials lowered from 20 to 12" in out
    best = results(tmp_path)
    assert best["best_value"] == 1 and abs(best["best_params"]["x"]) == 1 and best["best_params"]["y"] == 0


def _dominates(a: list[float], b: list[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


@pytest.mark.parametrize("overrides, step", [
    ((), 0.5),  # the config: nsgaii, range(0, 5, step=0.5)
    (("hydra/sweeper/sampler=random", "hydra.sweeper.sampler.seed=123", "x=range(0, 5)", "y=range(0, 3)"), 1),
])
@pytest.mark.slow
def test_the_binh_korn_example_writes_its_pareto_front_as_solutions(examples, tmp_path, overrides, step):
    out = sweep(examples, tmp_path, "--config-name=binh_korn", *overrides)
    study = load_study(tmp_path)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert ("RandomSampler" if overrides else "NSGAIISampler") in out
    solutions = results(tmp_path)["solutions"]
    assert sorted(s["number"] for s in solutions) == sorted(t.number for t in study.best_trials)
    for a in solutions:
        assert a["params"]["x"] % step == 0 and a["params"]["y"] % step == 0 and len(a["values"]) == 2
        assert not any(_dominates(b["values"], a["values"]) for b in solutions)


# -- samplers ------------------------------------------------------------------------------------------

def compose_sweeper(examples: Path, *overrides: str, config: str = "sphere"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(examples.parent / "conf"), version_base="1.3"):
        cfg = compose(config, list(overrides), return_hydra_config=True)
    return cfg.hydra.sweeper, cfg.hydra.runtime.choices.get("hydra/sweeper/sampler")


@pytest.mark.parametrize("option, cls", [
    ("tpe", "TPESampler"), ("random", "RandomSampler"), ("grid", "GridSampler"), ("cmaes", "CmaEsSampler"),
    ("nsgaii", "NSGAIISampler"), ("motpe", "TPESampler"), ("qmc", "QMCSampler"), ("gp", "GPSampler"),
])
def test_every_option_of_the_sampler_config_group_builds_its_sampler_with_its_settings(examples, option, cls):
    sweeper, choice = compose_sweeper(examples, f"hydra/sweeper/sampler={option}", "hydra.sweeper.sampler.seed=7")
    assert choice == option and sweeper.sampler._target_ == f"optuna.samplers.{cls}" and sweeper.sampler.seed == 7
    space = _search_space.build({"x": "range(-1, 1)", "y": "choice(0, 1)"}, [])
    if option == "gp" and importlib.util.find_spec("torch") is None:
        with pytest.raises(SweeperError, match="needs the torch package"):
            make_sampler(sweeper.sampler, None, space, choice)
        return
    sampler = make_sampler(sweeper.sampler, None, space, choice)
    assert type(sampler).__name__ == cls
    if option == "motpe":  # Optuna 5 has no MOTPESampler: its multi-objective TPE is TPESampler
        assert sampler._multivariate


def test_sampler_settings_override_the_groups_defaults(examples):
    sweeper, choice = compose_sweeper(examples, "hydra.sweeper.sampler.n_startup_trials=3",
                                      "hydra.sweeper.sampler.multivariate=true")
    sampler = make_sampler(sweeper.sampler, None, _search_space.build({"x": "interval(0, 1)"}, []), choice)
    assert sampler._n_startup_trials == 3 and sampler._multivariate and choice == "tpe"


def test_a_sampler_target_replaces_the_group_default_without_its_leftover_settings(examples, tmp_path):
    # lightning-hydra-template's comment: "_target_: optuna.samplers.TPESampler  # or optuna.samplers.RandomSampler"
    (examples.parent / "conf" / "random_target.yaml").write_text(RANDOM_TARGET)
    sweeper, choice = compose_sweeper(examples, config="random_target")
    space = _search_space.build({"x": "interval(0, 1)"}, [])
    assert type(make_sampler(sweeper.sampler, None, space, choice)).__name__ == "RandomSampler"
    with pytest.raises(SweeperError, match=r"^hydra.sweeper.sampler: RandomSampler takes no n_startup_trials "
                                           r"\(it takes seed\): remove it, or replace the whole sampler"):
        make_sampler({"_target_": "optuna.samplers.RandomSampler", "n_startup_trials": 5}, None, space, choice)
    out = sweep(examples, tmp_path, "--config-name=random_target")
    assert "RandomSampler (seed 12345)" in out and len(by_state(load_study(tmp_path))["COMPLETE"]) == 3


RANDOM_TARGET = """
defaults:
  - override hydra/sweeper: ocrexp_optuna

hydra:
  sweep:
    dir: ${oc.env:OCREXP_ROOT}/multirun
  sweeper:
    direction: minimize
    n_trials: 3
    sampler:
      _target_: optuna.samplers.RandomSampler
      seed: 12345
      n_startup_trials: 10
    params:
      x: range(-5.5, 5.5, step=0.5)

x: 1
"""


# -- custom_search_space -------------------------------------------------------------------------------

@pytest.mark.slow
def test_custom_search_space_suggests_after_the_params_and_sees_the_fixed_ones(examples, tmp_path):
    # The official example, with max_z_difference_from_x=0.3 and y fixed on the command line.
    out = sweep(examples, tmp_path, "--config-name=custom", "hydra.sweeper.n_trials=10", "max_z_difference_from_x=0.3",
                "y=0")
    study = load_study(tmp_path)
    assert len(by_state(study)["COMPLETE"]) == 10
    for trial in study.trials:
        assert set(trial.params) == {"x", "z", "+w"}
        assert abs(trial.params["x"] - trial.params["z"]) <= 0.3 + 1e-9 and 0 <= trial.params["+w"] <= 1
        assert trial.user_attrs["y"] == "0"  # the fixed parameters, where configure can see them
    best = results(tmp_path)["best_params"]
    assert abs(best["x"] - best["z"]) <= 0.3 + 1e-9 and 0 <= best["+w"] <= 1
    assert "custom_search_space: .sphere.configure" in out


@pytest.mark.parametrize("path, extra, message", [
    ("no_such_module.configure", (), "hydra.sweeper.custom_search_space=no_such_module.configure cannot be loaded "
                                     "(ModuleNotFoundError: No module named 'no_such_module'): give the dotted path"),
    (".sphere.suggest_y", ("y=0",), "hydra.sweeper.custom_search_space=.sphere.suggest_y suggests y, which the "
                                    "overrides fix (y=0): drop one of the two."),
    (".sphere.broken", (), "hydra.sweeper.custom_search_space=.sphere.broken failed on a first trial: "
                           "KeyError: 'no_such_param'."),
])
def test_a_custom_search_space_mistake_is_one_sentence_before_any_trial(examples, tmp_path, path, extra, message):
    out = sweep(examples, tmp_path, "--config-name=custom", f"hydra.sweeper.custom_search_space={path}", *extra,
                ok=False)
    assert len(sweep_lines(out, message)) == 1 and "Traceback" not in out, out
    assert not list(tmp_path.glob("mlruns/optuna/*.journal"))


@pytest.mark.slow
def test_custom_search_space_with_pruning_two_workers_and_resume(app, tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "toy_space.py").write_text(
        "def configure(cfg, trial):\n    x = trial.params['x']\n    trial.suggest_float('+z', x, x + 1)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "lib"), os.environ.get("PYTHONPATH")])))
    args = ["hydra.sweeper.custom_search_space=toy_space.configure", "hydra.sweeper.n_jobs=2", "steps=4",
            "hydra.sweeper.pruner={name: median, n_startup_trials: 2, n_warmup_steps: 0}"]
    sweep(app, tmp_path, "hydra.sweeper.n_trials=5", *args)
    sweep(app, tmp_path, "hydra.sweeper.n_trials=10", *args)  # the same command, a larger budget: resumed

    assert len(list(tmp_path.glob("mlruns/optuna/*.journal"))) == 1
    states = by_state(load_study(tmp_path))
    done = states["COMPLETE"] + states.get("PRUNED", [])
    assert len(done) == 10 and states.get("PRUNED"), "no trial was pruned"
    assert len({e["pid"] for e in events(tmp_path)}) >= 2, "the trials did not run in two workers"
    for trial in done:
        assert trial.params["x"] <= trial.params["+z"] <= trial.params["x"] + 1


@pytest.mark.slow
def test_custom_search_space_parameters_reach_the_mlflow_parent_run(examples, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep(examples, tmp_path, "--config-name=custom", "hydra.sweeper.n_trials=3",
          f"+tracking={{enabled: true, uri: '{uri}', experiment_name: sweeps}}")
    import mlflow

    client = mlflow.MlflowClient(uri)
    (parent,) = client.search_runs([client.get_experiment_by_name("sweeps").experiment_id],
                                   "tags.`ocrexp.role` = 'optuna-study'")
    best = results(tmp_path)["best_params"]
    assert parent.info.status == "FINISHED" and parent.data.params["space.custom_search_space"] == ".sphere.configure"
    assert parent.data.tags["best.z"] == str(best["z"]) and parent.data.tags["best.w"] == str(best["+w"])


def test_a_retried_trial_gets_its_custom_parameters_back(tmp_path, monkeypatch):
    (tmp_path / "retry_space.py").write_text("def configure(cfg, trial):\n    trial.suggest_float('z', 0, 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    space = _search_space.build({"x": "interval(0, 1)"}, ["y=2"])
    custom = CustomSpace("retry_space.configure", None, space)
    storage = open_storage(str(tmp_path / "study.journal"))
    study = optuna.create_study(study_name="s", storage=storage)
    first = study.ask(space.distributions)
    custom.apply(first)
    mark_failed(study, storage, first, "orphaned", "left RUNNING", requeue=True)
    again = study.ask(space.distributions)
    custom.apply(again)
    assert again.params == first.params and set(again.params) == {"x", "z"} and again.user_attrs["y"] == "2"


# -- failures, the older search_space block, the official _target_ --------------------------------------

def test_max_failure_rate_zero_stops_at_the_first_failure_naming_its_error(examples, tmp_path):
    out = sweep(examples, tmp_path, "+error=true", ok=False)  # the config's max_failure_rate: 0.0, the official default
    assert len(by_state(load_study(tmp_path))["FAIL"]) == 1
    (line,) = sweep_lines(out, "The sweep stopped because")
    assert "RuntimeError: cfg.error is True" in line


@pytest.mark.slow
def test_max_failure_rate_one_replaces_failed_trials_until_more_than_n_trials_have_failed(examples, tmp_path):
    out = sweep(examples, tmp_path, "+error=true", "hydra.sweeper.max_failure_rate=1.0", "hydra.sweeper.n_trials=3",
                ok=False)
    assert len(by_state(load_study(tmp_path))["FAIL"]) == 4 and sweep_lines(out, "The sweep stopped because")


def test_the_older_search_space_block_runs_and_says_once_how_to_write_it_as_params(examples, tmp_path):
    out = sweep(examples, tmp_path, "--config-name=older", "hydra.sweeper.n_trials=4")
    (line,) = sweep_lines(out, "is the older form of params")
    assert line.rstrip().endswith("hydra.sweeper.search_space is the older form of params; as params it reads: params: "
                                  "{x: 'interval(-5.0, 5.0)', y: 'choice(-5, 0, 5)', z: 'range(1, 9, 2)'}")
    pasted = yaml.safe_load(line.split("it reads: params: ", 1)[1])
    study = load_study(tmp_path)
    assert len(by_state(study)["COMPLETE"]) == 4
    assert study.trials[0].distributions == _search_space.build(pasted, []).distributions


def test_params_win_over_the_older_search_space_block_with_one_warning(caplog):
    from hydra_plugins.ocrexp_optuna_sweeper._impl import OptunaSweeperImpl

    sweeper = OptunaSweeperImpl(sampler="tpe", params={"x": "interval(0, 1)"},
                                search_space={"y": {"type": "float", "low": 0, "high": 1}})
    with caplog.at_level(logging.WARNING):
        assert sweeper._params() == {"x": "interval(0, 1)"}
    assert [r.getMessage() for r in caplog.records] == [
        "hydra.sweeper.params and hydra.sweeper.search_space are both set: the sweep searches params and ignores "
        "search_space"]


def test_a_dumped_official_config_with_null_params_reads_its_search_space(examples):
    from hydra_plugins.ocrexp_optuna_sweeper._impl import OptunaSweeperImpl
    from ocrexp.config import plain

    sweeper, _ = compose_sweeper(examples, "hydra.sweeper.params=null", "hydra.sweeper.custom_search_space=null",
                                 config="older")
    options = {k: v for k, v in plain(sweeper).items() if k not in ("_target_", "_recursive_")}
    assert OptunaSweeperImpl(**options)._params() == {"x": "interval(-5.0, 5.0)", "y": "choice(-5, 0, 5)",
                                                       "z": "range(1, 9, 2)"}


def test_a_config_that_keeps_the_official_target_line_runs_and_says_to_delete_it(examples, tmp_path):
    out = sweep(examples, tmp_path, f"hydra.sweeper._target_={OFFICIAL_SWEEPER}", "hydra.sweeper.n_trials=3")
    assert len(by_state(load_study(tmp_path))["COMPLETE"]) == 3
    (line,) = sweep_lines(out, "hydra.sweeper._target_")
    assert line.rstrip().endswith("hydra.sweeper._target_ names the official hydra-optuna-sweeper's class, left from "
                                  "before the switch to ocrexp_optuna, which runs this sweep: delete that line")


def test_every_sampler_option_has_only_arguments_its_optuna_sampler_takes():
    import dataclasses
    import inspect

    from hydra.utils import get_class

    for name, node in SAMPLERS.items():
        fields = {f.name for f in dataclasses.fields(node)} - {"_target_"}
        takes = set(inspect.signature(get_class(node._target_)).parameters)
        assert fields <= takes, (name, fields - takes)


# -- a lightning-hydra-template style search, on ocrexp's keys -------------------------------------------

LIGHTNING_STYLE = """# @package _global_

# example hyperparameter optimization of some experiment with Optuna:
# ocrexp-train -m hparams_search=mnist_optuna

defaults:
  - override /hydra/sweeper: ocrexp_optuna

# choose metric which will be optimized by Optuna
optimized_metric: val_accuracy

hydra:
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper

    # storage URL to persist optimization results
    storage: null

    # name of the study to persist optimization results
    study_name: null

    # number of parallel workers
    n_jobs: 1

    # 'minimize' or 'maximize' the objective
    direction: maximize

    # total number of runs that will be executed
    n_trials: 25

    # choose Optuna hyperparameter sampler
    sampler:
      _target_: optuna.samplers.TPESampler  # or optuna.samplers.RandomSampler
      seed: 12345
      n_startup_trials: 10 # number of random sampling runs before optimization starts

    # define range of hyperparameters
    search_space:
      trainer.batch_size:
        type: categorical
        choices: [32, 64, 128]
      optimizer.lr:
        type: float
        low: 0.0003
        high: 0.003
      model.dense_units:
        type: categorical
        choices: [32, 64, 128]
"""


@pytest.mark.slow
def test_a_lightning_template_style_search_runs_as_an_ocrexp_sweep(project, mnist):
    folder = project.root / "lightning" / "hparams_search"
    folder.mkdir(parents=True)
    (folder / "mnist_optuna.yaml").write_text(LIGHTNING_STYLE)
    proc = project.run("ocrexp-train", "-m", f"--config-dir={folder.parent}", "hparams_search=mnist_optuna",
                       "debug=fast", "hydra.sweeper.n_trials=2", "tracking.log_model=false", "tracking.log_plots=false",
                       timeout=600)
    (results_file,) = project.root.glob("multirun/*/*/optimization_results.yaml")
    found = yaml.safe_load(results_file.read_text())
    assert found["counts"]["COMPLETE"] == 2 and found["metric"] == ["val_accuracy"]
    assert set(found["best_params"]) == {"trainer.batch_size", "optimizer.lr", "model.dense_units"}
    output = proc.stdout + proc.stderr
    assert len(sweep_lines(output, "delete that line")) == 1
    assert len(sweep_lines(output, "hydra.sweeper.search_space is the older form of params")) == 1
    assert "TPESampler (seed 12345)" in output and "Traceback" not in output
    (parent,) = [r for r in project.runs() if r.data.tags.get("ocrexp.role") == "optuna-study"]
    assert parent.info.status == "FINISHED" and parent.data.params["optuna.sampler"] == "TPESampler"
