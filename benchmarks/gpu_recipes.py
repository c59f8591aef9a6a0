"""ocrexp's recipes on a GPU: seconds of training to 99.0 % MNIST test accuracy and training images/s
of ``experiment=speedrun``, ``mnist_best`` and ``tutorial``, in float32 and mixed float16/bfloat16.

The GPU machines lent to this project hold PyTorch and JAX but no TensorFlow, and TensorFlow's CUDA
build (the wheel plus the CUDA 12 libraries, over 2 GB) cannot be carried to them, so this runs on
Keras' JAX backend. What is the same as ``ocrexp-train``: the composed configs, the models
(``ocrexp.models``), the augmentation (``ocrexp.augment``), the optimizer and schedule, the loss and
``compile`` (``ocrexp.fitting.compile_trainee``), the train/validation split
(``ocrexp.data.pipeline.split``) and the validation pass at ``trainer.eval_batch_size``. What differs:
batches come from numpy arrays through Keras' own adapter instead of ``tf.data``, and JAX compiles
every step with XLA, so "XLA off" cannot be measured here (JAX without ``jit`` runs op by op).

Two steps, the first where ocrexp is installed, the second on the GPU machine (where
``benchmarks/gpu_recipes.sh`` brings Keras, Hydra and OmegaConf along as wheels):

    python benchmarks/gpu_recipes.py prepare .gpu     # composed configs + MNIST (npz) into .gpu/
    KERAS_BACKEND=jax python benchmarks/gpu_recipes.py run .gpu --seeds 0 1

Like ``time_to_accuracy.py``, test accuracy is measured after each epoch off the clock, and a
one-cycle recipe counts only at its last epoch (its schedule is planned for all of them).
Images/s is training images over the median epoch time from the second epoch on (the first one
compiles), validation included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

RECIPES = ("speedrun", "mnist_best", "tutorial")
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
SECTIONS = ("model", "augmentation", "optimizer", "schedule", "trainer", "dataset")


def prepare(folder: Path) -> None:
    """Write each recipe's composed config (``recipes.json``) and the MNIST arrays (``mnist.npz``)."""
    import numpy as np
    from omegaconf import OmegaConf

    from ocrexp import config

    folder.mkdir(parents=True, exist_ok=True)
    recipes = {}
    for name in RECIPES:
        cfg = config.compose("tracking=none", f"experiment={name}")
        recipes[name] = {key: OmegaConf.to_container(cfg[key], resolve=True, enum_to_str=True) for key in SECTIONS}
        recipes[name]["dataset"].pop("source", None)  # the arrays travel instead
    data = config.instantiate(config.compose("tracking=none").dataset.source)
    (folder / "recipes.json").write_text(json.dumps(recipes, indent=1))
    np.savez_compressed(folder / "mnist.npz", x_train=data.x_train, y_train=data.y_train,
                        x_test=data.x_test, y_test=data.y_test)
    print(f"wrote {folder}/recipes.json and {folder}/mnist.npz ({data.checksum[:12]})")


