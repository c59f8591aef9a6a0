"""What each sweep trial costs beyond its training: MLflow run duration minus ``train_time_s``.

Runs ``ocrexp-train -m hparams_search=cnn_optuna debug=fast`` (8 trials, 2 at once by default) in a
throw-away project and reads every trial's MLflow run: how long the run lasted (its start to its end,
which spans opening the run, logging the config, training, the test evaluation, plots and the model)
against the seconds its ``fit`` took.

    python benchmarks/sweep_overhead.py [--trials 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from throwaway_project import new_project



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    root, env = new_project("ocrexp-sweep-overhead-")
    cmd = [str(Path(sys.executable).parent / "ocrexp-train"), "-m", "hparams_search=cnn_optuna", "debug=fast",
           f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.n_jobs={args.jobs}"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True)
    wall = time.perf_counter() - start

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ocrexp")
    trials = [r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial_number" in r.data.tags]
    print(f"\n{'trial':>5} {'run s':>7} {'train s':>8} {'overhead s':>10}")
    overheads = []
    for r in sorted(trials, key=lambda r: int(r.data.tags["optuna.trial_number"])):
        duration = (r.info.end_time - r.info.start_time) / 1000
        train = r.data.metrics["train_time_s"]
        overheads.append(duration - train)
        print(f"{r.data.tags['optuna.trial_number']:>5} {duration:7.2f} {train:8.2f} {duration - train:10.2f}")
    print(f"median overhead per trial {statistics.median(overheads):.2f} s (min {min(overheads):.2f}); "
          f"{len(trials)} trials, sweep wall time {wall:.1f} s")


if __name__ == "__main__":
    main()
