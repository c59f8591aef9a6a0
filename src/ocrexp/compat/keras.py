"""Keras' and TensorFlow's private parts that ocrexp relies on: tested with keras 3.15.1 on tensorflow 2.21.0,
read in the source of keras 3.13.2."""

from __future__ import annotations

import inspect
from typing import Any


def build_before_fit(model: Any, dataset: Any) -> bool:
    """Create the optimizer's and the compiled loss's and metrics' variables of a compiled ``model``
    for batches like ``dataset``'s (a ``tf.data.Dataset``; its shapes only, nothing is read), before
    ``fit``. Returns whether it could.

    Keras' TensorFlow backend (without a distribution strategy) creates them while tracing the first
    train step, and a ``tf.function`` whose first trace creates variables is traced a second time.
    Under a strategy and on its other backends Keras builds them first itself, with the private
    ``Trainer._symbolic_build``; no public method does it (``Model.build`` and ``Optimizer.build``
    leave the compiled loss and metrics unbuilt). It only saves time, so when a Keras release
    drops it the first trace builds them, as without the hook, and the hook's test is what fails.
    Checked with keras 3.13.2 to 3.15.1.
    """
    build = getattr(model, "_symbolic_build", None)
    if build is None or "data_batch" not in inspect.signature(build).parameters:
        return False
    build(data_batch=dataset.element_spec)
    return True
