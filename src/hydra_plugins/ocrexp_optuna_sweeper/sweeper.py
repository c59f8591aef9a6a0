"""ocrexp's Optuna sweeper for Hydra: pruning, asynchronous parallel trials, resume, MLflow.

Select it with ``override /hydra/sweeper: ocrexp_optuna`` in a config (the ``hparams_search``
files do) or ``hydra/sweeper=ocrexp_optuna`` on the command line, then run with ``-m``::

    ocrexp-train -m hparams_search=cnn_optuna hydra.sweeper.n_trials=40 hydra.sweeper.n_jobs=2

Hydra imports this module on every command to find its plugins, so it holds only a thin ``Sweeper``
(its settings are in ``config``); Optuna, MLflow and the logic load from ``_impl`` when a sweep starts.
"""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import OcrexpOptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=ocrexp_optuna)


class OcrexpOptunaSweeper(Sweeper):
    """Hydra's entry point; the work happens in ``_impl.OptunaSweeperImpl``."""

    def __init__(self, **options: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(**options)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        return self._impl.sweep(arguments)
