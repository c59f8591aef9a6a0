"""Training-time augmentation built from ``conf/augmentation/*.yaml``.

A recipe is a list of Keras preprocessing layers (each a ``_target_`` config); they run on float
batches of the training stream only, inside ``tf.data``.
"""

from __future__ import annotations

from typing import Any, Sequence


def build(layers: Sequence[Any] = (), seed: int | None = None, name: str = "augmentation"):
    """A ``keras.Sequential`` of the configured layers, or None when the recipe is empty.

    Layers that accept a ``seed`` get one derived from ``seed`` so runs are reproducible.
    """
    if not layers:
        return None
    import inspect

    import keras
    from hydra.utils import instantiate

    built = []
    for i, spec in enumerate(layers):
        kwargs = {}
        target = spec.get("_target_", "") if hasattr(spec, "get") else ""
        if seed is not None and "seed" not in spec:
            cls = _resolve(target)
            if cls is not None and "seed" in inspect.signature(cls).parameters:
                kwargs["seed"] = seed + i
        built.append(instantiate(spec, **kwargs))
    return keras.Sequential(built, name=name)


def _resolve(target: str):
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception:  # functions, or a bad path that instantiate() will report clearly
        return None
