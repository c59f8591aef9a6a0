"""The tutorial's Keras Tuner Hyperband against ocrexp's recommended sweep, on the same data and space.

Keras Tuner runs as the Keras tutorial runs it: ``Hyperband(objective="val_accuracy", max_epochs=10,
factor=3)``, ``search(..., validation_split=0.2)`` with its ``EarlyStopping(patience=5)``, over the
space of ``hparams_search=cnn_optuna`` (conv filters 32-128 step 32, dense units 64-256 step 64,
dropout 0.2-0.5 step 0.1, log-uniform learning rate 1e-4..1e-2) on ocrexp's tutorial CNN. ocrexp runs
``ocrexp-train -m hparams_search=cnn_optuna_rung_rank hydra.sweeper.n_jobs=2`` in a throw-away
project. One after the other, per seed; each side's chosen model is tested on MNIST's test split.

    pip install -e '.[bench]'     # keras-tuner: a benchmark-only dependency
    python benchmarks/tuner_race.py [--seeds 1 2 3] [--limit-train N] [--trials 20] [--epochs 10]

``--limit-train`` trains both on the first N training images (a quick check of the script; the race
itself uses all 60,000).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from throwaway_project import new_project

SWEEP = "cnn_optuna_rung_rank"


def mnist(limit: int | None):
    """Scaled MNIST as the tutorial feeds it: (x_train, y_train, x_test, y_test), one-hot labels."""
    import keras

    from ocrexp.data import mnist as source

    data = source.load()  # uint8 (N, 28, 28, 1) from the project's data cache
    x_train, y_train = data.x_train[:limit], data.y_train[:limit]

    def prepare(x):
        return x.astype("float32") / 255.0

    return (prepare(x_train), keras.utils.to_categorical(y_train, 10),
            prepare(data.x_test), keras.utils.to_categorical(data.y_test, 10))


def keras_tuner(seed: int, limit: int | None) -> dict:
    """Hyperband as the tutorial runs it; the best model's val and test accuracy."""
    import keras
    import keras_tuner as kt

    from ocrexp.models.cnn import tutorial_cnn

    x_train, y_train, x_test, y_test = mnist(limit)

    def build(hp):
        model = tutorial_cnn((28, 28, 1), 10, conv1_filters=hp.Int("conv1_filters", 32, 128, step=32),
                             conv2_filters=hp.Int("conv2_filters", 32, 128, step=32),
                             dense_units=hp.Int("dense_units", 64, 256, step=64),
                             dropout=hp.Float("dropout", 0.2, 0.5, step=0.1))
        lr = hp.Float("lr", 1e-4, 1e-2, sampling="log")
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    class Epochs(keras.callbacks.Callback):
        count = 0

        def on_epoch_end(self, epoch, logs=None):
            Epochs.count += 1

    keras.utils.set_random_seed(seed)
    with tempfile.TemporaryDirectory(prefix="tuner-race-") as tmp:
        tuner = kt.Hyperband(build, objective="val_accuracy", max_epochs=10, factor=3, seed=seed,
                             directory=tmp, project_name="race", overwrite=True)
        start = time.perf_counter()
        tuner.search(x_train, y_train, epochs=50, validation_split=0.2, verbose=0,
                     callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5), Epochs()])
        wall = time.perf_counter() - start
        best_trial = tuner.oracle.get_best_trials(1)[0]
        best = tuner.get_best_models(1)[0]
        _, test_accuracy = best.evaluate(x_test, y_test, verbose=0)
    return {"wall_s": wall, "epochs": Epochs.count, "trials": len(tuner.oracle.trials),
            "val_accuracy": float(best_trial.score), "test_accuracy": float(test_accuracy)}


def ocrexp_sweep(seed: int, limit: int | None, trials: int, epochs: int) -> dict:
    """ocrexp's recommended sweep; the best trial's val and test accuracy, read back from MLflow."""
    import mlflow

    root, env = new_project("ocrexp-tuner-race-")
    cmd = [str(Path(sys.executable).parent / "ocrexp-train"), "-m", f"hparams_search={SWEEP}", f"seed={seed}",
           f"trainer.epochs={epochs}", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.n_jobs=2",
           "hydra.sweeper.plots=false", *([f"dataset.limit_train={limit}"] if limit else [])]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ocrexp")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial_number" in r.data.tags]
    epochs_trained = sum(len(client.get_metric_history(r.info.run_id, "val_accuracy")) for r in runs)
    best = max(runs, key=lambda r: r.data.metrics.get("val_accuracy", 0.0))
    return {"wall_s": wall, "epochs": epochs_trained, "trials": len(runs),
            "val_accuracy": best.data.metrics["val_accuracy"], "test_accuracy": best.data.metrics["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit-train", type=int, default=None, metavar="N")
    parser.add_argument("--trials", type=int, default=20, help="ocrexp's trials (default 20)")
    parser.add_argument("--epochs", type=int, default=10, help="ocrexp's epochs per trial (default 10)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for name, race in (("keras-tuner", lambda: keras_tuner(seed, args.limit_train)),
                           ("ocrexp", lambda: ocrexp_sweep(seed, args.limit_train, args.trials, args.epochs))):
            row = {"tool": name, "seed": seed, **race()}
            rows.append(row)
            print(f"{name:<12} seed {seed}: {row['wall_s']:7.1f} s, {row['epochs']:4d} epochs, "
                  f"{row['trials']:3d} trials, val {row['val_accuracy']:.4f}, test {row['test_accuracy']:.4f}",
                  flush=True)

    print(f"\n{'tool':<12} {'wall s':>8} {'epochs':>7} {'val acc':>8} {'test acc':>9}   (mean of seeds {args.seeds})")
    mean = {}
    for name in ("keras-tuner", "ocrexp"):
        mine = [r for r in rows if r["tool"] == name]
        mean[name] = {k: statistics.mean(r[k] for r in mine) for k in ("wall_s", "epochs", "val_accuracy",
                                                                       "test_accuracy")}
        m = mean[name]
        print(f"{name:<12} {m['wall_s']:8.1f} {m['epochs']:7.1f} {m['val_accuracy']:8.4f} {m['test_accuracy']:9.4f}")
    kt, ox = mean["keras-tuner"], mean["ocrexp"]
    print(f"ocrexp / keras-tuner: wall time {ox['wall_s'] / kt['wall_s']:.2f}, epochs {ox['epochs'] / kt['epochs']:.2f}, "
          f"test accuracy {100 * (ox['test_accuracy'] - kt['test_accuracy']):+.2f} points")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
