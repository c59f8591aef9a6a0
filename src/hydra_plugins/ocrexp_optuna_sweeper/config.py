"""The sweeper's settings (``hydra.sweeper.*``) and the ``hydra/sweeper/sampler`` config group,
registered in Hydra's ConfigStore.

Imports nothing from this plugin, so ``sweeper`` (Hydra's entry point) and ``_impl`` (the logic) can
both use it without importing each other. The keys are those of the official hydra-optuna-sweeper
plus ocrexp's own (pruner, seed, timeout, resume, MLflow).
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# The official hydra-optuna-sweeper's class, which configs written for it name in hydra.sweeper._target_.
OFFICIAL_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
TARGET_CALLBACK = "ocrexp_optuna_target"

# -- hydra/sweeper/sampler: one option per Optuna sampler, its constructor's plain arguments with
# Optuna 5's defaults. `seed` null: hydra.sweeper.seed seeds it.


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: Optional[bool] = None
    group: bool = False
    constant_liar: bool = True
    # Deprecated by Optuna 4.3-4.9; accepted so that older configs still run.
    consider_prior: Optional[bool] = None
    prior_weight: Optional[float] = None
    consider_magic_clip: Optional[bool] = None
    consider_endpoints: Optional[bool] = None
    warn_independent_sampling: Optional[bool] = None


@dataclass
class MOTPESamplerConf:
    """Optuna removed MOTPESampler in 4.0: its multi-objective TPE is TPESampler, here multivariate."""

    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = True


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class GridSamplerConf:
    """The grid is built from the search space (``params``)."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    x0: Optional[Dict[str, Any]] = None
    sigma0: Optional[float] = None
    n_startup_trials: int = 1
    warn_independent_sampling: bool = True
    consider_pruned_trials: bool = False
    restart_strategy: Optional[str] = None
    popsize: Optional[int] = None
    inc_popsize: int = -1
    use_separable_cma: bool = False
    with_margin: bool = False
    lr_adapt: bool = False


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None
    qmc_type: str = "sobol"
    scramble: bool = False
    warn_asynchronous_seeding: bool = True
    warn_independent_sampling: bool = True


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False
    warn_independent_sampling: bool = True


# The group's options by name (also the names `hydra.sweeper.sampler=<name>` accepts).
SAMPLERS = {"tpe": TPESamplerConf, "random": RandomSamplerConf, "grid": GridSamplerConf, "cmaes": CmaEsSamplerConf,
            "gp": GPSamplerConf, "qmc": QMCSamplerConf, "nsgaii": NSGAIISamplerConf, "motpe": MOTPESamplerConf}


@dataclass
class OcrexpOptunaSweeperConf:
    """``hydra.sweeper`` settings (the README's "Sweep" section explains each)."""

    _target_: str = "hydra_plugins.ocrexp_optuna_sweeper.sweeper.OcrexpOptunaSweeper"
    # The sampler and pruner reach the sweeper as configs: it builds them once it knows the search
    # space and the study (a grid needs the space; a resumed study needs another seed).
    _recursive_: bool = False
    # The sampler group (tpe by default), and a Hydra callback that lets a config keep the official
    # sweeper's _target_ line (_official_target.py).
    defaults: List[Any] = field(default_factory=lambda: [
        {"sampler": "tpe"}, {f"/hydra/callbacks@_global_.hydra.callbacks.{TARGET_CALLBACK}": TARGET_CALLBACK}])

    # Search space: key -> choice(...), range(...), interval(...), tag(log, ...), int(...), a fixed
    # value, or {type: float|int|categorical, low, high, step, log, choices}. Command-line
    # overrides of the same key replace an entry.
    params: Optional[Dict[str, Any]] = field(default_factory=dict)
    # The official sweeper's older form, {key: {type, low, high, ...}}: read as params.
    search_space: Optional[Dict[str, Any]] = None
    # Dotted path of a function configure(cfg, trial) that suggests more parameters once the
    # params are sampled (Optuna's define-by-run API).
    custom_search_space: Optional[str] = None

    # maximize | minimize, or a list of them for several objectives (the task returns a list).
    direction: Any = "maximize"
    directions: Optional[List[str]] = None

    # An option of hydra/sweeper/sampler (tpe by default), its arguments under sampler.*; or a name
    # (tpe, random, grid, cmaes, gp, qmc, nsgaii, motpe); or {_target_: optuna.samplers.X, ...}.
    # `seed` seeds it unless the sampler has its own seed.
    sampler: Any = MISSING
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


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="ocrexp_optuna", node=OcrexpOptunaSweeperConf, provider="ocrexp_optuna_sweeper")
_store.store(group="hydra/callbacks", name=TARGET_CALLBACK, provider="ocrexp_optuna_sweeper",
             node={"_target_": "hydra_plugins.ocrexp_optuna_sweeper._official_target.OfficialTargetCallback"})
for _name, _node in SAMPLERS.items():
    # Untyped nodes, so that `sampler: random` (a name) or another sampler's mapping can replace
    # the group's choice in a config file; the sweeper checks the keys against the sampler.
    _store.store(group="hydra/sweeper/sampler", name=_name, node=asdict(_node()), provider="ocrexp_optuna_sweeper")
