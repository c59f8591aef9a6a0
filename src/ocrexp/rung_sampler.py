"""TPE that learns from how far pruned trials got, not only from the few trials pruning let finish.

Optuna's ``TPESampler`` ranks every finished trial above every pruned one. Under aggressive pruning
(``rung_rank`` finishes 1-4 trials of 20) its "good" group is then whichever trials finished, and a
sweep's first trial often finishes only because nobody else had reached its rung yet: TPE goes on
sampling around a mediocre configuration. ``RungTPESampler`` models, as BOHB does, the latest epoch
that at least ``min_trials`` finished or pruned trials reported: they count as finished with their
value there, and trials that stopped before it stay pruned (ranked below them, by how far they got).
"""

from __future__ import annotations

import copy
from typing import Any

import optuna
from optuna.trial import TrialState


def fidelity_step(trials: list[optuna.trial.FrozenTrial], min_trials: int) -> int | None:
    """The latest step at least ``min_trials`` of ``trials`` reported a value at, or ``None``."""
    counts: dict[int, int] = {}
    for trial in trials:
        for step in trial.intermediate_values:
            counts[step] = counts.get(step, 0) + 1
    steps = [step for step, count in counts.items() if count >= min_trials]
    return max(steps) if steps else None


def at_step(trials: list[optuna.trial.FrozenTrial], step: int) -> list[optuna.trial.FrozenTrial]:
    """``trials`` as TPE should see them: each finished or pruned one that reported ``step`` as a
    finished trial with its value there; the rest (pruned before it, running) as they are."""
    out = []
    for trial in trials:
        value = trial.intermediate_values.get(step)
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and value is not None:
            trial = copy.copy(trial)
            trial.state = TrialState.COMPLETE
            trial.value = value
        out.append(trial)
    return out


class _StepView:
    """The study, with its trials seen at one step (everything else passes through)."""

    def __init__(self, study: optuna.Study, step: int):
        self._study, self._step = study, step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        return at_step(self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache), self._step)


class RungTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` fitted at the latest epoch ``min_trials`` trials reached (BOHB's rule); the
    final values once that many trials finished. With several objectives it is plain TPE."""

    def __init__(self, *, min_trials: int = 6, **kwargs: Any):
        if min_trials < 1:
            raise ValueError(f"min_trials must be at least 1, not {min_trials}")
        super().__init__(**kwargs)
        self.min_trials = min_trials

    # TPESampler._sample is where Optuna (pinned <6) reads the study's trials for both relative and
    # independent sampling: the one place to hand it the view.
    def _sample(self, study, trial, search_space):
        if study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=True)
        if sum(t.state == TrialState.COMPLETE for t in finished) >= self.min_trials:
            return super()._sample(study, trial, search_space)
        step = fidelity_step(finished, self.min_trials)
        return super()._sample(study if step is None else _StepView(study, step), trial, search_space)
