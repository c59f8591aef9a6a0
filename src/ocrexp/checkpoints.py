"""Per-epoch checkpoints: an interrupted run goes on from its last finished epoch.

Where: ``paths.checkpoint_dir`` (``<project>/checkpoints``, git-ignored), one folder per composed
config (``<key>``; ``<key>.1``, ``<key>.2``… while runs of one config overlap) holding
``config.yaml`` (what ``ocrexp resume`` runs again), ``lock`` (an ``fcntl`` lock held by the
process that trains, so the kernel releases it when that process dies, ``kill -9`` included) and
``state.npz``: every variable of the model being fit (weights, and the random-generator states of
its augmentation and dropout layers), the optimizer's variables (step, learning rate, moments), the
epoch and phase, the metric history, best-epoch tracking, early stopping's and reduce-on-plateau's
counters, the training time so far and the MLflow run to continue. The data order needs no state:
epoch e's permutation is seeded by ``(seed, e)`` (``data.pipeline.EpochStream``).

``state.npz`` is written after every epoch to a temporary file that then replaces the last one, so
a kill at any moment leaves either the previous epoch's state or this one's. The folder is removed
when the run finishes (``trainer.keep_checkpoint`` keeps it).

With a tracking server each checkpoint is also stored with its MLflow run
(``ocrexp.tracking.checkpoint_artifacts``), so that another machine can go on from it.

Keras' ``BackupAndRestore`` was the first choice and does not fit: it restores one ``fit`` call's
model, optimizer and epoch, but not the state of other callbacks (best weights, early stopping,
plateau), the history, or a run of several ``fit`` calls (frozen base, then fine-tuning); and the
data order after its restore differs from an uninterrupted run's.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ocrexp.errors import OcrexpError

FORMAT = 1
STATE, CONFIG, LOCK = "state.npz", "config.yaml", "lock"
MAX_SLOTS = 64
# Settings that say how to treat a checkpoint, not what is trained: they do not change the key.
NOT_KEYED = ("resume", "keep_checkpoint", "verbose")

log = logging.getLogger("ocrexp.train")


def config_key(cfg: DictConfig, study: str | None = None) -> str:
    """What identifies "the same command": the composed config (unresolved, so that the machine's
    paths do not count), without the settings in ``NOT_KEYED``; and the study, inside a sweep."""
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("paths", None)
    for name in NOT_KEYED:
        data.get("trainer", {}).pop(name, None)
    text = json.dumps([data, study], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Progress:
    """Where the run stands on its epoch axis; what ``state.npz`` holds besides the arrays."""

    epoch: int = 0  # epochs finished, over all phases
    phase: int = 0  # the phase that epoch belongs to
    phase_start: int = 0  # the epoch that phase started after
    phase_done: bool = False  # the phase ended (all its epochs, or early stopping)
    history: dict[str, list[float]] = field(default_factory=dict)
    spans: list[str] = field(default_factory=list)  # "train:1-3" for each finished phase
    train_time_s: float = 0.0
    train_cpu_s: float = 0.0
    best: float | None = None  # BestWeights' best value and epoch
    best_epoch: int | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    run_id: str | None = None
    trial: int | None = None  # the Optuna trial number that wrote it, inside a sweep

    def resumes_in(self, phase: int) -> bool:
        """Whether training continues inside ``phase`` (with its optimizer) rather than after it."""
        return phase == self.phase and not self.phase_done and self.epoch > self.phase_start

    def skips(self, phase: int) -> bool:
        return phase < self.phase or (phase == self.phase and self.phase_done)


@dataclass
class Checkpoint:
    """What ``state.npz`` held: the progress and the arrays."""

    progress: Progress
    arrays: dict[str, np.ndarray]

    def group(self, prefix: str) -> list[np.ndarray]:
        n = int(self.arrays.get(f"{prefix}#", np.array(0)))
        return [self.arrays[f"{prefix}/{i}"] for i in range(n)]


class Slot:
    """One checkpoint folder, locked by this process for as long as it trains."""

    def __init__(self, folder: Path, lock_fd: int, keep: bool, trial: int | None = None):
        self.folder, self._lock_fd, self.keep, self.trial = folder, lock_fd, keep, trial
        self.resumed: Checkpoint | None = None
        # With a tracking server: uploads each checkpoint to the run (tracking.checkpoint_artifacts).
        self.uploads = None
        self.fetched_from: str | None = None  # the run on the tracking server whose checkpoint this resumes

    @property
    def state_file(self) -> Path:
        return self.folder / STATE

    def read(self) -> Checkpoint | None:
        return read_state(self.state_file)

    def save(self, progress: Progress, groups: dict[str, list[np.ndarray]]) -> None:
        """Replace ``state.npz`` atomically: a kill leaves the previous epoch's state or this one's."""
        arrays = {"progress": np.array(json.dumps(progress.__dict__)), "format": np.array(FORMAT)}
        for prefix, values in groups.items():
            arrays[f"{prefix}#"] = np.array(len(values))
            arrays.update({f"{prefix}/{i}": np.asarray(v) for i, v in enumerate(values)})
        tmp = self.folder / f".{STATE}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_file)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise OcrexpError(f"no space left for the checkpoint in {self.folder}: free some space, then run "
                                  "the same command again to go on from the last saved epoch.") from None
            raise
        if self.uploads is not None:
            self.uploads.push(self.folder, (STATE, CONFIG), progress.epoch, progress.phase_done)

    def finish(self) -> None:
        """The run is over: remove the folder (unless kept), and its copy on the tracking server, and
        let go of it."""
        if self.uploads is not None and not self.keep:
            self.uploads.delete()
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Let go of the folder; one that never got a checkpoint (the run failed before its first
        epoch ended) is removed, so nothing is left that a rerun could mistake for progress."""
        if self.uploads is not None:
            self.uploads.close()
        if self._lock_fd >= 0 and not self.state_file.exists():
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = -1


