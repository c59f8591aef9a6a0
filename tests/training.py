"""Helpers shared by the model, augmentation, optimizer and experiment tests.

They compose the real config in-process, shrink it further than ``debug=fast`` where a test only
needs a few steps, and run the real code (``run_experiment`` or ``fitting.fit``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ocrexp import config
from ocrexp.config import compose

# A few steps on real MNIST: 400 training images (80 held out for validation), 200 test images.
TINY = ("debug=fast", "dataset.limit_train=400", "dataset.limit_test=200", "trainer.verbose=0")


def tracked(root: Path, *overrides: str) -> tuple[str, ...]:
    """Overrides that send a run to a throw-away MLflow store under ``root``."""
    return (f"tracking.uri=sqlite:///{root / 'mlruns' / 'mlflow.db'}", "tracking.log_model=false", *overrides)


@contextmanager
def mlflow_env_kept():
    """Undo ``mlflow.set_tracking_uri``'s export of ``MLFLOW_TRACKING_URI`` to ``os.environ``, which
    would otherwise send later subprocess runs (other tests' fixtures) to this test's store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def run(*overrides: str):
    """``run_experiment`` on the composed config (untracked unless the overrides say otherwise)."""
    from ocrexp.train import run_experiment

    overrides = ("tracking=none", *overrides) if not any(o.startswith("tracking") for o in overrides) else overrides
    with mlflow_env_kept():
        return run_experiment(compose(*overrides))


@dataclass
class Fitted:
    """What ``fitting.fit`` left behind, for tests that inspect the trained model."""

    cfg: object
    model: object
    splits: object
    history: dict


def fit(*overrides: str) -> Fitted:
    """Prepare and train on MNIST as ``run_experiment`` does, without tracking or the test evaluation."""
    from ocrexp import fitting
    from ocrexp.tracking import NullTracker
    from ocrexp.train import prepare

    cfg = compose("tracking=none", *TINY, *overrides)
    prepared = prepare(cfg)
    history = fitting.fit(cfg, prepared.model, prepared.splits, prepared.data.num_classes, NullTracker())
    return Fitted(cfg, prepared.model, prepared.splits, history)


def val_metrics(fitted: Fitted) -> dict[str, float]:
    """Loss and accuracy of the fitted model on its validation split, computed as Keras' fit does."""
    import keras

    from ocrexp.data.pipeline import make_dataset

    cfg = fitted.cfg
    num_classes = fitted.model.output_shape[-1]
    ds = make_dataset(fitted.splits.x_val, fitted.splits.y_val, batch_size=cfg.trainer.batch_size,
                      num_classes=num_classes, scale=cfg.dataset.scale)
    loss = getattr(keras.losses, config.LOSSES[cfg.trainer.loss])(label_smoothing=cfg.trainer.label_smoothing)
    fitted.model.compile(loss=loss, metrics=["accuracy"])
    return fitted.model.evaluate(ds, verbose=0, return_dict=True)


@contextmanager
def traced_functions():
    """The names of the ``tf.function`` graphs traced inside the block, in order (a list that fills as
    it runs). It wraps TensorFlow's tracing entry point, which every ``tf.function`` trace passes."""
    from tensorflow.python.framework import func_graph

    traced: list[str] = []
    trace = func_graph.func_graph_from_py_func

    def counting(name, *args, **kwargs):
        traced.append(name)
        return trace(name, *args, **kwargs)

    func_graph.func_graph_from_py_func = counting
    try:
        yield traced
    finally:
        func_graph.func_graph_from_py_func = trace

