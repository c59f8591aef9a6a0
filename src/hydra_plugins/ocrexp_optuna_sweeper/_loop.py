"""The asynchronous trial loop: ``n_jobs`` threads, each asking a trial, launching it as a Hydra
batch of one, and telling the result, so a new trial starts as soon as any one finishes.

Budget: ``n_trials`` counts COMPLETE and PRUNED trials in the whole study (earlier runs and other
workers included); FAIL trials are recorded but replaced, and bounded by ``max_failure_rate``. A
thread asks a new trial only while finished + running trials stay below ``n_trials``, and right
after asking it checks that fewer than ``n_trials`` trials numbered before its own may still
succeed. Trial numbers follow creation order, so no two workers can both take the last slot: the
loser marks its trial FAIL (kind ``surplus``) before running anything.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ocrexp.compat.hydra import job_failure
from ocrexp.sweep_protocol import FAIL_KIND, FAIL_REASON, RETRY_OF, JobInterrupted, is_pruned

from ._resume import Ownership, mark_failed
from ._search_space import SearchSpace, format_value, quote
from ._study import Counts

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How one trial ended, as the sweeper tells Optuna."""

    state: str  # COMPLETE | PRUNED | FAIL
    values: list[float] | None = None
    reason: str | None = None
    seconds: float = 0.0
    attrs: dict[str, Any] = field(default_factory=dict)


def outcome_of(ret: Any, n_values: int) -> Outcome:
    """Read a Hydra ``JobReturn``: the task's value(s), a pruned trial, or a failure with its reason."""
    exc = job_failure(ret)
    if exc is not None:
        if is_pruned(exc):
            return Outcome("PRUNED", reason=str(exc))
        return Outcome("FAIL", reason=f"{type(exc).__name__}: {exc}")
    value = ret.return_value
    items = list(value) if hasattr(value, "__iter__") and not isinstance(value, str) else [value]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        return Outcome("FAIL", reason=f"the task returned {value!r}, not a number")
    if len(values) != n_values:
        return Outcome("FAIL", reason=f"the task returned {len(values)} value(s) for {n_values} direction(s)")
    if not all(math.isfinite(v) for v in values):
        return Outcome("FAIL", reason=f"the task returned {', '.join(str(v) for v in values)}")
    return Outcome("COMPLETE", values=values)


