"""Telling a live run's process from a dead one, on this machine and on others."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from ocrexp.tracking import liveness


def test_this_process_is_alive_and_an_exited_one_is_dead():
    assert liveness.death_of(liveness.owner_tags()) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    tags = {**liveness.owner_tags(), liveness.PID_TAG: str(child.pid)}
    assert liveness.death_of(tags).startswith(f"its process (pid {child.pid} on {socket.gethostname()}) is gone")


def test_a_reused_pid_is_not_mistaken_for_the_runs_process():
    tags = {**liveness.owner_tags(), liveness.STARTED_TAG: "1"}  # this pid, but started at another time
    if os.path.isdir("/proc"):
        assert "now belongs to another process" in liveness.death_of(tags)


def test_a_run_on_another_host_is_dead_only_once_its_heartbeat_is_stale():
    tags = {liveness.HOST_TAG: "elsewhere", liveness.PID_TAG: "42", liveness.HEARTBEAT_TAG: "1000"}
    assert liveness.death_of(tags, now=1000 + liveness.STALE_S - 1) is None
    assert "stopped sending heartbeats" in liveness.death_of(tags, now=1000 + liveness.STALE_S + 1)


def test_runs_without_process_tags_are_left_alone():
    assert liveness.death_of({}) is None and liveness.death_of({liveness.HOST_TAG: "h"}) is None
