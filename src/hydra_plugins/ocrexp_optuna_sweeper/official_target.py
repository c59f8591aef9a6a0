"""Lets a config written for the official hydra-optuna-sweeper keep its ``_target_`` line.

Such a config switched to ``hydra/sweeper: ocrexp_optuna`` still says ``hydra.sweeper._target_:
hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper``, and Hydra instantiates the sweeper
by that name. While that package is not installed, this module registers ocrexp's sweeper under the
name, so the sweep runs (and says to delete the line); with it installed, Hydra runs the official
sweeper, which refuses ocrexp's keys.

Hydra's plugin scan (``hydra.core.plugins.Plugins``, checked with Hydra 1.3.8) imports every public
module of ``hydra_plugins`` and registers each plugin class as ``f"{cls.__module__}.{cls.__name__}"``;
that is what the class below relies on. ``tests/test_sweeper_official.py`` fails if it stops working.
"""

import importlib.util

from .config import OFFICIAL_SWEEPER
from .sweeper import OcrexpOptunaSweeper

_module, _, _name = OFFICIAL_SWEEPER.rpartition(".")

if importlib.util.find_spec(_module.rpartition(".")[0]) is None:

    class OptunaSweeper(OcrexpOptunaSweeper):
        """ocrexp's sweeper, registered under the official sweeper's class name."""

    OptunaSweeper.__module__ = _module
