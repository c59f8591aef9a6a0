"""Starting from an earlier model, and choosing which layers train.

- ``init_from``: load a model (``runs:/…``, ``models:/…`` or a ``.keras``/``.h5`` file) as the
  starting point; when its class count differs from the dataset's, its classification layer is
  replaced by a fresh one.
- ``freeze_features``: everything but the classification layer stops training.
- ``unfreeze_from``: the named layer (or the first whose name starts with it, e.g. ``block5``) and
  every layer after it train; the ones before stay frozen. Used by the fine-tuning phase.

"Layers" here are the leaves: layers inside a nested model (VGG16's base) count individually.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from ocrexp.errors import ConfigError


def init_from(uri: str, input_shape: Sequence[int], num_classes: int, freeze: bool = False,
              tracking_uri: str | None = None):
    """The model at ``uri`` adapted to ``num_classes``, and whether its head had to be replaced."""
    from ocrexp.models.io import load_model

    model = load_model(uri, tracking_uri)
    if tuple(model.input_shape[1:]) != tuple(input_shape):
        raise ConfigError(f"model.init_from={uri!r} takes images of shape {tuple(model.input_shape[1:])} but the "
                          f"dataset's are {tuple(input_shape)}; start from a model trained on same-sized images.")
    replaced = int(model.output_shape[-1]) != num_classes
    if replaced:
        model = replace_head(model, num_classes)
    if freeze:
        freeze_features(model)
    return model, replaced


def replace_head(model, num_classes: int):
    """``model`` with its final Dense layer replaced by a new, randomly initialised one."""
    import keras

    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise ConfigError(f"the head of {model.name} is a {type(head).__name__}, not a Dense layer; "
                          "ocrexp can only replace a final Dense classification layer.")
    features = model.layers[-2].output
    probs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name=head.name)(features)
    return keras.Model(model.inputs, probs, name=model.name)


def freeze_features(model) -> None:
    """Freeze every layer except the last (the classification layer)."""
    set_trainable(model, True)
    for layer in model.layers[:-1]:
        set_trainable(layer, False)


def unfreeze_from(model, name: str | None) -> None:
    """Make ``name`` (exact, else the first layer whose name starts with it) and all later layers
    trainable, and every earlier layer frozen; ``None`` makes every layer trainable."""
    set_trainable(model, True)
    if name is None:
        return
    layers = list(leaves(model))
    start = next((i for i, layer in enumerate(layers) if layer.name == name), None)
    if start is None:
        start = next((i for i, layer in enumerate(layers) if layer.name.startswith(name)), None)
    if start is None:
        names = ", ".join(layer.name for layer in layers)
        raise ConfigError(f"model.fine_tune.unfreeze_from={name!r} matches no layer of {model.name}; "
                          f"its layers are: {names}.")
    for layer in layers[:start]:
        layer.trainable = False


def set_trainable(layer, value: bool) -> None:
    """``layer.trainable = value`` for the layer and everything nested in it (Keras' setter on a
    functional model does not reach into a nested model such as VGG16's base)."""
    layer.trainable = value
    for inner in getattr(layer, "layers", None) or ():
        set_trainable(inner, value)


def leaves(model) -> Iterator:
    """Every non-container layer of ``model`` in order, descending into nested models."""
    for layer in model.layers:
        if getattr(layer, "layers", None):
            yield from leaves(layer)
        else:
            yield layer


def provenance_tags(uri: str, replaced_head: bool, tracking_uri: str | None = None) -> dict[str, str]:
    """Tags recording where a run's model started: the URI, the source run (with a UI link), the head swap."""
    from ocrexp.models.io import source_run_id

    tags = {"ocrexp.init_from": uri, "ocrexp.init_from.head_replaced": str(replaced_head).lower()}
    try:
        run_id = source_run_id(uri, tracking_uri)
    except Exception:  # a registry lookup failing must not fail a run that already loaded the model
        run_id = None
    if run_id:
        tags["ocrexp.source_run_id"] = run_id
        tags["mlflow.note.content"] = (f"Initialised from the model of run [{run_id}](#/runs/{run_id}) "
                                       f"(`{uri}`).")
    return tags
