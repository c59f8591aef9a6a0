"""RungTPESampler: TPE fitted at the latest epoch enough trials reached, so pruned trials' progress counts."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hydra_plugins.ocrexp_optuna_sweeper import _search_space
from hydra_plugins.ocrexp_optuna_sweeper._errors import SweeperError
from hydra_plugins.ocrexp_optuna_sweeper._study import make_sampler
from ocrexp.rung_sampler import RungTPESampler, at_step, fidelity_step

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"x": FloatDistribution(0, 1)}


def pruned_sweep() -> optuna.Study:
    """A mediocre configuration (x=0.1) that finished because it came first; three near x=0.8 better
    at every epoch but pruned after epoch 2; four slow ones pruned after epoch 1."""
    study = optuna.create_study(direction="maximize")
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, params={"x": 0.1}, distributions=SPACE,
                                 intermediate_values={1: 0.3, 2: 0.4, 3: 0.5}))
    for x in (0.78, 0.8, 0.82):
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": x}, distributions=SPACE,
                                     intermediate_values={1: 0.6, 2: 0.7 + x / 10}))
    for x in (0.3, 0.4, 0.5, 0.6):
        study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": x}, distributions=SPACE,
                                     intermediate_values={1: 0.2}))
    return study


def draws(study: optuna.Study, sampler: optuna.samplers.BaseSampler, n: int = 12) -> list[float]:
    study.sampler = sampler
    out = []
    for _ in range(n):
        trial = study.ask(SPACE)
        out.append(trial.params["x"])
        study.tell(trial, state=TrialState.FAIL)  # failed trials are not modelled: every draw sees the same study
    return out


def test_it_models_the_latest_step_enough_trials_reached():
    study = pruned_sweep()
    assert fidelity_step(study.trials, 3) == 2  # epoch 3: only the finished trial
    assert fidelity_step(study.trials, 4) == 2  # epoch 2 has the finished trial and three pruned ones
    assert fidelity_step(study.trials, 9) is None
    seen = at_step(study.trials, 2)
    assert [t.state for t in seen[:4]] == [TrialState.COMPLETE] * 4
    assert [t.value for t in seen[:4]] == [0.4, 0.7 + 0.078, 0.7 + 0.08, 0.7 + 0.082]
    assert all(t.state == TrialState.PRUNED for t in seen[4:])
    assert study.trials[1].state == TrialState.PRUNED  # the study's own trials are untouched


def test_it_samples_where_pruned_trials_did_best_not_around_the_one_that_finished_first():
    plain = draws(pruned_sweep(), optuna.samplers.TPESampler(seed=0, n_startup_trials=4))
    rung = draws(pruned_sweep(), RungTPESampler(seed=0, n_startup_trials=4, min_trials=3))
    near = lambda xs, centre: sum(abs(x - centre) < 0.2 for x in xs)  # noqa: E731
    assert near(plain, 0.1) >= 9 and near(plain, 0.8) <= 2
    assert near(rung, 0.8) >= 9 and near(rung, 0.1) <= 2


def test_once_enough_trials_finished_it_is_plain_tpe():
    study = pruned_sweep()
    for x in (0.85, 0.9, 0.95):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.9, params={"x": x}, distributions=SPACE,
                                     intermediate_values={1: 0.6, 2: 0.7, 3: 0.9}))
    rung = draws(study, RungTPESampler(seed=0, n_startup_trials=4, min_trials=4), n=6)
    plain = draws(study, optuna.samplers.TPESampler(seed=0, n_startup_trials=4), n=6)
    assert rung == plain


def test_the_sweeper_builds_it_by_name_seeded():
    space = _search_space.build({"x": "interval(0, 1)"}, [])
    sampler = make_sampler({"name": "rung_tpe", "n_startup_trials": 8, "min_trials": 5}, 3, space)
    assert isinstance(sampler, RungTPESampler) and sampler.min_trials == 5 and sampler._n_startup_trials == 8
    assert draws(pruned_sweep(), make_sampler("rung_tpe", 3, space)) == draws(pruned_sweep(), make_sampler("rung_tpe", 3, space))


def test_a_wrong_setting_is_one_sentence_naming_it():
    space = _search_space.build({"x": "interval(0, 1)"}, [])
    with pytest.raises(SweeperError, match=r"'rung_tpe' rejects \['min_trials', 'seed'\]: min_trials must be at least 1, not 0\.$"):
        make_sampler({"name": "rung_tpe", "min_trials": 0}, 3, space)
