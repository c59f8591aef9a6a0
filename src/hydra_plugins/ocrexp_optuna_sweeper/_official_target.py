"""Runs a config written for the official hydra-optuna-sweeper that still names its class.

Such a config, switched to ``hydra/sweeper: ocrexp_optuna``, keeps ``hydra.sweeper._target_:
hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper``, and Hydra builds the sweeper from
that line: it would fail (that package is not installed) or run the official sweeper on ocrexp's
keys. The ``ocrexp_optuna`` config adds this Hydra callback, which runs before the sweeper is built
(``on_multirun_start`` comes first in Hydra 1.3.8's ``multirun``; tests/test_sweeper_official.py fails if not):
it points ``_target_`` back at ocrexp's sweeper and says to delete the line. The rest of the config
is already ocrexp's (its keys were checked against ``OcrexpOptunaSweeperConf``), so running is right.
"""

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

from .config import OFFICIAL_SWEEPER, OcrexpOptunaSweeperConf

log = logging.getLogger(__name__)


class OfficialTargetCallback(Callback):
    """Replaces the official sweeper's ``_target_`` with ocrexp's before Hydra builds the sweeper."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") != OFFICIAL_SWEEPER:
            return
        log.warning("hydra.sweeper._target_ names the official hydra-optuna-sweeper's class, left from before the "
                    "switch to ocrexp_optuna, which runs this sweep: delete that line")
        with read_write(sweeper), open_dict(sweeper):
            sweeper._target_ = OcrexpOptunaSweeperConf._target_
