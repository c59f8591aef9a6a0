"""No run stuck RUNNING: runs say which process owns them, and runs whose process died are closed.

A run's process is recorded as tags (``ocrexp.host``, ``ocrexp.pid``, ``ocrexp.process_start``) and,
for other machines to judge, a heartbeat tag renewed while it lives. When ocrexp next touches the
store (a new run, ``ocrexp runs``, ``ocrexp ui``), RUNNING runs whose process is gone are marked
FAILED, with ``ocrexp.error`` saying so and naming the last epoch they reached.

A sweep's trials carry an owner and a heartbeat of their own (the sweeper's ``_resume``), judged the
same way (``ocrexp.processes``): a trial's owner is the sweep process, which outlives and outnumbers
the runs of its jobs, and the sweeper reads trials from Optuna's storage, not MLflow's.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from ocrexp import processes

HOST_TAG, PID_TAG, STARTED_TAG, HEARTBEAT_TAG = "ocrexp.host", "ocrexp.pid", "ocrexp.process_start", "ocrexp.heartbeat"
HEARTBEAT_S = 60.0
# A run on another machine is dead when its heartbeat is older than this.
STALE_S = 10 * HEARTBEAT_S


def owner_tags() -> dict[str, str]:
    """Tags naming this process, for the run it opens."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), STARTED_TAG: processes.start_time(pid) or "",
            HEARTBEAT_TAG: str(int(time.time()))}


def start_heartbeat(client, run_id: str) -> processes.Heartbeat:
    """Renews the run's heartbeat tag every ``HEARTBEAT_S`` seconds until its ``stop()``."""
    return processes.Heartbeat(HEARTBEAT_S, lambda: client.set_tag(run_id, HEARTBEAT_TAG, str(int(time.time()))))


def death_of(tags: dict[str, str], now: float | None = None) -> str | None:
    """Why the run's process is known to be gone, or None while it may be alive."""
    host, pid = tags.get(HOST_TAG), tags.get(PID_TAG)
    if not (host and pid and pid.isdigit()):
        return None  # not an ocrexp run, or from a version that did not record its process
    if host == socket.gethostname():
        if not processes.alive(int(pid)):
            return f"its process (pid {pid} on {host}) is gone"
        started = processes.start_time(int(pid))
        if started is not None and tags.get(STARTED_TAG) and started != tags[STARTED_TAG]:
            return f"its process (pid {pid} on {host}) is gone; the pid now belongs to another process"
        return None
    beat = tags.get(HEARTBEAT_TAG, "")
    if beat.isdigit() and (now or time.time()) - int(beat) > STALE_S:
        return f"its process (pid {pid} on {host}) stopped sending heartbeats {int((now or time.time()) - int(beat))} s ago"
    return None


def close_dead_runs(client, experiment_ids: list[str], spare: str | None = None) -> list[str]:
    """Mark RUNNING runs whose process died as FAILED (with the reason and the last epoch); their
    ids. ``spare``: a run this process is about to resume."""
    closed = []
    for run in client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        reason = death_of(run.data.tags)
        if reason is None or run.info.run_id == spare:
            continue
        epochs = len(client.get_metric_history(run.info.run_id, "loss"))
        message = f"the process died: {reason}; the last epoch it finished was {epochs}"
        checkpoint = run.data.tags.get("ocrexp.checkpoint")
        if checkpoint and (Path(checkpoint) / "state.npz").is_file():
            message += f"; `ocrexp resume {run.info.run_id}` (or the same command) goes on from its checkpoint"
        client.set_tag(run.info.run_id, "ocrexp.error", message)
        client.set_terminated(run.info.run_id, "FAILED")
        closed.append(run.info.run_id)
    return closed