class TrialLoop:
    """Runs trials until the study has ``n_trials`` results, the failure budget is spent, or time is up.

    ``launch(overrides, job_idx)`` runs one job and returns its ``JobReturn``; ``env(trial)`` gives
    the per-job environment; ``before_tell(trial, outcome)`` may add user attributes; and
    ``after_tell(frozen_trial, outcome, counts)`` reports progress; ``extend(trial)``, when given,
    suggests more parameters before the trial is launched (``custom_search_space``). On Ctrl-C (or SIGTERM raised as
    one) ``on_interrupt(exc)`` may pass it on to the jobs, which get up to ``grace_s`` to end.
    """

    def __init__(self, *, study: Any, ownership: Ownership, space: SearchSpace,
                 launch: Callable[[list[str], int], Any], env: Callable[[Any], Mapping[str, str]],
                 before_tell: Callable[[Any, Outcome], None], after_tell: Callable[[Any, Outcome, Counts], None],
                 n_trials: int, n_jobs: int, n_values: int, max_failures: int, timeout: float | None,
                 requeue: bool, on_interrupt: Callable[[KeyboardInterrupt], None] = lambda exc: None,
                 extend: Callable[[Any], None] | None = None, grace_s: float = 30.0, poll: float = 1.0):
        self.study, self.ownership, self.space = study, ownership, space
        self.launch, self.env, self.before_tell, self.after_tell = launch, env, before_tell, after_tell
        self.n_trials, self.n_jobs, self.n_values = n_trials, n_jobs, n_values
        self.max_failures, self.timeout, self.requeue, self.poll = max_failures, timeout, requeue, poll
        self.on_interrupt, self.extend, self.grace_s = on_interrupt, extend, grace_s
        self.stop_reason: str | None = None  # "timeout", "failures" or "interrupted"
        self.stop_message: str | None = None
        self.interrupted: list[int] = []  # the trials an interruption failed (and queued again)
        self._lock = threading.RLock()  # serialises study.ask/tell and the budget check
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._error: BaseException | None = None
        self._slots = 0  # the slot threads still running
        self._t0 = time.monotonic()

    # -- driver ----------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the worker threads to the end; on Ctrl-C, wait for the jobs, fail our trials still running
        and re-raise."""
        self.ownership.start()
        self._slots = self.n_jobs
        for i in range(self.n_jobs):
            threading.Thread(target=self._worker, name=f"optuna-slot-{i}", daemon=True).start()
        try:
            self._wait_for_slots()
        except KeyboardInterrupt as exc:
            self._halt("interrupted", "the sweep was interrupted")
            self.on_interrupt(exc)
            # The jobs first: each slot marks its trial FAIL (and queues it again) once its job has
            # ended its run, or tells its result if it finished meanwhile. A trial failed while its
            # job still trains would refuse the job's next report and fail its run.
            try:
                self._wait_for_slots(self.grace_s)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                pass
            for trial_id in self.ownership.mine():
                self._fail_interrupted(self.ownership.storage.get_trial(trial_id))
            raise
        finally:
            self.ownership.stop()
        if self._error is not None:
            raise self._error

    def _wait_for_slots(self, timeout: float | None = None) -> None:
        """Until every slot has returned, or ``timeout`` s. It polls a count, because Python 3.11's
        ``Thread.join`` interrupted by Ctrl-C takes the thread for ended while it still runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._slots and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.05)

    def _worker(self) -> None:
        try:
            while not self._stop.is_set():
                trial = self._next_trial()
                if trial is None:
                    if self._finished:
                        return
                    with self._wake:
                        self._wake.wait(self.poll)
                    continue
                self._run_trial(trial)
        except BaseException as exc:  # a bug or a storage outage: stop every slot, report it
            if self._error is None:
                self._error = exc
            self._stop.set()
        finally:
            with self._wake:
                self._slots -= 1
                self._wake.notify_all()

    def _halt(self, reason: str, message: str) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    # -- one trial -------------------------------------------------------------------------------
    def _next_trial(self) -> Any | None:
        """A new RUNNING trial that is ours to run, or None (budget full, stopping, or finished)."""
        from optuna.trial import TrialState

        with self._lock:
            if self._stop.is_set():
                return None
            if self.timeout is not None and time.monotonic() - self._t0 > self.timeout:
                self._halt("timeout", f"the sweep's timeout of {self.timeout:g} s is up")
                return None
            trials = self.study.get_trials(deepcopy=False)
            counts = Counts.of(trials)
            if counts.done >= self.n_trials:
                self._finished = True
                return None
            if counts.task_failures > self.max_failures:
                self._halt("failures", f"{counts.task_failures} trials failed")
                return None
            if counts.done + counts.running >= self.n_trials:
                self.ownership.reap(self.study, trials, self.requeue)
                return None
            trial = self.study.ask(self.space.distributions)
            self.ownership.claim(trial)
            counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
            ahead = sum(1 for t in self.study.get_trials(deepcopy=False, states=counted) if t.number < trial.number)
            if ahead >= self.n_trials:  # another worker took the last slot at the same moment
                mark_failed(self.study, self.ownership.storage, trial, "surplus",
                            "another worker took the study's last trial", requeue=False)
                self.ownership.release(trial)
                return None
            return trial

    def overrides(self, trial: Any) -> list[str]:
        """The job's overrides: fixed values, sampled values, and its environment via env_set."""
        env = [f"++hydra.job.env_set.{k}={quote(str(v))}" for k, v in self.env(trial).items()]
        return [*self.space.overrides(trial.params, trial.distributions), *env]

    def _fail_interrupted(self, trial: Any) -> None:
        with self._lock:
            if mark_failed(self.study, self.ownership.storage, trial, "interrupted", "the sweep was interrupted",
                           self.requeue) is not False:
                self.interrupted.append(trial.number)
            self.ownership.release(trial)

    def _fail_lost(self, trial: Any, exc: BaseException) -> None:
        """The job's process died without a result (killed, out of memory, its node lost): not the
        trial's own failure, so it is queued again, once; the retry goes on from its checkpoint."""
        reason = f"its job ended without a result ({type(exc).__name__}: {_first_sentence(exc)})"
        with self._lock:
            retry = mark_failed(self.study, self.ownership.storage, trial, "lost", reason, requeue=True)
            self.ownership.release(trial)
        if retry is not False:
            log.warning("trial %d: %s; %s", trial.number, reason,
                        f"queued again as trial {retry}" if retry is not None else "not queued again")
        with self._wake:
            self._wake.notify_all()

    def _run_trial(self, trial: Any) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        start = time.monotonic()
        try:
            if self.extend is not None:
                with self._lock:  # it asks the sampler, as study.ask does
                    self.extend(trial)
        except Exception as exc:
            outcome = Outcome("FAIL", reason=f"custom_search_space failed: {type(exc).__name__}: {exc}")
        else:
            try:
                ret = self.launch(self.overrides(trial), trial.number)
                outcome = outcome_of(ret, self.n_values)
            except Exception as exc:  # the launcher itself failed
                if worker_lost(exc) and self.requeue and RETRY_OF not in trial.user_attrs:
                    self._fail_lost(trial, exc)
                    return
                outcome = Outcome("FAIL", reason=f"the launcher failed: {type(exc).__name__}: {exc}")
            else:
                if isinstance(job_failure(ret), JobInterrupted):  # as on Ctrl-C in the sweep
                    self._fail_interrupted(trial)
                    return
        outcome.seconds = time.monotonic() - start
        try:
            self.before_tell(trial, outcome)
        except Exception as exc:
            log.warning("trial %d: %s", trial.number, exc)
        with self._lock:
            trial_id = self.ownership.trial_id(trial)
            attrs = dict(outcome.attrs)
            if outcome.state == "FAIL":
                attrs.update({FAIL_KIND: "error", FAIL_REASON: (outcome.reason or "")[:2000]})
            try:
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
            except UpdateFinishedTrialError:  # failed meanwhile as an orphan: nothing left to tell
                pass
            try:
                self.study.tell(trial, values=outcome.values if outcome.state == "COMPLETE" else None,
                                state=getattr(TrialState, outcome.state), skip_if_finished=True)
            except RuntimeError as exc:  # the grid sampler calls study.stop() once the grid is done
                if "stop" not in str(exc).lower():
                    raise
            finally:
                self.ownership.release(trial)
            frozen = self.ownership.storage.get_trial(trial_id)
            counts = Counts.of(self.study.get_trials(deepcopy=False))
        self.after_tell(frozen, outcome, counts)
        if counts.task_failures > self.max_failures:
            self._halt("failures", f"{counts.task_failures} trials failed")
        with self._wake:
            self._wake.notify_all()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._t0


def format_values(values: list[float] | None) -> str:
    if not values:
        return "-"
    return ", ".join(format_value(float(f"{v:.6g}")) for v in values)


def worker_lost(exc: BaseException) -> bool:
    """Whether a launcher's error says the job's process died without a result: joblib's worker
    process was killed (``TerminatedWorkerError``), or a submitit job (SLURM) ended without one
    (``UncompletedJobError``: cancelled by force, out of memory, its node failed)."""
    kinds: list[type] = []
    try:
        from joblib.externals.loky.process_executor import TerminatedWorkerError
        kinds.append(TerminatedWorkerError)
    except ImportError:
        pass
    try:
        from submitit.core.utils import UncompletedJobError
        kinds.append(UncompletedJobError)
    except ImportError:
        pass
    return isinstance(exc, tuple(kinds))


def _first_sentence(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")[:300]
