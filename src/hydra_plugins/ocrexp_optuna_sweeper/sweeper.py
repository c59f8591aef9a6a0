"""ocrexp's Optuna sweeper for Hydra: pruning, asynchronous parallel trials, resume, MLflow.

Select it with ``override /hydra/sweeper: ocrexp_optuna`` in a config (the ``hparams_search``
files do) or ``hydra/sweeper=ocrexp_optuna`` on the command line, then run with ``-m``::

    ocrexp-train -m hparams_search=cnn_optuna hydra.sweeper.n_trials=40 hydra.sweeper.n_jobs=2

Hydra imports this module on every command to find its plugins, so it holds only the config
schema and a thin ``Sweeper``; Optuna, MLflow and the logic load from ``_impl`` when a sweep starts.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class OcrexpOptunaSweeperConf:
    """``hydra.sweeper`` settings (the README's "Hyperparameter search" section explains each)."""

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


class OcrexpOptunaSweeper(Sweeper):
    """Hydra's entry point; the work happens in ``_impl.OptunaSweeperImpl``."""

    def __init__(self, **options: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self._impl.sweep(arguments)
