"""Package layout that pyproject.toml alone cannot express.

``conf/`` and ``experiments/`` live at the top of the repository (where users look for them) but
must travel inside the wheel: they become the package-data directories ``ocrexp/conf`` and
``ocrexp/experiments``, which ``ocrexp.paths`` falls back to outside a checkout.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages("src", include=["ocrexp*", "hydra_plugins*"]) + ["ocrexp.conf", "ocrexp.experiments"],
    package_dir={"": "src", "ocrexp.conf": "conf", "ocrexp.experiments": "experiments"},
    package_data={"ocrexp.conf": ["**/*.yaml"], "ocrexp.experiments": ["*.yaml", "*.md"]},
)
