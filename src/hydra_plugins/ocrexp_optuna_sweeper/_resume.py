"""Who runs which trial, so that a resumed or concurrent sweep can tell live trials from orphans.

Every trial a sweep process starts carries its owner (host, pid and a random token) and a
heartbeat timestamp that the owner refreshes while the trial runs. A RUNNING trial is an orphan
when its owner is gone: on the same host its pid no longer exists (or is ours under another
token), anywhere its heartbeat is older than ``stale_after``. Orphans become FAIL with the reason
recorded and, when asked, their parameters are queued again for the next trial.

The owner is the sweep process, not the job that trains the trial: MLflow runs carry their own
process and heartbeat (``ocrexp.tracking.liveness``), judged the same way (``ocrexp.processes``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from ocrexp import processes
from ocrexp.sweep_protocol import FAIL_KIND, FAIL_REASON, RETRY_OF

OWNER = "ocrexp.owner"
HEARTBEAT = "ocrexp.heartbeat"

log = logging.getLogger(__name__)


class Ownership:
    """This process's claim on its running trials, kept fresh by a heartbeat thread."""

    def __init__(self, storage: Any, heartbeat_interval: float = 30.0):
        self.storage = storage
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self.interval = max(float(heartbeat_interval), 0.1)
        self.stale_after = max(4 * self.interval, 10.0)
        self._mine: dict[int, int] = {}  # trial number -> trial id
        self._lock = threading.Lock()
        self._heartbeat: processes.Heartbeat | None = None

    # -- our trials ------------------------------------------------------------------------------
    def claim(self, trial: Any) -> None:
        """Mark a freshly asked trial as ours."""
        trial.set_user_attr(OWNER, {"host": self.host, "pid": self.pid, "token": self.token})
        trial.set_user_attr(HEARTBEAT, time.time())
        trial_id = trial_id_of(self.storage, trial.study.study_name, trial.number)
        with self._lock:
            self._mine[trial.number] = trial_id

    def trial_id(self, trial: Any) -> int:
        """The storage's id of ``trial``, one of ours."""
        with self._lock:
            return self._mine[trial.number]

    def release(self, trial: Any) -> None:
        with self._lock:
            self._mine.pop(trial.number, None)

    def mine(self) -> list[int]:
        """The ids of our running trials."""
        with self._lock:
            return sorted(self._mine.values())

    def start(self) -> None:
        self._heartbeat = processes.Heartbeat(self.interval, self._beat, name="optuna-heartbeat")

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def _beat(self) -> None:
        for trial_id in self.mine():
            try:
                self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
            except Exception:  # finished meanwhile, or a storage hiccup: the next beat retries
                pass

    # -- other processes' trials -----------------------------------------------------------------
    def orphan_reason(self, trial: Any, now: float | None = None) -> str | None:
        """Why a RUNNING trial has no live owner, or None when it may still be running."""
        now = time.time() if now is None else now
        owner = trial.user_attrs.get(OWNER) or {}
        if owner.get("token") == self.token:
            return None
        host, pid = owner.get("host"), owner.get("pid")
        if host == self.host and isinstance(pid, int) and (pid == self.pid or not processes.alive(pid)):
            return f"its sweep process (pid {pid} on {host}) is gone"
        beat = trial.user_attrs.get(HEARTBEAT)
        if beat is None and trial.datetime_start is not None:
            beat = trial.datetime_start.timestamp()
        if beat is not None and now - float(beat) > self.stale_after:
            who = f"pid {pid} on {host}" if owner else "an unknown process"
            return f"no heartbeat from {who} for {now - float(beat):.0f} s"
        return None

    def reap(self, study: Any, trials: list[Any], requeue: bool) -> list[str]:
        """Fail (and optionally re-queue) every orphaned RUNNING trial; one log line each."""
        from optuna.trial import TrialState

        lines = []
        for trial in trials:
            if trial.state != TrialState.RUNNING or trial.number in self._mine:
                continue
            reason = self.orphan_reason(trial)
            if reason is None:
                continue
            retry = mark_failed(study, self.storage, trial, "orphaned", f"left RUNNING: {reason}", requeue)
            if retry is False:
                continue  # another process got there first
            line = f"trial {trial.number} was left RUNNING ({reason}): marked FAIL"
            lines.append(line + (f", its parameters queued again as trial {retry}" if retry is not None else ""))
            log.warning(lines[-1])
        return lines


def trial_id_of(storage: Any, study_name: str, number: int) -> int:
    """The id in ``storage`` of trial ``number`` of the study ``study_name`` (Optuna keeps the id that
    its trials carry private)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def mark_failed(study: Any, storage: Any, trial: Any, kind: str, reason: str, requeue: bool) -> int | None | bool:
    """Set a RUNNING trial to FAIL with ``kind`` and ``reason``.

    Returns False when the trial had already finished (another process won), else the number of
    the trial queued with the same parameters, or None when nothing was queued.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial_id = trial_id_of(storage, study.study_name, trial.number)
    try:
        storage.set_trial_user_attr(trial_id, FAIL_KIND, kind)
        storage.set_trial_user_attr(trial_id, FAIL_REASON, reason[:2000])
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except (UpdateFinishedTrialError, RuntimeError):
        return False
    if not requeue or not trial.params:
        return None
    study.enqueue_trial(dict(trial.params), user_attrs={RETRY_OF: trial.number})
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return max((t.number for t in waiting if t.user_attrs.get(RETRY_OF) == trial.number), default=None)
