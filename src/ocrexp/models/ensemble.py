"""Several trained digit classifiers combined into one Keras model (``ocrexp ensemble``).

The ensemble is a plain functional model made of Keras' built-in layers only: one input, each
member called on it as a nested model (``member_0``, ``member_1`` ...), and their class
probabilities combined by ``Average`` (and, for a majority vote, ``Rescaling``, ``Softmax`` and
``Add``). Why this form: a model like that is what every run logs, so MLflow's tensorflow flavor,
the number reader, ``ocrexp predict``, ``ocrexp-eval``, ``mlflow models serve``, model registration
and ``model.init_from`` take it as they take a single model, and it loads with Keras' ``safe_mode``
(no ``Lambda`` layer, no custom class that would have to be importable wherever it is served).

Votes:

- ``soft``: the mean of the members' probability vectors.
- ``majority``: each member's probabilities sharpened into a near one-hot vote (scaled by
  ``MAJORITY_SCALE``, then a softmax) and the votes averaged, plus a ``TIE_SHARE`` of the soft mean
  so that a tied vote goes to the class the members are surest of. The output is still a
  probability vector (it sums to 1). A member whose two best classes lie within about
  ``1 / MAJORITY_SCALE`` of each other splits its vote between them.
"""

from __future__ import annotations

from typing import Sequence

from ocrexp.errors import OcrexpError

VOTES = ("soft", "majority")
MAJORITY_SCALE = 1000.0  # probabilities this far apart (times 1/scale) make a clear vote
TIE_SHARE = 1e-3  # of the output that the soft mean contributes to a majority vote: below one vote in 999


def check_members(members: Sequence, names: Sequence[str]) -> None:
    """Fail in one sentence unless the members take the same input shape and give the same number
    of classes; ``names`` say which member is which (e.g. run ids)."""
    if len(members) < 2:
        raise OcrexpError(f"an ensemble needs at least two models, got {len(members)}.")
    for member, name in zip(members, names):
        if len(member.inputs) != 1 or len(member.outputs) != 1:
            raise OcrexpError(f"model {name} has {len(member.inputs)} inputs and {len(member.outputs)} outputs; an "
                              "ensemble combines models with one image input and one probability output.")
    first_in, first_out = _shape(members[0].input_shape), _shape(members[0].output_shape)
    for member, name in zip(members[1:], names[1:]):
        if _shape(member.input_shape) != first_in:
            raise OcrexpError(f"the models take different images: {names[0]} takes shape {first_in[1:]}, "
                              f"{name} takes {_shape(member.input_shape)[1:]}; combine models trained on the same "
                              "dataset.")
        if _shape(member.output_shape) != first_out:
            raise OcrexpError(f"the models tell different classes apart: {names[0]} has {first_out[-1]} outputs, "
                              f"{name} has {_shape(member.output_shape)[-1]}; combine models trained on the same "
                              "dataset.")
    if len(first_out) != 2:
        raise OcrexpError(f"model {names[0]} gives outputs of shape {first_out[1:]}, not one probability per class.")


def build_ensemble(members: Sequence, vote: str = "soft", name: str = "ensemble"):
    """One Keras model whose output is the ``vote`` (``soft`` or ``majority``) of ``members``'
    class probabilities; the members keep their weights and are shared, not copied."""
    import keras
    from keras import layers

    if vote not in VOTES:
        raise OcrexpError(f"vote {vote!r} is not one of {', '.join(VOTES)}.")
    check_members(members, [m.name for m in members])
    image = keras.Input(shape=_shape(members[0].input_shape)[1:], name="image")
    probs = [keras.Model(m.inputs[0], m.outputs[0], name=f"member_{i}")(image) for i, m in enumerate(members)]
    soft = layers.Average(dtype="float32", name="soft_vote")(probs)
    if vote == "soft":
        return keras.Model(image, soft, name=name)
    ballots = [layers.Softmax(dtype="float32", name=f"ballot_{i}")(
               layers.Rescaling(MAJORITY_SCALE, dtype="float32", name=f"sharpen_{i}")(p))
               for i, p in enumerate(probs)]
    votes = layers.Average(dtype="float32", name="vote_share")(ballots)
    tally = layers.Add(dtype="float32", name="majority_vote")([
        layers.Rescaling(1.0 - TIE_SHARE, dtype="float32", name="votes_weight")(votes),
        layers.Rescaling(TIE_SHARE, dtype="float32", name="tie_break_weight")(soft)])
    return keras.Model(image, tally, name=name)


def _shape(shape) -> tuple:
    """A Keras shape as a tuple (a single-output model's ``output_shape`` is one; a list of one is too)."""
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    return tuple(shape)
