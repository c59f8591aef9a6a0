"""uv.lock, the exact versions `make train`, `make test` and CI install, agrees with pyproject.toml.

`uv sync --frozen` installs the lock without looking at pyproject.toml, so a range changed there and
not locked again would go unnoticed until someone ran `uv lock`. uv records the project's own
requirements in the lock; these tests compare them with pyproject.toml, offline.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.project import REPO

REFRESH = "run `make lock` (uv lock --upgrade), then `make test`, and commit uv.lock"
# Libraries whose private internals ocrexp's compat modules use: these must run at the locked versions.
CHECKED = ("tensorflow", "keras", "mlflow", "optuna", "hydra-core", "omegaconf")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _lock() -> dict:
    return tomllib.loads((REPO / "uv.lock").read_text())


def _locked_project(lock: dict) -> dict:
    name = _pyproject()["project"]["name"]
    return next(p for p in lock["package"] if p["name"] == name)


def _requirement_key(name: str, specifier: str, extras=(), marker: str | None = None) -> tuple:
    req = Requirement(f"{name}{'[' + ','.join(sorted(extras)) + ']' if extras else ''}{specifier}"
                      f"{'; ' + marker if marker else ''}")
    return (canonicalize_name(req.name), tuple(sorted(req.extras)), str(req.specifier),
            str(req.marker) if req.marker else "")


def pyproject_requirements(project: dict) -> set[tuple]:
    """pyproject.toml's dependencies and extras as (name, extras, specifier, marker) keys."""
    keys = set()
    for text in project["dependencies"]:
        req = Requirement(text)
        keys.add(_requirement_key(req.name, str(req.specifier), req.extras, str(req.marker) if req.marker else None))
    for extra, texts in project.get("optional-dependencies", {}).items():
        for text in texts:
            req = Requirement(text)
            marker = f'extra == "{extra}"' + (f" and ({req.marker})" if req.marker else "")
            keys.add(_requirement_key(req.name, str(req.specifier), req.extras, marker))
    return keys


def lock_requirements(locked_project: dict) -> set[tuple]:
    """What uv recorded of pyproject.toml's requirements when it wrote the lock."""
    return {_requirement_key(r["name"], r.get("specifier", ""), r.get("extras", ()), r.get("marker"))
            for r in locked_project["metadata"]["requires-dist"]}


def test_the_lock_was_made_from_pyproject_as_it_is():
    project, lock = _pyproject()["project"], _lock()
    in_pyproject, in_lock = pyproject_requirements(project), lock_requirements(_locked_project(lock))
    assert in_pyproject == in_lock, (
        f"uv.lock is out of date with pyproject.toml: {REFRESH}.\n"
        f"only in pyproject.toml: {sorted(in_pyproject - in_lock)}\nonly in uv.lock: {sorted(in_lock - in_pyproject)}")
    assert lock["requires-python"] == project["requires-python"], REFRESH
    assert sorted(_locked_project(lock)["metadata"]["provides-extras"]) == sorted(project["optional-dependencies"])


def test_the_comparison_notices_a_changed_range():
    """The check above can fail: a bound changed in pyproject.toml alone is caught."""
    project = _pyproject()["project"]
    changed = {**project, "dependencies": [d.replace("mlflow>=3.0,<4", "mlflow>=3.0,<5") for d in project["dependencies"]]}
    assert changed["dependencies"] != project["dependencies"], "pyproject.toml no longer pins mlflow as this test expects"
    assert pyproject_requirements(changed) != lock_requirements(_locked_project(_lock()))


def test_the_libraries_ocrexp_hooks_into_have_an_upper_bound_at_the_next_major():
    for text in _pyproject()["project"]["dependencies"]:
        req = Requirement(text)
        if canonicalize_name(req.name) in {"tensorflow", "keras", "mlflow", "optuna", "hydra-core"}:
            assert any(spec.operator == "<" for spec in req.specifier), f"{text}: add an upper bound at the next major"


@pytest.mark.parametrize("name", CHECKED)
def test_the_suite_runs_at_the_locked_versions(name):
    """The environment running the tests has the locked version of each library ocrexp reaches into
    (where the lock has one version of it for every platform)."""
    versions = {p["version"] for p in _lock()["package"] if canonicalize_name(p["name"]) == name}
    assert versions, f"{name} is not in uv.lock"
    if len(versions) > 1:
        pytest.skip(f"uv.lock holds several versions of {name} for different platforms")
    installed = metadata.version(name)
    assert installed in versions, (f"{name} {installed} is installed but uv.lock has {versions.pop()}: "
                                   f"install the lock with `make test`, or {REFRESH}")
