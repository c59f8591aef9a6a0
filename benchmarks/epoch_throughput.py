"""Seconds per epoch: the Keras tutorial's code against ocrexp's training pipeline (and variants of it).

Every path trains the tutorial CNN (float32) at batch 64 on the same 48,000 MNIST training images and
validates on the same 12,000 every epoch, as the tutorial does. The tutorial path is the tutorial's
own code: float arrays scaled up front, one-hot labels, ``model.fit(x, y, validation_split=0.2)``.
An ocrexp path is what ``ocrexp-train`` runs: the config composed with the variant's overrides, the
model built from it, ``ocrexp.fitting``'s datasets (uint8 tensor, batches gathered by index and scaled) and compile
(steps per execution, validation batch size). Epochs rotate through the paths in one process so that
machine noise hits all alike; each path's first epoch (tracing) is reported separately.

    python benchmarks/epoch_throughput.py                      # tutorial vs ocrexp's defaults
    python benchmarks/epoch_throughput.py --epochs 4 \\
        --variant "trainer.steps_per_execution=1 trainer.eval_batch_size=64" --variant ""
"""

from __future__ import annotations

import argparse
import statistics
import time


def tutorial_code(x_train, y_train, seed: int = 0):
    """The tutorial's own code up to ``fit``: (compiled model, float images scaled up front, one-hot
    labels); it trains with ``model.fit(x, y, batch_size=64, validation_split=0.2)``."""
    import keras

    from ocrexp.models.cnn import tutorial_cnn

    x = x_train.astype("float32") / 255.0
    y = keras.utils.to_categorical(y_train, 10)
    keras.utils.set_random_seed(seed)
    model = tutorial_cnn((28, 28, 1), 10, trim=False)  # the layers as the tutorial writes them
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    return model, x, y


def tutorial_path(data):
    """The tutorial's own code: a compiled model and the call that trains one epoch."""
    model, x, y = tutorial_code(data.x_train, data.y_train)
    return lambda: model.fit(x, y, batch_size=64, epochs=1, validation_split=0.2, verbose=0)


def ocrexp_path(data, overrides: str, n_val: int):
    """ocrexp's pipeline under ``overrides``: the same images, the last ``n_val`` for validation."""
    import keras

    from ocrexp.config import compose
    from ocrexp.data.pipeline import Splits
    from ocrexp.fitting import compile_trainee, datasets, training_model
    from ocrexp.models import build_model

    cfg = compose("tracking=none", *overrides.split())
    splits = Splits(data.x_train[:-n_val], data.y_train[:-n_val], data.x_train[-n_val:], data.y_train[-n_val:],
                    data.x_test, data.y_test)
    stream, val_ds = datasets(cfg, splits, 10)
    keras.utils.set_random_seed(0)
    model, _ = build_model(cfg.model, (28, 28, 1), 10)
    trainee = training_model(model)
    steps = -(-len(splits.x_train) // cfg.trainer.batch_size)
    compile_trainee(trainee, cfg, cfg.optimizer.lr, steps, 1)
    epochs = iter(range(10**6))

    def one_epoch():
        stream.begin(next(epochs))  # what fitting's on_epoch_begin hook does: this epoch's order
        return trainee.fit(stream.dataset, validation_data=val_ds, epochs=1, verbose=0, shuffle=False)

    return one_epoch


def main() -> None:
    from ocrexp.console import quiet_libraries

    quiet_libraries()  # before TensorFlow loads: keeps its start-up lines off the terminal
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per path after the first")
    parser.add_argument("--variant", action="append", default=None,
                        help="ocrexp-train overrides for one ocrexp path (repeatable; default: ocrexp's defaults)")
    args = parser.parse_args()

    from ocrexp.data import mnist

    data = mnist.load()
    runs = {"tutorial": tutorial_path(data)}
    for overrides in args.variant or [""]:
        runs[f"ocrexp {overrides}".strip()] = ocrexp_path(data, overrides, n_val=12_000)
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for epoch in range(args.epochs + 1):
        order = names[epoch % len(names):] + names[:epoch % len(names)]  # rotate who goes first
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            runs[name]()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
            print(f"epoch {epoch + 1} {name}: {times[name][-1]:6.2f} s ({cpu[name][-1]:.1f} CPU-s)", flush=True)

    width = max(map(len, names))
    print(f"\n{'path':<{width}} {'first':>7} {'min':>7} {'median':>7} {'x min':>6} {'x med':>6} {'CPU-s':>6}"
          "  (s/epoch; first epoch excluded; x = speed-up over the tutorial; CPU-s median)")
    base = times["tutorial"][1:]
    for name in names:
        t = times[name][1:]
        print(f"{name:<{width}} {times[name][0]:7.2f} {min(t):7.2f} {statistics.median(t):7.2f} "
              f"{min(base) / min(t):6.2f} {statistics.median(base) / statistics.median(t):6.2f} "
              f"{statistics.median(cpu[name][1:]):6.1f}")


if __name__ == "__main__":
    main()
