"""Opening the study: its name, its storage, its sampler's seed and its pruner, and counting its trials."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrexp.config import plain
from ocrexp.errors import ConfigError
from ocrexp.pruning import make_pruner, open_storage
from ocrexp.sweep_protocol import FAIL_KIND, PRUNER_ATTR, journal_path, redact

from . import _search_space
from ._errors import SweeperError

DIRECTIONS = ("maximize", "minimize")


def directions_of(direction: Any, directions: Any) -> list[str]:
    """``direction`` (a word or a list) or ``directions`` as a checked list of words."""
    raw = directions if directions else direction
    items = [raw] if isinstance(raw, str) else list(raw or [])
    out = [str(d).strip().lower() for d in items]
    bad = [d for d in out if d not in DIRECTIONS]
    if not out or bad:
        raise SweeperError(f"hydra.sweeper.direction={raw!r} is not allowed: use maximize or minimize, "
                           f"or a list of them for several objectives.")
    return out


def default_study_name(prefix: str, space: _search_space.SearchSpace, directions: list[str]) -> str:
    """``<prefix>-<hash of space, fixed overrides and directions>``: the same command resumes the
    same study; a different space or different overrides start a new one."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix or "sweep")
    return f"{prefix}-{space.fingerprint(directions)}"


def storage_url(storage: str | None, study_name: str, root: Path) -> str:
    """The storage to use: an RDB URL as given, a journal file path (relative to ``root``), or by
    default the journal ``<root>/mlruns/optuna/<study>.journal``, safe for parallel processes."""
    if not storage:
        return str(journal_path(root, study_name))
    if "://" in storage:
        return storage
    path = Path(storage).expanduser()
    return str(path if path.is_absolute() else root / path)


def is_server_url(url: str) -> bool:
    """A database server (PostgreSQL, MySQL) that workers on several machines may share."""
    return "://" in url and not url.startswith("sqlite")


def effective_seed(seed: int | None, n_existing: int, shared: bool) -> int | None:
    """The sampler's seed for this run: ``seed`` for a new study (repeatable), ``seed + n_existing``
    on resume (a resumed sampler must not replay the first run's draws), and mixed with host and
    pid when other workers share the study, so that no two workers draw the same parameters."""
    if seed is None:
        return None
    if not shared:
        return seed + n_existing
    import os
    import socket
    import zlib

    return zlib.crc32(f"{seed}:{n_existing}:{socket.gethostname()}:{os.getpid()}".encode()) & 0x7FFFFFFF


def check_pruner(spec: Any, directions: list[str]) -> Any:
    """The pruner for ``spec``, refusing pruning with several objectives (Optuna cannot)."""
    try:
        pruner = make_pruner(spec)
    except ConfigError as exc:
        raise SweeperError(str(exc)) from None
    if len(directions) > 1 and type(pruner).__name__ != "NopPruner":
        raise SweeperError(f"hydra.sweeper.pruner={spec!r} cannot prune a study with {len(directions)} objectives: "
                           f"set hydra.sweeper.pruner=none.")
    return pruner


def open_study(name: str, url: str, pruner: Any, pruner_spec: Any, directions: list[str]):
    """Create the study, or load it when it exists with the same directions; returns (study, storage).

    The caller sets ``study.sampler`` afterwards, seeded from what the study already holds.
    """
    import optuna

    try:
        storage = open_storage(url)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}".strip().splitlines()[0].rstrip(".")
        raise SweeperError(f"cannot open the Optuna storage {redact(url)}: {detail}.") from None
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(),
                                pruner=pruner, directions=directions, load_if_exists=True)
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise SweeperError(f"study {name!r} in {redact(url)} optimises {existing}, not {directions}: "
                           f"set hydra.sweeper.study_name to start another study.")
    # Jobs rebuild the pruner from this attribute (pruning.TrialReporter).
    study.set_user_attr(PRUNER_ATTR, plain(pruner_spec))
    return study, storage


@dataclass
class Counts:
    """Trials by state, plus the task failures that count against ``max_failure_rate``."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0
    task_failures: int = 0

    @property
    def done(self) -> int:
        """Trials that produced a result: these count toward ``n_trials``."""
        return self.complete + self.pruned

    @classmethod
    def of(cls, trials: list[Any]) -> "Counts":
        from optuna.trial import TrialState

        c = cls()
        for t in trials:
            if t.state == TrialState.COMPLETE:
                c.complete += 1
            elif t.state == TrialState.PRUNED:
                c.pruned += 1
            elif t.state == TrialState.FAIL:
                c.failed += 1
                c.task_failures += t.user_attrs.get(FAIL_KIND, "error") == "error"
            elif t.state == TrialState.RUNNING:
                c.running += 1
            elif t.state == TrialState.WAITING:
                c.waiting += 1
        return c

    def as_dict(self) -> dict[str, int]:
        return {"COMPLETE": self.complete, "PRUNED": self.pruned, "FAIL": self.failed,
                "RUNNING": self.running, "WAITING": self.waiting}