def read_state(path: Path) -> Checkpoint | None:
    """The checkpoint in ``path``, or None when there is none (or it is not one this version reads)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        if int(arrays.pop("format")) != FORMAT:
            return None
        progress = Progress(**json.loads(str(arrays.pop("progress"))))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable checkpoint %s (%s); training starts at epoch 1", path, exc)
        return None
    return Checkpoint(progress, arrays)


def _try_lock(folder: Path) -> int | None:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def claim(cfg: DictConfig, *, study: str | None = None, trial: int | None = None, retry_of: int | None = None,
          folder: Path | None = None) -> Slot:
    """The checkpoint folder this run writes to, with the checkpoint it resumes from (if any).

    The first folder of this config that no live process holds is taken. Outside a sweep its
    checkpoint is resumed (``trainer.resume=auto``); inside one, only the checkpoint written by the
    trial this one retries (``retry_of``). With ``folder`` (``ocrexp resume``), that folder's.
    """
    if folder is not None:
        return _claim_folder(cfg, Path(folder))
    root = Path(cfg.paths.checkpoint_dir)
    key = config_key(cfg, study)
    auto = str(getattr(cfg.trainer.resume, "value", cfg.trainer.resume)) == "auto"
    try:
        for n in range(MAX_SLOTS):
            folder = root / (key if n == 0 else f"{key}.{n}")
            fd = _try_lock(folder)
            if fd is None:
                continue  # a live run of this config trains here
            slot = Slot(folder, fd, bool(cfg.trainer.keep_checkpoint), trial)
            found = slot.read() if auto else None
            if found is not None and not _belongs(found.progress, study, retry_of):
                slot.release()  # another trial's or run's: left for whoever resumes it
                continue
            slot.resumed = found
            if found is None:
                slot.state_file.unlink(missing_ok=True)  # trainer.resume=never: start over
            (folder / CONFIG).write_text(OmegaConf.to_yaml(cfg))
            return slot
    except PermissionError:
        raise OcrexpError(f"cannot write checkpoints to {root}: make it writable, or point "
                          "paths.checkpoint_dir somewhere writable.") from None
    raise OcrexpError(f"{MAX_SLOTS} runs of this config already hold checkpoints in {root}; "
                      "let them finish or remove that folder.")


def _claim_folder(cfg: DictConfig, folder: Path) -> Slot:
    fd = _try_lock(folder)
    if fd is None:
        raise OcrexpError(f"the run checkpointed in {folder} is still training (pid {held_by(folder)}); "
                          "wait for it, or stop it first.")
    slot = Slot(folder, fd, bool(cfg.trainer.keep_checkpoint))
    slot.resumed = slot.read()
    return slot


def free_folder(cfg: DictConfig, run_id: str) -> Path:
    """A folder of ``cfg``'s where the checkpoint of ``run_id`` can be put (``ocrexp resume`` on a
    machine that did not train it): no live process holds it and it holds no other run's checkpoint."""
    root = Path(cfg.paths.checkpoint_dir)
    key = config_key(cfg)
    for n in range(MAX_SLOTS):
        folder = root / (key if n == 0 else f"{key}.{n}")
        fd = _try_lock(folder)
        if fd is None:
            continue
        found = read_state(folder / STATE)
        os.close(fd)
        if found is None or found.progress.run_id == run_id:
            return folder
    raise OcrexpError(f"{MAX_SLOTS} runs of this config already hold checkpoints in {root}; "
                      "let them finish or remove that folder.")


def _belongs(progress: Progress, study: str | None, retry_of: int | None) -> bool:
    if study is not None:
        return retry_of is not None and progress.trial == retry_of
    return True


def held_by(folder: Path) -> int | None:
    """The pid of the live process that holds ``folder``, or None when no process does."""
    fd = _try_lock(folder) if folder.is_dir() else None
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int((folder / LOCK).read_text() or 0) or None
    except (OSError, ValueError):
        return None
