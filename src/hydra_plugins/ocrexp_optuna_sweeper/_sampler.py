"""The study's sampler, from whatever ``hydra.sweeper.sampler`` holds.

That is an option of the ``hydra/sweeper/sampler`` config group (``{_target_: …, <arguments>}``,
tpe by default), a name (``random``: that option's defaults), or a mapping of the user's own with a
``_target_`` (or ocrexp's older ``name``). A mapping in a config file merges into the group's
option, so when its ``_target_`` names another sampler, the option's arguments still at their
defaults came along unasked: they are dropped, and the rest are checked against the sampler's own.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from . import _search_space
from ._errors import SweeperError
from .config import SAMPLERS

# Samplers ocrexp no longer ships -> why, and what to use instead.
REMOVED_SAMPLERS = {"rung_tpe": ("it sampled no better than plain TPE", "tpe")}
NEEDS = {"CmaEsSampler": ("cmaes", "cmaes"), "GPSampler": ("torch", "torch")}  # class -> (module, pip package)
_UNSET = object()


def _named(name: Any) -> dict[str, Any]:
    """The group option ``name`` as a mapping."""
    name = str(name).strip().lower()
    if name in REMOVED_SAMPLERS:
        why, instead = REMOVED_SAMPLERS[name]
        raise SweeperError(f"hydra.sweeper.sampler={name!r} was removed from ocrexp ({why}): use {instead} instead.")
    if name not in SAMPLERS:
        raise SweeperError(f"hydra.sweeper.sampler={name!r} is not a known sampler: choose one of {', '.join(SAMPLERS)}.")
    return asdict(SAMPLERS[name]())


def sampler_spec(value: Any, group_choice: str | None = None) -> dict[str, Any]:
    """``{_target_: …, **arguments}`` for ``value``; ``group_choice`` is the ``hydra/sweeper/sampler``
    option the config composed (``hydra.runtime.choices``), whose defaults ``value`` may carry."""
    if value is None or isinstance(value, str):
        return _named(value or group_choice or "tpe")
    if not isinstance(value, Mapping):
        raise SweeperError(f"hydra.sweeper.sampler={value!r} is not allowed: use an option of hydra/sweeper/sampler, "
                           f"a sampler's name, or a mapping with a _target_.")
    spec = {str(k): v for k, v in value.items()}
    if "name" in spec:  # ocrexp's older {name: tpe, <arguments>}
        base = _named(spec.pop("name"))
        spec = {**base, **{k: v for k, v in spec.items() if k != "_target_"}, "_target_": base["_target_"]}
    if "_target_" not in spec:
        raise SweeperError("hydra.sweeper.sampler has no _target_: choose the sampler with hydra/sweeper/sampler=<name> "
                           "or give its class, e.g. _target_: optuna.samplers.TPESampler.")
    chosen = asdict(SAMPLERS[group_choice]()) if group_choice in SAMPLERS else None
    if chosen and spec["_target_"] != chosen["_target_"]:
        spec = {k: v for k, v in spec.items() if k in ("_target_", "seed") or chosen.get(k, _UNSET) != v}
    return spec


def make_sampler(value: Any, seed: int | None, space: _search_space.SearchSpace, group_choice: str | None = None):
    """The Optuna sampler for ``value`` (see ``sampler_spec``), seeded with ``seed`` unless it has its own."""
    from hydra.utils import get_class, instantiate
    from optuna.exceptions import ExperimentalWarning

    spec = sampler_spec(value, group_choice)
    target = str(spec["_target_"])
    try:
        cls = get_class(target)
    except Exception:
        raise SweeperError(f"hydra.sweeper.sampler._target_={target} is not a class that can be imported: "
                           f"use an optuna.samplers class, e.g. optuna.samplers.TPESampler.") from None
    needs = NEEDS.get(cls.__name__)
    if needs and importlib.util.find_spec(needs[0]) is None:
        others = ", ".join(n for n, c in SAMPLERS.items() if c._target_.rpartition(".")[2] not in NEEDS)
        raise SweeperError(f"the {cls.__name__} sampler needs the {needs[1]} package: pip install {needs[1]}, "
                           f"or choose another sampler ({others}).")
    # None is every plain argument's default; passing it would wake Optuna's deprecation warnings.
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_") and v is not None}
    if seed is not None:
        kwargs.setdefault("seed", seed)
    _check_arguments(cls, kwargs)
    if cls.__name__ == "GridSampler":
        kwargs["search_space"] = _search_space.grid_values(space)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # qmc, gp
            return instantiate({"_target_": target, **kwargs}, _convert_="all")
    except Exception as exc:
        cause = exc.__cause__ or exc
        detail = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise SweeperError(f"hydra.sweeper.sampler: {cls.__name__} rejects {sorted(kwargs)}: {detail.rstrip('.')}.") \
            from None


def _check_arguments(cls: type, kwargs: Mapping[str, Any]) -> None:
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        takes = [n for n, p in params.items() if n != "search_space" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
        raise SweeperError(f"hydra.sweeper.sampler: {cls.__name__} takes no {', '.join(unknown)} "
                           f"(it takes {', '.join(takes)}): remove {'it' if len(unknown) == 1 else 'them'}, or replace the "
                           f"whole sampler with hydra.sweeper.sampler=<name>.")
