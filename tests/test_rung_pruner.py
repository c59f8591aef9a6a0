"""RungRankPruner: ranks at a few rungs, keeps re-ranking, counts every trial that got there."""

from __future__ import annotations

import optuna
import pytest

from ocrexp.pruning import make_pruner
from ocrexp.rung_pruner import RungRankPruner

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study(pruner: RungRankPruner, direction: str = "maximize") -> optuna.Study:
    return optuna.create_study(direction=direction, pruner=pruner, sampler=optuna.samplers.RandomSampler(0))


def run(study: optuna.Study, curve: list[float]) -> tuple[str, int]:
    """Report ``curve`` step by step; (final state, steps trained)."""
    trial = study.ask()
    for step, value in enumerate(curve, start=1):
        trial.report(value, step)
        if step < len(curve) and trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return "PRUNED", step
    study.tell(trial, curve[-1])
    return "COMPLETE", len(curve)


def test_rungs_double_from_min_to_max_resource():
    assert RungRankPruner().rungs == (1, 2)
    assert RungRankPruner(max_resource=4).rungs == (1, 2, 4)
    assert RungRankPruner(min_resource=2, max_resource=9, growth=3).rungs == (2, 6)
    assert RungRankPruner(min_resource=1, max_resource=4, growth=1.5).rungs == (1, 2, 3)
    with pytest.raises(ValueError, match="greater than 1"):
        RungRankPruner(reduction_factor=1)


def test_only_the_top_quarter_at_a_rung_goes_on():
    s = study(RungRankPruner(reduction_factor=4))
    # eight trials that stop after their first report: the rung-1 field the next trials meet
    for value in (0.50, 0.60, 0.70, 0.80, 0.55, 0.65, 0.75, 0.85):
        run(s, [value])
    assert run(s, [0.79, 0.9, 0.9]) == ("PRUNED", 1)  # 3rd of 9: outside the top 2
    assert run(s, [0.90, 0.9, 0.9]) == ("COMPLETE", 3)  # 1st of 10
    assert run(s, [0.86, 0.9, 0.9]) == ("COMPLETE", 3)  # 2nd of 11 (top 2)


def test_a_trial_that_went_on_first_stops_once_better_ones_reach_its_rung():
    s = study(RungRankPruner(max_resource=4, growth=3, reduction_factor=2))  # rungs 1 and 3
    early = s.ask()
    early.report(0.6, 1)
    assert not early.should_prune()  # alone at rung 1: it goes on, as in successive halving
    for value in (0.7, 0.8, 0.9):
        run(s, [value])
    early.report(0.65, 2)
    assert early.should_prune()  # re-ranked at rung 1: 4th of 4


def test_ranking_uses_the_latest_rung_passed():
    s = study(RungRankPruner(max_resource=4, reduction_factor=2))
    assert run(s, [0.5, 0.9, 0.9, 0.9, 0.9]) == ("COMPLETE", 5)  # rungs 1, 2 and 4 alone
    assert run(s, [0.9, 0.5, 0.5]) == ("PRUNED", 2)  # best at rung 1, 2nd of 2 at rung 2 (the top 1 goes on)


@pytest.mark.parametrize("state, counts", [("RUNNING", True), ("PRUNED", True), ("COMPLETE", True), ("FAIL", False)])
def test_which_trials_count_at_a_rung(state, counts):
    # Failed trials are left out: one the sweeper retries after its worker died reports its epochs again.
    s = study(RungRankPruner(max_resource=4, reduction_factor=2))
    if state == "RUNNING":
        s.ask().report(0.95, 1)
    else:
        s.add_trial(optuna.trial.create_trial(state=getattr(optuna.trial.TrialState, state),
                                              intermediate_values={1: 0.95}, value=0.95 if state == "COMPLETE" else None))
    assert run(s, [0.9, 0.9]) == (("PRUNED", 1) if counts else ("COMPLETE", 2))


def test_minimising_keeps_the_lowest():
    s = study(RungRankPruner(reduction_factor=2), direction="minimize")
    run(s, [0.2])
    run(s, [0.3])
    assert run(s, [0.25, 0.1]) == ("PRUNED", 1)
    assert run(s, [0.1, 0.1]) == ("COMPLETE", 2)


def test_the_sweeper_builds_it_by_name():
    pruner = make_pruner({"name": "rung_rank", "max_resource": 8, "reduction_factor": 3})
    assert isinstance(pruner, RungRankPruner) and pruner.rungs == (1, 2, 4, 8) and pruner.reduction_factor == 3
