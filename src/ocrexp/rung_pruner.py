"""A pruner that ranks trials at a few early rungs and keeps re-ranking them as the sweep goes on.

Optuna's ``SuccessiveHalvingPruner`` (asynchronous successive halving) decides once, when a trial
reaches a rung, against the trials that reached it before. A sweep's first trials meet no
competition there and go on to the last epoch whatever they are worth: with 20 trials that alone
was a tenth of the sweep's epochs. Its rungs also grow by the reduction factor (1, 3, 9 epochs for
3), so keeping a third means deciding only twice within 9 epochs.

``RungRankPruner`` ranks a trial, at every report, by its value at the latest rung it has passed
among all trials' values there (running, completed or pruned ones): it trains on only while that
value is in the top ``1 / reduction_factor``. So a trial that went on because it got somewhere first
stops once enough better ones have got there too. Rungs grow by ``growth`` from ``min_resource`` up
to ``max_resource`` (epochs 1 and 2 by default: a quarter of the trials goes on after each); a trial
still in the running after the last rung is compared on that rung's value until it ends.
docs/performance.md has how it was chosen.
"""

from __future__ import annotations

import math

import optuna


class RungRankPruner(optuna.pruners.BasePruner):
    """Prune a trial whose value at its latest rung falls outside the top ``1/reduction_factor``."""

    def __init__(self, min_resource: int = 1, max_resource: int = 2, growth: float = 2.0,
                 reduction_factor: float = 4.0):
        if min_resource < 1 or max_resource < min_resource:
            raise ValueError("it needs 1 <= min_resource <= max_resource")
        if growth <= 1 or reduction_factor <= 1:
            raise ValueError("growth and reduction_factor must be greater than 1")
        rungs, rung = [], float(min_resource)
        while rung <= max_resource:
            if not rungs or int(rung) > rungs[-1]:
                rungs.append(int(rung))
            rung *= growth
        self.rungs = tuple(rungs)
        self.reduction_factor = reduction_factor

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        passed = [rung for rung in self.rungs if step is not None and rung <= step]
        if not passed:
            return False
        rung = passed[-1]
        value = trial.intermediate_values.get(rung)
        if value is None or math.isnan(value):
            return False
        # Failed trials are left out: a trial the sweeper retries after its worker died reports again.
        states = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        values = [value] + [
            other.intermediate_values[rung] for other in study.get_trials(deepcopy=False, states=states)
            if other.number != trial.number and not math.isnan(other.intermediate_values.get(rung, math.nan))]
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        kept = max(1, int(len(values) // self.reduction_factor))
        threshold = sorted(values, reverse=maximize)[kept - 1]
        return value < threshold if maximize else value > threshold
