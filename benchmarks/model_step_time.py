"""Training cost of model configurations: seconds per 54,000-image epoch, side by side.

Each variant is a model config plus overrides, built the way ``ocrexp-train`` builds it (Hydra
compose, ``_target_``). All are compiled alike (Adam, categorical cross-entropy) and trained on
the same random 28x28 batches, without augmentation, validation or data loading, so the numbers
isolate the network. Passes alternate between the variants in one process so machine noise hits
all alike; the minimum and median over ``--repeats`` passes are printed.

    python benchmarks/model_step_time.py
    python benchmarks/model_step_time.py --variant "cnn_bn model.filters=[16,64,128]" --variant cnn
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

DEFAULT_VARIANTS = ["cnn_bn", "cnn_bn model.filters=[16,64,128]", "cnn_bn model.filters=[24,48,96]", "cnn"]
EPOCH_IMAGES = 54_000


def build(variant: str, num_classes: int = 10):
    """``"cnn_bn model.dropout=0.2 ..."`` -> a Keras model from conf/model/cnn_bn.yaml with overrides."""
    from ocrexp.config import compose
    from ocrexp.models import build_model

    name, *rest = variant.split()
    cfg = compose(f"model={name}", *rest)
    model, _ = build_model(cfg.model, (28, 28, 1), num_classes)
    return model


def main() -> None:
    from ocrexp.console import quiet_libraries

    quiet_libraries()  # before TensorFlow loads: keeps its start-up lines off the terminal
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", help="'MODEL [override ...]'; repeatable "
                        f"(default: {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed pass (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per variant (default 3)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size * args.steps, 28, 28, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, len(x)), 10)
    models = {}
    for variant in args.variant or DEFAULT_VARIANTS:
        model = build(variant)
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:2 * args.batch_size], y[:2 * args.batch_size], batch_size=args.batch_size, verbose=0)  # trace
        models[variant] = model
    seconds = {v: [] for v in models}
    for _ in range(args.repeats):
        for variant, model in models.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
            seconds[variant].append((time.perf_counter() - start) / len(x) * EPOCH_IMAGES)
    width = max(map(len, models))
    print(f"{'variant':{width}}  params   s/epoch min  median   ({EPOCH_IMAGES} images, batch {args.batch_size})")
    for variant, model in models.items():
        s = seconds[variant]
        print(f"{variant:{width}}  {model.count_params():7d}  {min(s):11.1f}  {statistics.median(s):6.1f}")


if __name__ == "__main__":
    main()
