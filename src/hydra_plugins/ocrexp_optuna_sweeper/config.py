"""The sweeper's settings (``hydra.sweeper.*``), registered in Hydra's ConfigStore.

Imports nothing from this plugin, so ``sweeper`` (Hydra's entry point) and ``_impl`` (the logic) can
both use it without importing each other.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class OcrexpOptunaSweeperConf:
    """``hydra.sweeper`` settings (the README's "Sweep" section explains each)."""

    _target_: str = "hydra_plugins.ocrexp_optuna_sweeper.sweeper.OcrexpOptunaSweeper"

    # Search space: key -> choice(...), range(...), interval(...), tag(log, ...), int(...), a fixed
    # value, or {type: float|int|categorical, low, high, step, log, choices}. Command-line
    # overrides of the same key replace an entry.
    params: Dict[str, Any] = field(default_factory=dict)

    # maximize | minimize, or a list of them for several objectives (the task returns a list).
    direction: Any = "maximize"
    directions: Optional[List[str]] = None

    # tpe | random | grid | cmaes | gp | qmc | nsgaii, or {name: tpe, <constructor args>}, or
    # {_target_: optuna.samplers.X, ...}. `seed` seeds it unless the mapping has its own seed.
    sampler: Any = "tpe"
    seed: Optional[int] = None

    # none | median | successive_halving | hyperband, or {name: hyperband, <constructor args>},
    # or {_target_: optuna.pruners.X, ...}. Jobs report the metric after every epoch.
    pruner: Any = "none"

    # Trials with a result (COMPLETE or PRUNED) the study should end with, counting those already
    # in storage. FAIL trials are replaced; the sweep stops once more than
    # max_failure_rate * n_trials of the study's trials have failed.
    n_trials: int = 20
    max_failure_rate: float = 0.25

    # Trials running at once. Above 1 it needs a process launcher (hydra/launcher=joblib, submitit).
    n_jobs: int = 1

    # Seconds after which no new trial starts (running ones finish); null for no limit.
    timeout: Optional[float] = None

    # null: the journal file <root>/mlruns/optuna/<study>.journal (safe for parallel processes).
    # Else a journal file path, sqlite:///path.db, or postgresql://user@host/db for several machines.
    storage: Optional[str] = None

    # null: "<hparams_search>-<hash of space, overrides, directions>", stable across re-runs.
    study_name: Optional[str] = None

    # Re-queue the parameters of trials a dead sweep left RUNNING (they become FAIL either way).
    requeue_orphans: bool = True

    # How often a sweep marks its running trials alive; others treat 4x this as dead.
    heartbeat_interval: float = 30.0

    # A parent MLflow run per study when the task config tracks to MLflow; plots at the end.
    mlflow: bool = True
    plots: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="ocrexp_optuna", node=OcrexpOptunaSweeperConf,
                             provider="ocrexp_optuna_sweeper")
