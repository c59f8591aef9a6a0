"""What a run costs beyond its training: ``ocrexp-train debug=fast`` against a bare Keras script.

The bare script imports TensorFlow/Keras, builds the same CNN and fits the same 1,600 training
images (validating on the same 400) for one epoch, as ``debug=fast`` does; ocrexp also composes the
config, records the run in MLflow (params, metrics, config, plots, the Keras model with signature
and input example, the reader pyfunc, dataset identity) and evaluates on 1,000 test images. Both run
as fresh processes, alternately, into a throw-away project, so machine noise hits both alike.

    python benchmarks/run_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from throwaway_project import new_project

BIN = Path(sys.executable).parent

BARE = """
import numpy as np
import keras
from ocrexp.data import mnist
from ocrexp.data.pipeline import split
data = mnist.load()
s = split(data, 0.2, 42, 2000, 1000)
x, y = s.x_train.astype("float32") / 255, keras.utils.to_categorical(s.y_train, 10)
xv, yv = s.x_val.astype("float32") / 255, keras.utils.to_categorical(s.y_val, 10)
model = keras.Sequential([keras.Input((28, 28, 1)),
    keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
    keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
    keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"), keras.layers.Dropout(0.5),
    keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=64, epochs=1, validation_data=(xv, yv), verbose=0)
"""


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root, env = new_project("ocrexp-overhead-")
    commands = {
        "bare keras": [sys.executable, "-c", BARE],
        "ocrexp-train": [str(BIN / "ocrexp-train"), "debug=fast"],
    }
    timed(commands["ocrexp-train"], env, root)  # creates the MLflow store, as a user's first run does
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(args.repeats):
        for name, cmd in (commands.items() if i % 2 == 0 else reversed(list(commands.items()))):
            times[name].append(timed(cmd, env, root))
            print(f"run {i + 1} {name:>13}: {times[name][-1]:6.2f} s", flush=True)
    print(f"\n{'':>13} {'min':>7} {'median':>7}  (s, whole process)")
    for name, t in times.items():
        print(f"{name:>13} {min(t):7.2f} {statistics.median(t):7.2f}")
    bare, ocrexp = times["bare keras"], times["ocrexp-train"]
    print(f"ocrexp-train costs {min(ocrexp) - min(bare):+.2f} s (min) / "
          f"{statistics.median(ocrexp) - statistics.median(bare):+.2f} s (median) over the bare script")


if __name__ == "__main__":
    main()
