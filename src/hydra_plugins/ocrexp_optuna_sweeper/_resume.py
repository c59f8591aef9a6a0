"""Who runs which trial, so that a resumed or concurrent sweep can tell live trials from orphans.

Every trial a sweep process starts carries its owner (host, pid and a random token) and a
heartbeat timestamp that the owner refreshes while the trial runs. A RUNNING trial is an orphan
when its owner is gone: on the same host its pid no longer exists (or is ours under another
token), anywhere its heartbeat is older than ``stale_after``. Orphans become FAIL with the reason
recorded and, when asked, their parameters are queued again for the next trial.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ocrexp.sweep_protocol import FAIL_KIND, FAIL_REASON, RETRY_OF

OWNER = "ocrexp.owner"
HEARTBEAT = "ocrexp.heartbeat"

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Ownership:
    """This process's claim on its running trials, kept fresh by a heartbeat thread."""

    def __init__(self, storage: Any, heartbeat_interval: float = 30.0):
        self.storage = storage
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = uuid.uuid4().hex
        self.interval = max(float(heartbeat_interval), 0.1)
        self.stale_after = max(4 * self.interval, 10.0)
        self._mine: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- our trials ------------------------------------------------------------------------------
    def claim(self, trial: Any) -> None:
        """Mark a freshly asked trial as ours."""
        trial.set_user_attr(OWNER, {"host": self.host, "pid": self.pid, "token": self.token})
        trial.set_user_attr(HEARTBEAT, time.time())
        with self._lock:
            self._mine.add(trial._trial_id)

    def release(self, trial_id: int) -> None:
        with self._lock:
            self._mine.discard(trial_id)

    def mine(self) -> list[int]:
        with self._lock:
            return sorted(self._mine)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
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
        if host == self.host and isinstance(pid, int) and (pid == self.pid or not pid_alive(pid)):
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
            if trial.state != TrialState.RUNNING or trial._trial_id in self._mine:
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


def mark_failed(study: Any, storage: Any, trial: Any, kind: str, reason: str, requeue: bool) -> int | None | bool:
    """Set a RUNNING trial to FAIL with ``kind`` and ``reason``.

    Returns False when the trial had already finished (another process won), else the number of
    the trial queued with the same parameters, or None when nothing was queued.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial_id = trial._trial_id
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
