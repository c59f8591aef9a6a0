"""``ocrexp.shutdown.exit_process``: a finished command ends without Python's module teardown, losing nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ocrexp.shutdown import exit_process


def test_exit_process_joins_threads_runs_exit_handlers_and_flushes_before_it_exits(tmp_path):
    script = textwrap.dedent(f"""
        import atexit, logging, pathlib, sys, threading, time
        from ocrexp.shutdown import exit_process

        out = pathlib.Path({str(tmp_path)!r})
        def late():
            time.sleep(0.3)
            (out / "thread").write_text("done")
        threading.Thread(target=late).start()
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        log = logging.getLogger("t")
        log.addHandler(logging.FileHandler(out / "log.txt"))
        log.warning("recorded")
        sys.stdout.write("buffered, no newline")
        exit_process(3)
        print("never printed")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "log.txt").read_text() == "recorded\n"


def test_exit_process_exits_normally_under_a_profiler_so_that_it_can_write_its_results():
    previous = sys.getprofile()
    sys.setprofile(lambda frame, event, arg: None)  # before exit_process(): without it, pytest itself would end
    try:
        with pytest.raises(SystemExit) as exit:
            exit_process(4)
    finally:
        sys.setprofile(previous)
    assert exit.value.code == 4


@pytest.mark.slow
def test_a_profiled_training_run_still_writes_its_profile(tmp_path, mnist, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    profile = tmp_path / "train.prof"
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "ocrexp.train", "debug=fast",
                           "tracking=none"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert profile.stat().st_size > 0
