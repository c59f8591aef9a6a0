"""Seconds per epoch: the Keras tutorial's code path against ocrexp's training pipeline.

Both train the tutorial CNN at batch 64 on the same 48,000 MNIST training images and validate on the
same 12,000 every epoch. The tutorial path is the tutorial's own: float arrays scaled up front, one-hot
labels, ``model.fit(x, y, validation_split=0.2)``. The ocrexp path is ``ocrexp.data.pipeline``
(uint8 cache, per-batch scaling, prefetch). Epochs alternate between the two in one process so
that machine noise hits both alike; the first epoch of each (tracing) is reported separately.

    python benchmarks/epoch_throughput.py [--epochs 4] [--steps-per-execution 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def tutorial_cnn_compiled(steps_per_execution: int = 1):
    import keras

    from ocrexp.models.cnn import tutorial_cnn

    keras.utils.set_random_seed(0)
    model = tutorial_cnn((28, 28, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per path after the first")
    parser.add_argument("--steps-per-execution", type=int, default=1, help="ocrexp path only")
    args = parser.parse_args()

    import keras

    from ocrexp.data import mnist
    from ocrexp.data.pipeline import make_dataset

    data = mnist.load()
    n_val = 12_000
    # Keras tutorial: x/255 as float32, one-hot labels, Keras takes the last 20% for validation.
    x = data.x_train.astype("float32") / 255.0
    y = keras.utils.to_categorical(data.y_train, 10)
    # ocrexp: the same images and the same validation images, through tf.data.
    train_ds = make_dataset(data.x_train[:-n_val], data.y_train[:-n_val], batch_size=64, num_classes=10,
                            scale=255.0, shuffle_seed=0)
    val_ds = make_dataset(data.x_train[-n_val:], data.y_train[-n_val:], batch_size=64, num_classes=10, scale=255.0)

    tutorial_model = tutorial_cnn_compiled()
    ocrexp_model = tutorial_cnn_compiled(args.steps_per_execution)
    runs = {
        "tutorial": lambda: tutorial_model.fit(x, y, batch_size=64, epochs=1, validation_split=0.2, verbose=0),
        "ocrexp": lambda: ocrexp_model.fit(train_ds, validation_data=val_ds, epochs=1, verbose=0),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for epoch in range(args.epochs + 1):
        for name, fit in (runs.items() if epoch % 2 == 0 else reversed(list(runs.items()))):
            start = time.perf_counter()
            fit()
            times[name].append(time.perf_counter() - start)
            print(f"epoch {epoch + 1} {name:>7}: {times[name][-1]:6.2f} s", flush=True)

    print(f"\n{'path':>8} {'first':>8} {'min':>8} {'median':>8}  (s/epoch, first epoch excluded from min/median)")
    for name, t in times.items():
        print(f"{name:>8} {t[0]:8.2f} {min(t[1:]):8.2f} {statistics.median(t[1:]):8.2f}")
    ratio_min = min(times["tutorial"][1:]) / min(times["ocrexp"][1:])
    ratio_med = statistics.median(times["tutorial"][1:]) / statistics.median(times["ocrexp"][1:])
    print(f"speed-up of ocrexp over the tutorial path: {ratio_min:.2f}x (min), {ratio_med:.2f}x (median)")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
