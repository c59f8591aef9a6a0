"""The benchmark scripts still run (CI runs them only as smoke runs: the numbers are read by people)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
SCRIPTS = [p for p in BENCHMARKS if p.stem != "throwaway_project"]  # a helper module, not a benchmark


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


@pytest.mark.slow
def test_gpu_recipes_benchmark_prepares_and_runs_a_recipe_on_this_backend(mnist, tmp_path):
    script = next(p for p in SCRIPTS if p.stem == "gpu_recipes")
    prepared = subprocess.run([sys.executable, str(script), "prepare", str(tmp_path)], capture_output=True, text=True,
                              timeout=120)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    proc = subprocess.run([sys.executable, str(script), "run", str(tmp_path), "--recipes", "speedrun", "--policies",
                           "float32", "--epochs", "2", "--limit-train", "3000", "--target", "0.5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("speedrun   float32        seed 0:")]
    assert "to 50.0%: not reached" not in line and "images/s" in line  # 2 epochs of 3,000 images reach 50 %


def test_pruning_replay_reads_a_recorded_sweep_and_replays_it_through_pruners(tmp_path, monkeypatch):
    """A recorded unpruned sweep (journal + summary.json, as pruning_benchmark.py writes them) of six
    trials whose curves rank at epoch 1 as they finish: successive halving keeps the best for less."""
    import json

    import optuna

    from ocrexp.pruning import make_pruner, open_storage

    monkeypatch.syspath_prepend(str(BENCHMARKS[0].parent))
    import pruning_replay

    finals = [0.90, 0.95, 0.80, 0.97, 0.85, 0.93]
    journal = tmp_path / "mlruns" / "optuna" / "bench-unpruned-x.journal"
    journal.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="bench-unpruned-x", direction="maximize", storage=open_storage(str(journal)))
    for final in finals:
        trial = study.ask()
        for epoch in range(1, 4):
            trial.report(final - 0.1 * (3 - epoch), epoch)
        study.tell(trial, final)
    (tmp_path / "summary.json").write_text(json.dumps({"runs": [{"run": "unpruned", "study": "bench-unpruned-x"}]}))

    trial_curves, direction = pruning_replay.curves(tmp_path)
    assert direction == "maximize" and [c[-1] for c in trial_curves] == finals
    assert pruning_replay.replay(trial_curves, make_pruner("none")) == (18, 0.97)
    epochs, best = pruning_replay.replay(trial_curves, make_pruner({"name": "successive_halving", "min_resource": 1,
                                                                    "reduction_factor": 3}))
    assert best == 0.97 and epochs < 18


@pytest.mark.slow
def test_time_to_accuracy_benchmark_times_each_recipe_and_prints_the_ratios(mnist):
    script = next(p for p in SCRIPTS if p.stem == "time_to_accuracy")
    proc = subprocess.run([sys.executable, str(script), "--seeds", "0", "--target", "0.5", "--tutorial-epochs", "1",
                           "--limit-train", "2000", "--recipe", "trained-stem=experiment=speedrun model.whiten=false"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("speedrun", "tutorial", "tutorial-code", "trained-stem"):  # 2,000 images are enough for 50 %
        (line,) = [x for x in proc.stdout.splitlines() if x.startswith(f"seed 0 {name:>13}: ")]
        assert "not reached" not in line and " ep1 " in line
    assert "speedrun reaches it" in proc.stdout and "x sooner than tutorial-code (medians)" in proc.stdout
    assert "x sooner than trained-stem (medians)" in proc.stdout
    unknown = subprocess.run([sys.executable, str(script), "--recipes", "speedrun", "fastest"], capture_output=True,
                             text=True, timeout=600)
    assert unknown.returncode == 2 and "unknown recipe 'fastest': choose from speedrun, tutorial, tutorial-code " \
                                      "or add it with --recipe" in unknown.stderr


def test_pruning_benchmark_summarizes_a_sweep_whose_every_trial_was_pruned(tmp_path, monkeypatch):
    """Successive halving with bootstrap_count pruned all 20 trials of a real sweep: no best, no traceback."""
    import argparse

    import optuna

    from ocrexp.pruning import open_storage

    monkeypatch.syspath_prepend(str(BENCHMARKS[0].parent))
    import pruning_benchmark

    journal = tmp_path / "mlruns" / "optuna" / "bench-x.journal"
    journal.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="bench-x", direction="maximize", storage=open_storage(str(journal)))
    for value in (0.9, 0.8):
        trial = study.ask()
        trial.report(value, 1)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    row = pruning_benchmark.summarize(argparse.Namespace(root=tmp_path), "bench-x", 12.0)
    assert row["trials"] == row["pruned"] == 2 and row["epochs"] == 2 and row["best_val_accuracy"] is None


@pytest.mark.slow
def test_step_profile_lists_the_train_steps_costliest_ops(mnist):
    script = next(p for p in SCRIPTS if p.stem == "step_profile")
    proc = subprocess.run([sys.executable, str(script), "debug=fast", "--steps", "16", "--top", "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, columns, *ops = proc.stdout.splitlines()
    assert header.startswith("debug=fast: batch 64, ") and "ms per step" in header
    assert len(ops) == 5 and any("Conv2D" in op for op in ops)  # the convolutions are among the costliest


@pytest.mark.slow
def test_pruning_benchmark_trains_each_recorded_sweeps_choice_anew_and_compares_the_means(mnist, tmp_path):
    """``--from-summary --reevaluate``: no sweep runs; each sweep's best configuration trains once per
    seed with the recorded settings, and the pruned sweep's choice is compared with the unpruned one's."""
    import json

    script = next(p for p in SCRIPTS if p.stem == "pruning_benchmark")
    small = {"model.conv1_filters": 8, "model.conv2_filters": 8, "model.dense_units": 16, "model.dropout": 0.2}
    rows = [{"run": run, "study": f"bench-{run}-x", "trials": 4, "pruned": pruned, "epochs": epochs,
             "best_val_accuracy": 0.9, "best_trial": 0, "best_params": {**small, "optimizer.lr": lr}, "wall_s": 1.0}
            for run, pruned, epochs, lr in (("unpruned", 0, 8, 0.01), ("rung_rank", 2, 4, 0.005))]
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"args": {"epochs": "2", "seed": "0", "limit_train": "2000",
                                            "validation_split": "0.5", "override": "['schedule=cosine']",
                                            "root": str(tmp_path)}, "runs": rows}))
    proc = subprocess.run([sys.executable, str(script), "--from-summary", str(summary), "--reevaluate", "3", "4"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "each sweep's best configuration trained anew with seeds 3 4 (mean best val accuracy):" in proc.stdout
    assert "points below the unpruned sweep's choice (goal" in proc.stdout  # lr 0.005 learns less in 2 epochs
    written = json.loads(summary.read_text())["runs"]
    assert [sorted(r["reevaluated"]) for r in written] == [["3", "4"], ["3", "4"]]
    assert all(0.2 < v <= 1 for r in written for v in r["reevaluated"].values()), proc.stdout  # above chance
    gap = 100 * (sum(written[0]["reevaluated"].values()) - sum(written[1]["reevaluated"].values())) / 2
    assert written[1]["reevaluated_gap_points"] == pytest.approx(gap)
    assert "seed=3 dataset.limit_train=2000 dataset.validation_split=0.5" in proc.stdout  # the recorded settings
