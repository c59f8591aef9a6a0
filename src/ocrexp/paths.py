"""Where the project keeps its data cache, MLflow store and outputs.

Everything is located from the project root, never from Hydra's working directory: the root is
``$OCREXP_ROOT`` when set, else the nearest directory at or above the current one that holds
``pyproject.toml`` and ``conf/``, else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The directory that holds ``data/``, ``mlruns/`` and ``outputs/`` for this invocation."""
    env = os.environ.get("OCREXP_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if (d / "pyproject.toml").is_file() and (d / "conf").is_dir():
            return d
    return cwd


def data_dir() -> Path:
    """Dataset cache: ``$OCREXP_DATA_DIR`` or ``<root>/data``."""
    env = os.environ.get("OCREXP_DATA_DIR")
    return Path(env).expanduser().resolve() if env else project_root() / "data"


def conf_dir() -> Path:
    """The built-in config tree: ``conf/`` in a checkout, package data in an installed wheel."""
    checkout = PACKAGE_DIR.parent.parent / "conf"
    return checkout if checkout.is_dir() else PACKAGE_DIR / "conf"


def experiments_dir() -> Path:
    """Named experiments: ``experiments/`` in a checkout, package data in an installed wheel."""
    checkout = PACKAGE_DIR.parent.parent / "experiments"
    return checkout if checkout.is_dir() else PACKAGE_DIR / "experiments"
