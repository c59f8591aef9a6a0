"""Where a recipe's training step spends its time: TensorFlow's profiler, op time summed per op.

The recipe is composed and prepared as ``ocrexp-train`` does it (data, model, precision policy,
compile), then trained for a few warm-up steps and profiled over ``--steps`` more. Each op's time is
summed over the profiled steps on TensorFlow's compute threads (ops on the two threads overlap, so
the total exceeds wall time); the table lists the costliest ops per step and their share. This is
how the speedrun's first block showed up as a third of its step (docs/performance.md).

    python benchmarks/step_profile.py experiment=speedrun
    python benchmarks/step_profile.py experiment=tutorial --steps 64 --top 25
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

from ocrexp.console import quiet_libraries

quiet_libraries()  # first: keeps TensorFlow's start-up lines off the terminal


def op_times(logdir: Path) -> collections.Counter:
    """Milliseconds per op (the last three parts of its name) on the compute threads of a profile."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: collections.Counter = collections.Counter()
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "?")
                    if not name.startswith("ExecutorState::"):
                        totals["/".join(name.split("/")[-3:])] += event.duration_ps / 1e9
    return totals


def profile(overrides: list[str], steps: int, logdir: Path) -> tuple[int, int, float]:
    """Profile about ``steps`` training steps of the recipe (whole calls of ``steps_per_execution``);
    returns (batch size, steps profiled, wall ms per step)."""
    import time

    import tensorflow as tf

    from ocrexp import config, fitting
    from ocrexp.compat.keras import build_before_fit
    from ocrexp.train import prepare

    cfg = config.compose("tracking=none", "trainer.verbose=0", *overrides)
    prepared = prepare(cfg)
    stream, _ = fitting.datasets(cfg, prepared.splits, prepared.data.num_classes)
    trainee = fitting.training_model(prepared.model, config.instantiate(cfg.augmentation, seed=cfg.seed))
    per_epoch = -(-len(prepared.splits.x_train) // cfg.trainer.batch_size)
    schedule = config.instantiate(cfg.schedule, lr=float(cfg.optimizer.lr), steps_per_epoch=per_epoch,
                                  epochs=int(cfg.trainer.epochs))  # the recipe's own schedule and augmentation
    fitting.compile_trainee(trainee, cfg, schedule.learning_rate, per_epoch, int(cfg.trainer.epochs))
    data = stream.dataset.repeat()
    build_before_fit(trainee, data)
    per_call = int(cfg.trainer.steps_per_execution)
    calls = max(1, -(-steps // per_call))
    trainee.fit(data, steps_per_epoch=2 * per_call, epochs=1, verbose=0)  # traced and warm
    tf.profiler.experimental.start(str(logdir))
    start = time.perf_counter()
    trainee.fit(data, steps_per_epoch=calls * per_call, epochs=1, verbose=0)
    wall = (time.perf_counter() - start) * 1000 / (calls * per_call)
    tf.profiler.experimental.stop()
    return int(cfg.trainer.batch_size), calls * per_call, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="ocrexp-train overrides (default: the tutorial recipe)")
    parser.add_argument("--steps", type=int, default=64, help="profiled training steps")
    parser.add_argument("--top", type=int, default=20, help="ops listed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batch, steps, wall = profile(args.overrides, args.steps, Path(tmp))
        totals = op_times(Path(tmp))
    total = sum(totals.values())
    print(f"{' '.join(args.overrides) or 'default recipe'}: batch {batch}, {wall:.2f} ms per step (wall, "
          f"under the profiler); op time {total / steps:.2f} ms per step over the compute threads")
    print(f"{'ms/step':>8} {'share':>6}  op")
    for name, ms in totals.most_common(args.top):
        print(f"{ms / steps:8.3f} {ms / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
