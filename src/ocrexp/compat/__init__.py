"""The only place ocrexp touches private parts of MLflow, Keras/TensorFlow and Hydra/OmegaConf.

One module per library (``mlflow``, ``keras``, ``hydra``); ocrexp uses only Optuna's public API.
Each hook is a small function or class whose docstring says what it does, why no public API does
it, and the versions it was checked against; ``tests/test_compat.py`` proves each one still has its
effect, and fails when any other module reaches for a private name of those libraries.

When a library no longer has what a hook needs, the hook raises ``CompatError``, unless going on
without it is the better behaviour for the user (a hook that only saves time or tidies a
message): then it quietly does without, and its test is what fails.

Libraries are imported inside the hooks, so that importing this package stays instant.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ocrexp.errors import OcrexpError


class CompatError(OcrexpError):
    """A hook found that its library no longer has the private part it relies on."""


def library_changed(library: str, hook: str, needs: str, checked: str) -> CompatError:
    """The error a hook raises when ``library`` lacks what it ``needs``, naming the installed version
    and the ``checked`` one(s)."""
    try:
        installed = version(library)
    except PackageNotFoundError:
        installed = "(not installed)"
    return CompatError(f"{hook} needs {needs}, which {library} {installed} does not have (checked with "
                       f"{library} {checked}): install a checked version, or update the hook in ocrexp.compat.")
