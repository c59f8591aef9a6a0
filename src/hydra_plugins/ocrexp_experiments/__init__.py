"""Hydra plugins that make ``experiments/*.yaml`` the ``experiment`` config group.

Named experiments live beside ``conf/`` in ``experiments/`` (not in ``conf/experiment/``), so users
find them at the top of the repository. Hydra finds groups by directory name; the config source
below presents that directory under the group name ``experiment``.
"""

from hydra_plugins.ocrexp_experiments._impl import ExperimentsConfigSource, ExperimentsSearchPath

__all__ = ["ExperimentsConfigSource", "ExperimentsSearchPath"]
