"""Optimizers built from ``conf/optimizer/*.yaml``."""

from __future__ import annotations

from typing import Any

# Config name -> Keras optimizer class name; extra YAML keys pass through as keyword arguments.
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "nadam": "Nadam"}


def build_optimizer(name: str, lr: float, steps_per_epoch: int = 1, epochs: int = 1, **kwargs: Any):
    """A Keras optimizer by config name with learning rate ``lr``.

    ``steps_per_epoch`` and ``epochs`` are supplied by the train loop for schedules that need them.
    """
    import keras

    from ocrexp.errors import ConfigError

    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={name!r} is not known: choose from {', '.join(OPTIMIZERS)}.")
    cls = getattr(keras.optimizers, OPTIMIZERS[name])
    return cls(learning_rate=lr, **kwargs)
