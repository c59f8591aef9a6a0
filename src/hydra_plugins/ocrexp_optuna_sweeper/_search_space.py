"""Search spaces: Hydra's sweep syntax (and a dict form) to Optuna distributions, and back to overrides.

Mapping, the same as the official hydra-optuna-sweeper so existing ``hparams_search`` files move over:

==============================================  ===============================================
``choice(a, b, c)`` or ``a,b,c``                 categorical over the values
``range(low, high[, step])`` (ints)              IntDistribution, ``low`` and ``high`` included
``range(low, high, step)`` (a float anywhere)    FloatDistribution with ``step``, both ends included
``interval(low, high)``                          FloatDistribution, ``low <= x <= high``
``int(interval(low, high))``                     IntDistribution, both ends included
``tag(log, interval(...))``                      the same with ``log=True`` (low > 0)
``shuffle(range(...))``                          categorical over the range's values
anything else (``3``, ``cnn``, ``[1,2]``)         a fixed value passed to every trial
==============================================  ===============================================

Unlike Hydra's basic sweeper, where ``range`` stops before ``high``, ``high`` is a candidate when it
lies on the step grid (``range(32, 128, 32)`` is 32, 64, 96, 128); otherwise the grid ends below it.
The dict form ``{type: float|int|categorical, low:, high:, step:, log:, choices:}`` says the same; the
official sweeper's older ``search_space`` block, made of such dicts, is read as ``params``
(``from_older_form``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from ._errors import SweeperError

SYNTAX = ("choice(a,b,...), range(low,high[,step]), interval(low,high), int(interval(low,high)), "
          "tag(log,interval(low,high)), a {type: float|int|categorical, ...} mapping, or a fixed value")
DICT_KEYS = ("type", "low", "high", "step", "log", "choices")


@dataclass
class SearchSpace:
    """What the sweeper samples (``distributions``) and what every trial gets unchanged (``fixed``).

    ``keys`` maps an Optuna parameter name to the override key that sets it (which may carry a
    ``+``/``++`` prefix); ``fixed`` holds complete override strings.
    """

    distributions: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    custom: str | None = None  # the dotted path of hydra.sweeper.custom_search_space

    def overrides(self, params: Mapping[str, Any], distributions: Mapping[str, Any] | None = None) -> list[str]:
        """The override strings for one trial: fixed values first, then the sampled ones (a
        parameter that ``custom`` suggested is its own override key; ``distributions`` has its own)."""
        dists = {**(distributions or {}), **self.distributions}
        sampled = [f"{self.keys.get(name, name)}={format_value(value, dists.get(name))}"
                   for name, value in params.items()]
        return [*self.fixed, *sampled]

    def fixed_values(self) -> dict[str, str]:
        """``{key: value}`` of the fixed overrides (``""`` for a deletion such as ``~key``)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser = OverridesParser.create()
        out = {}
        for line in self.fixed:
            override = parser.parse_override(line)
            out[_name(override.get_key_element())] = override.get_value_element_as_str() if "=" in line else ""
        return out

    def describe(self) -> dict[str, str]:
        """``{param: readable distribution}``, e.g. ``"int in [32, 128] step 32"``, and the
        ``custom_search_space`` function when there is one."""
        out = {name: describe(dist) for name, dist in self.distributions.items()}
        if self.custom:
            out["custom_search_space"] = self.custom
        return out

    def fingerprint(self, directions: list[str]) -> str:
        """A short hash of the space, the fixed overrides and the directions (default study names)."""
        blob = json.dumps([self.describe(), sorted(self.fixed), directions], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]


