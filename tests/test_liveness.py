"""Telling a live run's process from a dead one, on this machine and on others."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from ocrexp import processes
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


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads processes from /proc")
def test_an_ended_child_not_yet_reaped_counts_as_dead_and_is_listed_as_a_child():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while processes.stat_fields(child.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in processes.children(os.getpid())
        assert not processes.alive(child.pid) and processes.alive(os.getpid())
        assert processes.start_time(child.pid) is not None
    finally:
        child.wait()
    assert processes.stat_fields(child.pid) is None and not processes.alive(child.pid)


def test_a_heartbeat_goes_on_after_a_failed_beat_and_stops_when_told():
    beats = []

    def beat():
        beats.append(time.monotonic())
        if len(beats) == 1:
            raise ConnectionError("the store hiccuped")

    heartbeat = processes.Heartbeat(0.01, beat)
    deadline = time.monotonic() + 30
    while len(beats) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    heartbeat.stop()
    heartbeat._thread.join(5)
    assert len(beats) >= 3 and not heartbeat._thread.is_alive()
