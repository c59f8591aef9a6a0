"""Screen pruners in seconds: replay an unpruned sweep's learning curves through each of them.

``pruning_benchmark.py`` trains a sweep per pruner (minutes each). This script takes the unpruned
sweep such a run recorded (its ``summary.json`` and Optuna journal) and feeds every trial's per-epoch
values, in trial order and two trials at a time as the sweep ran them, to each pruner, which decides
as it would have in the sweep. It prints the share of the unpruned epochs each pruner would have
trained and how far its best finished trial falls below the unpruned best.

Exact for a random sampler (a pruned sweep would train the same configurations). With TPE a pruned
sweep samples others (TPE learns from pruned trials too), so the replay screens candidates and
``pruning_benchmark.py`` confirms them.

    python benchmarks/pruning_replay.py /tmp/pv42 /tmp/pv1 /tmp/pv2 --pruners successive_halving,top_quarter
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pruning_benchmark import PRUNERS, pruner_spec


def curves(root: Path) -> tuple[list[list[float]], str]:
    """Each finished trial's reported values by epoch, in trial order, of the run's unpruned sweep."""
    import optuna

    from ocrexp.pruning import open_storage

    unpruned = json.loads((root / "summary.json").read_text())["runs"][0]
    study_name = unpruned["study"]
    storage = open_storage(str(root / "mlruns" / "optuna" / f"{study_name}.journal"))
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [t for t in study.trials if t.state.name == "COMPLETE"]
    direction = study.direction.name.lower()
    return [[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in trials], direction


def replay(trial_curves: list[list[float]], pruner, direction: str = "maximize", jobs: int = 2) -> tuple[int, float]:
    """(epochs trained, best value of a trial that finished) had ``pruner`` watched the sweep."""
    import optuna

    # A fixed name: Hyperband assigns trials to brackets by a checksum of the study's name and trial number.
    study = optuna.create_study(study_name="replay", direction=direction, pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(0))
    waiting, running, epochs = list(trial_curves), [], 0
    best = None
    better = max if direction == "maximize" else min
    while waiting or running:
        while waiting and len(running) < jobs:
            running.append([study.ask(), waiting.pop(0), 0])
        for slot in list(running):  # one epoch each, in turn
            trial, curve, done = slot
            slot[2] = done = done + 1
            trial.report(curve[done - 1], done)
            epochs += 1
            if done == len(curve):
                study.tell(trial, curve[-1])
                best = curve[-1] if best is None else better(best, curve[-1])
                running.remove(slot)
            elif trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                running.remove(slot)
    return epochs, best


def main() -> None:
    from ocrexp.pruning import make_pruner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", type=Path, nargs="+", help="--root folders of pruning_benchmark.py runs")
    parser.add_argument("--pruners", default=",".join(list(PRUNERS)[1:]), help="comma list of " + ", ".join(PRUNERS))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    recorded = {root: curves(root) for root in args.roots}
    print(f"{'pruner':<22}" + "".join(f"{root.name:>22}" for root in args.roots) + "   (epochs, best vs unpruned)")
    for name in args.pruners.split(","):
        cells = []
        for trial_curves, direction in recorded.values():
            full = sum(map(len, trial_curves))
            unpruned_best = (max if direction == "maximize" else min)(c[-1] for c in trial_curves)
            epochs, best = replay(trial_curves, make_pruner(pruner_spec(name)), direction, args.jobs)
            if best is None:  # it pruned every trial
                cells.append(f"{epochs / full:>8.0%} all pruned")
                continue
            gap = abs(unpruned_best - best) * 100
            cells.append(f"{epochs / full:>8.0%} {'-' if direction == 'maximize' else '+'}{gap:.2f} pt")
        print(f"{name:<22}" + "".join(f"{cell:>22}" for cell in cells))


if __name__ == "__main__":
    main()