def build(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """The search space from ``hydra.sweeper.params`` and the command-line ``arguments``.

    A command-line override replaces a ``params`` entry with the same key, whether it sweeps
    (``optimizer.lr=interval(1e-4,1e-2)``) or fixes (``optimizer.lr=1e-3``) the value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    entries: dict[str, tuple[str, Any]] = {}  # param name -> (override key, distribution | fixed line)
    for key, value in (params or {}).items():
        name, entry = _from_params_entry(parser, str(key), value)
        entries[name] = entry
    for line in arguments:
        override = parser.parse_override(line)  # Hydra has already parsed these once
        name = _name(override.get_key_element())
        entries.pop(name, None)
        entry = _distribution(override, line) if override.is_sweep_override() else line
        entries[name] = (override.get_key_element(), entry)
    space = SearchSpace()
    for name, (key, entry) in entries.items():
        if isinstance(entry, str):
            space.fixed.append(entry)
        else:
            space.distributions[name] = entry
            space.keys[name] = key
    return space


def _name(key: str) -> str:
    return key.lstrip("+~")


def _from_params_entry(parser, key: str, value: Any) -> tuple[str, tuple[str, Any]]:
    if isinstance(value, Mapping):
        return _name(key), (key, from_dict(key, value))
    if isinstance(value, str):
        line = f"{key}={value}"
        try:
            override = parser.parse_override(line)
        except Exception as exc:
            raise SweeperError(f"hydra.sweeper.params.{key}={value!r} is not a valid search space "
                               f"({_first_line(exc)}): use {SYNTAX}.") from None
        if override.is_sweep_override():
            return _name(key), (override.get_key_element(), _distribution(override, f"hydra.sweeper.params.{line}"))
        return _name(key), (key, line)
    return _name(key), (key, f"{key}={format_value(value)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _distribution(override, where: str):
    """The Optuna distribution for one sweep override (``where`` names it in errors)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    tags = set(getattr(value, "tags", None) or ())
    if tags - {"log"}:
        raise SweeperError(f"{where}: tag {sorted(tags - {'log'})[0]!r} means nothing to the Optuna sweeper; "
                           f"the only tag is log.")
    log = "log" in tags
    try:
        if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
            return CategoricalDistribution(_choices(override, where))
        if isinstance(value, RangeSweep):
            start, stop, step = value.start, value.stop, value.step
            if step is None or step <= 0 or stop < start:
                raise SweeperError(f"{where}: range needs low <= high and a positive step.")
            if any(isinstance(v, float) for v in (start, stop, step)):
                return FloatDistribution(float(start), _on_grid(start, stop, step), step=float(step), log=log)
            return IntDistribution(int(start), int(start + (stop - start) // step * step), step=int(step), log=log)
        if isinstance(value, IntervalSweep):
            if isinstance(value.start, int) and isinstance(value.end, int):
                return IntDistribution(value.start, value.end, log=log)
            return FloatDistribution(float(value.start), float(value.end), log=log)
    except ValueError as exc:  # Optuna's own checks: low > high, log with low <= 0, ...
        raise SweeperError(f"{where}: {exc}") from None
    raise SweeperError(f"{where} is not a search space the Optuna sweeper understands: use {SYNTAX}.")


def _choices(override, where: str) -> list[Any]:
    choices = list(override.sweep_iterator())
    for c in choices:
        if not (c is None or isinstance(c, (bool, int, float, str))):
            raise SweeperError(f"{where}: choice values must be numbers, strings or booleans, not {c!r}.")
    return choices


def _on_grid(start: float, stop: float, step: float) -> float:
    """The largest ``start + k*step <= stop``, computed in decimal so 0.2 + 3*0.1 is 0.5."""
    d_start, d_step = Decimal(str(start)), Decimal(str(step))
    k = int((Decimal(str(stop)) - d_start) // d_step)
    return float(d_start + k * d_step)


def from_dict(key: str, spec: Mapping[str, Any], where: str | None = None):
    """The dict form: ``{type: float|int|categorical, low, high, step, log, choices}``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    where = where or f"hydra.sweeper.params.{key}"
    extra = set(spec) - set(DICT_KEYS)
    if extra:
        raise SweeperError(f"{where}: unknown key {sorted(extra)[0]!r}; the dict form takes {', '.join(DICT_KEYS)}.")
    kind = spec.get("type") or ("categorical" if "choices" in spec else None)
    if kind is None and "low" in spec and "high" in spec:
        kind = "int" if all(isinstance(spec.get(k), int) for k in ("low", "high")) and not spec.get("log") else "float"
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(spec["choices"]))
        if kind in ("float", "int"):
            low, high = spec["low"], spec["high"]
            if kind == "int":
                return IntDistribution(int(low), int(high), step=int(spec.get("step") or 1), log=bool(spec.get("log")))
            return FloatDistribution(float(low), float(high), step=spec.get("step"), log=bool(spec.get("log")))
    except KeyError as exc:
        raise SweeperError(f"{where}: type {kind} needs {exc.args[0]!r}.") from None
    except (ValueError, TypeError) as exc:
        raise SweeperError(f"{where}: {exc}") from None
    raise SweeperError(f"{where}: type {spec.get('type')!r} is not one of float, int, categorical.")


def from_older_form(search_space: Mapping[str, Any]) -> dict[str, str]:
    """The official sweeper's older ``search_space`` block (``{key: {type, low, high, ...}}``) as
    ``params`` entries in the override syntax, e.g. ``{"optimizer.lr": "tag(log, interval(0.0001, 0.1))"}``."""
    out = {}
    for key, spec in search_space.items():
        if not isinstance(spec, Mapping):
            raise SweeperError(f"hydra.sweeper.search_space.{key}={spec!r} is not allowed: each entry is a mapping "
                               f"{{type: float|int|categorical, low, high, step, log, choices}}.")
        out[str(key)] = to_override(from_dict(str(key), spec, where=f"hydra.sweeper.search_space.{key}"))
    return out


def to_override(dist: Any) -> str:
    """A distribution in the override syntax that maps back to it: ``range(32, 128, 32)``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(format_value(c) for c in dist.choices)})"
    is_int = type(dist).__name__ == "IntDistribution"
    low, high = format_value(dist.low), format_value(dist.high)
    if dist.step is not None and not dist.log and (not is_int or dist.step != 1):
        return f"range({low}, {high}, {format_value(dist.step)})"
    text = f"int(interval({low}, {high}))" if is_int else f"interval({low}, {high})"
    return f"tag(log, {text})" if dist.log else text


def describe(dist: Any) -> str:
    """A one-line description: ``float in [0.0001, 0.01] log``, ``choice of [64, 128]``."""
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        return f"choice of {list(dist.choices)}"
    kind = "int" if type(dist).__name__ == "IntDistribution" else "float"
    text = f"{kind} in [{dist.low}, {dist.high}]"
    if dist.log:
        text += " log"
    if getattr(dist, "step", None) not in (None, 1) or (kind == "float" and dist.step is not None):
        text += f" step {dist.step}"
    return text


def grid_values(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler (continuous ranges are refused)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for name, dist in space.distributions.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif getattr(dist, "step", None) is not None:
            n = int(round((dist.high - dist.low) / dist.step))
            grid[name] = [_round_to_step(dist.low + i * dist.step, dist) for i in range(n + 1)]
        else:
            raise SweeperError(f"the grid sampler needs discrete values but {name} is {describe(dist)}: "
                               f"use choice(...) or range(low,high,step) for it.")
    return grid


def _round_to_step(value: float, dist: Any) -> float:
    """Undo float noise on a stepped grid (0.30000000000000004 -> 0.3)."""
    decimals = max(-Decimal(str(dist.step)).as_tuple().exponent, -Decimal(str(dist.low)).as_tuple().exponent, 0)
    return round(value, int(decimals))


def format_value(value: Any, dist: Any = None) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if dist is not None and getattr(dist, "step", None) is not None:
            value = _round_to_step(value, dist)
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if _reads_back(text) else quote(text)


def _reads_back(text: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(f"k={text}")
    except Exception:
        return False
    return not override.is_sweep_override() and override.value() == text and isinstance(override.value(), str)


def quote(text: str) -> str:
    """``text`` as a single-quoted override value (quotes and the backslashes before them escaped,
    ``${`` kept literal)."""
    out, backslashes = [], 0
    for ch in text.replace("${", "\\${"):
        if ch == "\\":
            backslashes += 1
            continue
        if ch == "'":
            out.append("\\" * (2 * backslashes) + "\\'")
        else:
            out.append("\\" * backslashes + ch)
        backslashes = 0
    out.append("\\" * (2 * backslashes))
    return "'" + "".join(out) + "'"
