"""Seconds of training to 99.0 % MNIST test accuracy: ``experiment=speedrun`` against the tutorial.

Two baselines: the tutorial recipe as ``ocrexp-train experiment=tutorial`` trains it (ocrexp's data
pipeline and defaults), and the tutorial's own code (float arrays scaled up front, one-hot labels,
``model.fit(x, y, batch_size=64, validation_split=0.2)``, as ``epoch_throughput.py`` runs it). The
ocrexp recipes are trained as ``ocrexp-train`` trains them (``ocrexp.train.prepare`` and
``ocrexp.fitting.fit``, untracked). After every epoch a callback measures test accuracy, off the
clock. A recipe's time to accuracy is its training seconds (validation included, test evaluations
excluded) up to the end of the first epoch at or above the target. The speedrun's one-cycle
schedule is planned for all its epochs, so only its last epoch counts for it. Recipes alternate
within one process, seed by seed.

    python benchmarks/time_to_accuracy.py                 # seeds 0 1 2, target 0.99
    python benchmarks/time_to_accuracy.py --seeds 0 1 2 3 4 --tutorial-epochs 6
    python benchmarks/time_to_accuracy.py --recipes speedrun wide --recipe "wide=experiment=speedrun model.conv1_filters=16"
"""

from __future__ import annotations

import argparse
import statistics
import time

from ocrexp.console import quiet_libraries

quiet_libraries()  # first: keeps TensorFlow's start-up lines off the terminal

# name -> ocrexp-train overrides; None: the tutorial's own code
RECIPES = {"speedrun": ["experiment=speedrun"], "tutorial": ["experiment=tutorial"], "tutorial-code": None}


def test_accuracy_callback(x_test, y_test, batch_size: int, curve: list):
    """A Keras callback appending (epoch, training seconds so far, test accuracy) to ``curve`` after
    each epoch; the test evaluation's time is taken off the clock."""
    import keras
    import numpy as np

    class TestAccuracy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            stop = time.perf_counter()
            probs = self.model.predict(x_test, batch_size=batch_size, verbose=0)
            curve.append((epoch + 1, stop - self.start - self.paused, float(np.mean(probs.argmax(1) == y_test))))
            self.paused += time.perf_counter() - stop

        def on_train_end(self, logs=None):
            # fit has swapped in the optimizer's moving averages (use_ema) by now: the model as saved
            epoch, seconds, _ = curve[-1]
            probs = self.model.predict(x_test, batch_size=batch_size, verbose=0)
            curve[-1] = (epoch, seconds, float(np.mean(probs.argmax(1) == y_test)))

    return TestAccuracy()


def ocrexp_curve(overrides: list[str], seed: int, epochs: int | None, limit_train: int | None) -> tuple[list, bool]:
    """A recipe trained as ``ocrexp-train`` trains it: ([(epoch, seconds, test accuracy)], whether
    only its last epoch counts)."""
    from ocrexp import fitting
    from ocrexp.config import compose
    from ocrexp.data.pipeline import scale_images
    from ocrexp.tracking import NullTracker
    from ocrexp.train import prepare

    extra = [f"trainer.epochs={epochs}"] if epochs else []
    extra += [f"dataset.limit_train={limit_train}"] if limit_train else []
    cfg = compose("tracking=none", "trainer.verbose=0", f"seed={seed}", *overrides, *extra)
    prepared = prepare(cfg)
    curve: list[tuple[int, float, float]] = []
    splits = prepared.splits
    callback = test_accuracy_callback(scale_images(splits.x_test, cfg.dataset.scale), splits.y_test,
                                      cfg.trainer.eval_batch_size, curve)

    class Observer(NullTracker):
        def keras_callback(self):
            return callback

    fitting.fit(cfg, prepared.model, splits, prepared.data.num_classes, Observer())
    return curve, cfg.schedule.get("_target_", "").endswith("one_cycle")


def tutorial_code_curve(seed: int, epochs: int, limit_train: int | None) -> tuple[list, bool]:
    """The tutorial's own code (``epoch_throughput.py``'s), for ``epochs`` epochs."""
    from epoch_throughput import tutorial_code

    from ocrexp.data import mnist

    data = mnist.load()
    model, x, y = tutorial_code(data.x_train[:limit_train], data.y_train[:limit_train], seed)
    curve: list[tuple[int, float, float]] = []
    callback = test_accuracy_callback(data.x_test.astype("float32") / 255.0, data.y_test, 64, curve)
    model.fit(x, y, batch_size=64, epochs=epochs, validation_split=0.2, verbose=0, callbacks=[callback])
    return curve, False


def time_to_accuracy(name: str, seed: int, target: float, tutorial_epochs: int,
                     limit_train: int | None = None) -> tuple[float | None, list]:
    """(seconds of training to ``target``, or None; [(epoch, seconds so far, test accuracy)])."""
    if RECIPES[name] is None:
        curve, last_only = tutorial_code_curve(seed, tutorial_epochs, limit_train)
    else:
        curve, last_only = ocrexp_curve(RECIPES[name], seed, tutorial_epochs if name == "tutorial" else None,
                                        limit_train)
    counted = curve[-1:] if last_only else curve
    reached = next((seconds for _, seconds, accuracy in counted if accuracy >= target), None)
    return reached, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--tutorial-epochs", type=int, default=6, help="enough to pass the target")
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="add a recipe: ocrexp-train overrides, space-separated (repeatable)")
    parser.add_argument("--recipes", nargs="+", default=None,
                        help="the first is compared with the others (default: all)")
    parser.add_argument("--limit-train", type=int, default=None, help="training images (a smoke run; default: all)")
    args = parser.parse_args()
    for recipe in args.recipe:
        name, _, overrides = recipe.partition("=")
        RECIPES[name] = overrides.split()
    args.recipes = args.recipes or list(RECIPES)
    unknown = [name for name in args.recipes if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]!r}: choose from {', '.join(RECIPES)} or add it with --recipe")

    results: dict[str, list[float | None]] = {name: [] for name in args.recipes}
    for i, seed in enumerate(args.seeds):
        shift = i % len(args.recipes)  # each recipe takes every place in the order in turn
        for name in args.recipes[shift:] + args.recipes[:shift]:
            seconds, curve = time_to_accuracy(name, seed, args.target, args.tutorial_epochs, args.limit_train)
            results[name].append(seconds)
            steps = ", ".join(f"ep{e} {s:.1f}s {a * 100:.2f}%" for e, s, a in curve)
            print(f"seed {seed} {name:>13}: {'not reached' if seconds is None else f'{seconds:.2f} s'} | {steps}",
                  flush=True)

    print(f"\n{'recipe':>13} {'reached':>8} {'min s':>7} {'median s':>9}  (training seconds to {args.target:.1%})")
    medians = {}
    for name, values in results.items():
        done = [v for v in values if v is not None]
        medians[name] = statistics.median(done) if done else None
        print(f"{name:>13} {len(done):>4}/{len(values):<3} {min(done) if done else float('nan'):7.2f} "
              f"{medians[name] if done else float('nan'):9.2f}")
    first, *others = args.recipes
    for name in others:
        if medians[first] and medians[name]:
            print(f"{first} reaches it {medians[name] / medians[first]:.1f}x sooner than {name} (medians)")


if __name__ == "__main__":
    main()
