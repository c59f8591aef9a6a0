"""Tests that need a Debian package: skipped with the package's name on a developer's machine, failed
under CI (``CI=true``), whose ``.ci/run`` installs them, so CI can never skip them silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocrexp.data.fashion_mnist import DEBIAN_DIR

# Where Debian's packages put the browser and its WebDriver (named by path: Selenium downloads nothing).
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def require(package: str, present: bool) -> None:
    """Skip (or, under CI, fail) the calling test when ``package`` is not installed."""
    if present:
        return
    message = f"needs the Debian package {package} (apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; .ci/run installs it", pytrace=False)
    pytest.skip(message)


def require_fashion_mnist() -> None:
    require("dataset-fashion-mnist", (Path(DEBIAN_DIR) / "t10k-labels-idx1-ubyte.gz").is_file())


def require_chromium() -> None:
    require("chromium", CHROMIUM.is_file())
    require("chromium-driver", CHROMEDRIVER.is_file())
