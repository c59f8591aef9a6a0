"""Package layout that pyproject.toml alone cannot express.

``conf/`` and ``experiments/`` live at the top of the repository (where users look for them) but
must travel inside the wheel: they become the package-data directories ``ocrexp/conf`` and
``ocrexp/experiments``, which ``ocrexp.paths`` falls back to outside a checkout. Every folder of
``conf/`` is declared as a (data-only) package of its own: setuptools warns about, and will one
day drop, data in folders that are not listed packages.
"""

from setuptools import find_namespace_packages, setup

CONF = ["ocrexp.conf", *(f"ocrexp.conf.{name}" for name in find_namespace_packages("conf"))]

setup(
    packages=find_namespace_packages("src", include=["ocrexp*", "hydra_plugins*"]) + CONF + ["ocrexp.experiments"],
    package_dir={"": "src", "ocrexp.conf": "conf", "ocrexp.experiments": "experiments"},
    package_data={**{package: ["*.yaml"] for package in CONF}, "ocrexp.experiments": ["*.yaml", "*.md"]},
)
