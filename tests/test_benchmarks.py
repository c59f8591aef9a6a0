"""The benchmark scripts still run (CI runs them only as smoke runs: the numbers are read by people)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
SCRIPTS = [p for p in BENCHMARKS if p.stem != "scratch"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_benchmark_script_starts_and_explains_itself(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")


@pytest.mark.slow
def test_run_overhead_benchmark_prints_both_sides(mnist):
    script = next(p for p in SCRIPTS if p.stem == "run_overhead")
    proc = subprocess.run([sys.executable, str(script), "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bare keras" in proc.stdout and "ocrexp-train costs" in proc.stdout
