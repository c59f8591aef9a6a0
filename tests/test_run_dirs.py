"""Hydra's per-run directories: every run gets its own, even when runs start in the same second."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.project import BIN


@pytest.mark.slow
def test_runs_started_at_the_same_moment_get_distinct_run_directories(project):
    # Two real trainings launched back to back: with a one-second time in the directory name
    # they would share one directory (and overwrite each other's .hydra/config.yaml).
    args = ["tracking=none", "debug=fast", "trainer.epochs=1", "dataset.limit_train=200", "dataset.limit_test=100"]
    runs = [subprocess.Popen([str(BIN / "ocrexp-train"), *args, f"seed={seed}"], cwd=project.root, env=project.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, out[-2000:] + err[-2000:]

    configs = sorted(project.root.glob("outputs/*/*/.hydra/config.yaml"))
    assert len(configs) == 2 and configs[0].parent.parent != configs[1].parent.parent
    assert {yaml.safe_load(path.read_text())["seed"] for path in configs} == {1, 2}
