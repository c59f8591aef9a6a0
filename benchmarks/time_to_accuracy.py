"""Seconds of training to 99.0 % MNIST test accuracy: ``experiment=speedrun`` against the tutorial recipe.

Each recipe is trained as ``ocrexp-train`` trains it (``ocrexp.train.prepare`` and ``ocrexp.fitting.fit``,
untracked); after every epoch a callback measures test accuracy, off the clock. A recipe's time to
accuracy is its training seconds (validation included, test evaluations excluded) up to the end of
the first epoch at or above the target. The speedrun's one-cycle schedule is planned for all its
epochs, so only its last epoch counts for it. Recipes alternate within one process, seed by seed.

    python benchmarks/time_to_accuracy.py                 # seeds 0 1 2, target 0.99
    python benchmarks/time_to_accuracy.py --seeds 0 1 2 3 4 --tutorial-epochs 6
"""

from __future__ import annotations

import argparse
import statistics
import time

import ocrexp  # noqa: F401  (first: keeps TensorFlow's start-up lines off the terminal)

RECIPES = {"speedrun": ["experiment=speedrun"], "tutorial": ["experiment=tutorial"]}


def time_to_accuracy(overrides: list[str], seed: int, target: float, epochs: int | None) -> tuple[float | None, list]:
    """(seconds of training to ``target``, or None; [(epoch, seconds so far, test accuracy)])."""
    import keras
    import numpy as np

    from ocrexp import fitting
    from ocrexp.data.pipeline import scale_images
    from ocrexp.config import compose
    from ocrexp.tracking import NullTracker
    from ocrexp.train import prepare

    extra = [f"trainer.epochs={epochs}"] if epochs else []
    cfg = compose("tracking=none", "trainer.verbose=0", f"seed={seed}", *overrides, *extra)
    run = prepare(cfg)
    x_test = scale_images(run.splits.x_test, cfg.dataset.scale)
    curve: list[tuple[int, float, float]] = []

    class TestAccuracy(keras.callbacks.Callback):
        """Test accuracy after each epoch; the time it takes is taken off the clock."""

        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            stop = time.perf_counter()
            probs = self.model.predict(x_test, batch_size=cfg.trainer.eval_batch_size, verbose=0)
            accuracy = float(np.mean(probs.argmax(1) == run.splits.y_test))
            curve.append((epoch + 1, stop - self.start - self.paused, accuracy))
            self.paused += time.perf_counter() - stop

    class Observer(NullTracker):
        def keras_callback(self):
            return TestAccuracy()

    fitting.fit(cfg, run.model, run.splits, run.data.num_classes, Observer())
    counted = curve[-1:] if cfg.schedule.get("_target_", "").endswith("one_cycle") else curve
    reached = next((seconds for _, seconds, accuracy in counted if accuracy >= target), None)
    return reached, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--tutorial-epochs", type=int, default=6, help="enough to pass the target")
    args = parser.parse_args()

    results: dict[str, list[float | None]] = {name: [] for name in RECIPES}
    for i, seed in enumerate(args.seeds):
        for name in (list(RECIPES) if i % 2 == 0 else list(reversed(RECIPES))):
            epochs = args.tutorial_epochs if name == "tutorial" else None
            seconds, curve = time_to_accuracy(RECIPES[name], seed, args.target, epochs)
            results[name].append(seconds)
            steps = ", ".join(f"ep{e} {s:.1f}s {a * 100:.2f}%" for e, s, a in curve)
            print(f"seed {seed} {name:>8}: {'not reached' if seconds is None else f'{seconds:.2f} s'} | {steps}",
                  flush=True)

    print(f"\n{'recipe':>8} {'reached':>8} {'min s':>7} {'median s':>9}  (training seconds to {args.target:.1%})")
    medians = {}
    for name, values in results.items():
        done = [v for v in values if v is not None]
        medians[name] = statistics.median(done) if done else None
        print(f"{name:>8} {len(done):>4}/{len(values):<3} {min(done) if done else float('nan'):7.2f} "
              f"{medians[name] if done else float('nan'):9.2f}")
    if medians["speedrun"] and medians["tutorial"]:
        print(f"speedrun reaches it {medians['tutorial'] / medians['speedrun']:.1f}x sooner (medians)")


if __name__ == "__main__":
    main()