def train(recipe: dict, arrays, seed: int, policy: str, target: float) -> dict:
    """One training run of ``recipe``: its curve, time to ``target`` and images/s."""
    import keras
    import numpy as np
    from omegaconf import OmegaConf

    from ocrexp import config, fitting
    from ocrexp.data.base import DigitData
    from ocrexp.data.pipeline import split
    from ocrexp.models import build_model

    cfg = OmegaConf.create({**recipe, "seed": seed})
    t = cfg.trainer
    if keras.backend.backend() == "jax":
        t.jit_compile = True  # without jit JAX runs every op eagerly
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(policy)
    data = DigitData("mnist", *arrays, class_names=[str(d) for d in range(10)], checksum="")
    splits = split(data, cfg.dataset.validation_split, seed, cfg.dataset.get("limit_train"),
                   cfg.dataset.get("limit_test"))
    scale, eye = float(cfg.dataset.scale), np.eye(10, dtype="float32")
    x_train, x_val, x_test = (x.astype("float32") / scale for x in (splits.x_train, splits.x_val, splits.x_test))
    model, _ = build_model(cfg.model, data.input_shape, 10)
    trainee = fitting.training_model(model, config.instantiate(cfg.augmentation, seed=seed))
    steps = -(-len(x_train) // t.batch_size)
    plan = config.instantiate(cfg.schedule, lr=cfg.optimizer.lr, steps_per_epoch=steps, epochs=t.epochs)
    fitting.compile_trainee(trainee, cfg, plan.learning_rate, steps, t.epochs)
    curve: list[tuple[int, float, float]] = []  # (epoch, seconds so far, test accuracy)

    class TestAccuracy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start, self.paused = time.perf_counter(), 0.0

        def on_epoch_end(self, epoch, logs=None):
            stop = time.perf_counter()
            probs = model.predict(x_test, batch_size=t.eval_batch_size, verbose=0)
            curve.append((epoch + 1, stop - self.start - self.paused,
                          float(np.mean(probs.argmax(1) == splits.y_test))))
            self.paused += time.perf_counter() - stop

    trainee.fit(x_train, eye[splits.y_train], batch_size=t.batch_size, epochs=t.epochs, shuffle=True,
                validation_data=(x_val, eye[splits.y_val]), validation_batch_size=t.eval_batch_size,
                callbacks=[*plan.callbacks, TestAccuracy()], verbose=0)
    counted = curve[-1:] if str(cfg.schedule.get("_target_", "")).endswith("one_cycle") else curve
    reached = next((seconds for _, seconds, accuracy in counted if accuracy >= target), None)
    epochs = [b - a for (_, a, _), (_, b, _) in zip(curve, curve[1:])]
    return {"seconds_to_target": reached, "final_accuracy": curve[-1][2], "train_s": curve[-1][1],
            "first_epoch_s": curve[0][1], "images_per_s": len(x_train) / statistics.median(epochs) if epochs else None,
            "curve": curve}


def run(folder: Path, recipes: list[str], policies: list[str], seeds: list[int], target: float,
        overrides: dict | None = None) -> list[dict]:
    import keras
    import numpy as np

    print(f"keras {keras.__version__} on {keras.backend.backend()}, devices: {', '.join(_devices())}", flush=True)
    specs = json.loads((folder / "recipes.json").read_text())
    for spec in specs.values():  # --epochs / --limit-train: a short rehearsal of the same code
        for key, value in (overrides or {}).items():
            section, field = key.split(".")
            spec[section][field] = value
    with np.load(folder / "mnist.npz") as f:
        arrays = (f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    results = []
    for seed in seeds:  # seed by seed, every variant in turn, so slow spells hit them alike
        for name in recipes:
            for policy in policies:
                result = {"recipe": name, "policy": policy, "seed": seed,
                          **train(specs[name], arrays, seed, policy, target)}
                results.append(result)
                reached = result["seconds_to_target"]
                print(f"{name:<10} {policy:<14} seed {seed}: {result['final_accuracy']:.2%} after "
                      f"{result['train_s']:.1f} s (first epoch {result['first_epoch_s']:.1f} s), "
                      f"to {target:.1%}: {f'{reached:.1f} s' if reached else 'not reached'}, "
                      f"{result['images_per_s'] or 0:,.0f} images/s", flush=True)
    print()
    print(f"{'recipe':<10} {'policy':<14} {'to target (median s)':>20} {'images/s (median)':>18} {'accuracy (mean)':>16}")
    for name in recipes:
        for policy in policies:
            rows = [r for r in results if (r["recipe"], r["policy"]) == (name, policy)]
            times = [r["seconds_to_target"] for r in rows]
            to_target = f"{statistics.median(times):.2f}" if None not in times else "not every seed"
            rates = [r["images_per_s"] for r in rows if r["images_per_s"]]
            print(f"{name:<10} {policy:<14} {to_target:>20} {statistics.median(rates) if rates else 0:>18,.0f} "
                  f"{statistics.mean(r['final_accuracy'] for r in rows):>16.2%}")
    return results


def _devices() -> list[str]:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return [f"{d.device_kind} (jax {jax.__version__})" for d in jax.devices()]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    return [keras.backend.backend()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("prepare").add_argument("folder", type=Path)
    go = sub.add_parser("run")
    go.add_argument("folder", type=Path)
    go.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    go.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    go.add_argument("--seeds", nargs="+", type=int, default=[0])
    go.add_argument("--target", type=float, default=0.99)
    go.add_argument("--json", type=Path, help="also write every run's numbers here")
    go.add_argument("--epochs", type=int, help="override every recipe's trainer.epochs (rehearsals)")
    go.add_argument("--limit-train", type=int, help="train on this many images (rehearsals)")
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.folder)
        return
    overrides = {key: value for key, value in (("trainer.epochs", args.epochs),
                                               ("dataset.limit_train", args.limit_train)) if value}
    results = run(args.folder, args.recipes, args.policies, args.seeds, args.target, overrides)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
