"""VGG16 transfer learning (the Keras tutorial's section 8) on small grayscale digits.

Digits are resized to ``image_size`` (32 by default, VGG16's smallest input) and repeated to three
channels inside the model, so the logged model takes the dataset's own images. The convolutional
base is ``keras.applications.VGG16(include_top=False)``; the head is Flatten -> Dense -> Dropout ->
Dense(classes, softmax).

``weights`` is ``imagenet`` (downloaded once into Keras' cache; the attempt is bounded in time and
fails with a sentence saying how to pass a local file), a path to a weights file for the base, or
null (random initialisation).
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

from ocrexp.errors import ConfigError, OcrexpError

# The no-top ImageNet weights Keras' VGG16 uses, and its published md5.
IMAGENET_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
IMAGENET_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_MD5 = "6d6bbae143d832006294945121d1f1fc"
# Seconds to wait for the weights server to answer (and between bytes once downloading).
DOWNLOAD_TIMEOUT_S = 20.0
# Caffe-style ImageNet input: 0-255 pixels minus the per-channel (BGR) means.
IMAGENET_MEANS = (-103.939, -116.779, -123.68)


def vgg16(
    input_shape: Sequence[int],
    num_classes: int,
    weights: str | None = "imagenet",
    image_size: int = 32,
    preprocess: str = "imagenet",
    dense_units: int = 128,
    dropout: float = 0.5,
    freeze_base: bool = True,
    name: str = "vgg16",
):
    """VGG16 base (frozen by default) under a small classification head.

    ``preprocess``: ``imagenet`` scales [0, 1] pixels to 0-255 and subtracts ImageNet's channel means
    (what pretrained filters expect; with random filters it also keeps the signal from fading through
    13 ReLU convolutions: measured feature std 0.09 against 0.0003 for [0, 1] input); ``none`` feeds
    [0, 1] pixels.
    """
    import keras
    from keras import layers

    channels = int(input_shape[-1])
    if channels not in (1, 3):
        raise ConfigError(f"model=vgg16 needs 1- or 3-channel images, but the dataset has {channels} channels.")
    if preprocess not in ("imagenet", "none"):
        raise ConfigError(f"model.preprocess={preprocess!r} is not allowed: choose imagenet or none.")

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Resizing(image_size, image_size, interpolation="bilinear", name="resize")(inputs)
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    if preprocess == "imagenet":
        x = layers.Rescaling(255.0, offset=list(IMAGENET_MEANS), name="imagenet_preprocess")(x)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    load_base_weights(base, weights)
    base.trainable = not freeze_base
    x = base(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)


def load_base_weights(base, weights: str | None) -> None:
    """Load ``weights`` (``imagenet``, a file path, or None for none) into the convolutional base."""
    if weights is None:
        return
    path = imagenet_weights() if weights == "imagenet" else Path(str(weights)).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.weights={weights!r} is not a file; use imagenet, null, or the path to a "
                          f"VGG16 no-top weights file such as {IMAGENET_FILE}.")
    try:
        base.load_weights(str(path))
    except Exception as exc:  # wrong layout, truncated file, not HDF5
        raise OcrexpError(f"model.weights={str(path)!r} could not be loaded into VGG16's convolutional base "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); pass VGG16 no-top "
                          f"weights such as {IMAGENET_FILE}.") from None


def imagenet_weights() -> Path:
    """The ImageNet no-top weights in Keras' cache, downloading them first if needed.

    Never waits more than about ``DOWNLOAD_TIMEOUT_S`` for an unreachable or silent server; failure
    is one sentence that names the URL and how to pass a local file instead.
    """
    import keras

    # Keras' documented default cache, passed to get_file explicitly so that both look in one place.
    cache_dir = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    cached = cache_dir / "models" / IMAGENET_FILE
    if cached.is_file():
        return cached
    try:
        _probe(IMAGENET_URL, DOWNLOAD_TIMEOUT_S)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return Path(keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_dir=str(cache_dir),
                                             cache_subdir="models", file_hash=IMAGENET_MD5))
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] or type(exc).__name__
        raise OcrexpError(
            f"model.weights=imagenet needs the VGG16 ImageNet weights, which could not be downloaded from "
            f"{IMAGENET_URL} ({reason}); fetch that file where there is internet and pass "
            f"model.weights=/path/to/{IMAGENET_FILE} (or copy it to {cached}), or use model.weights=null."
        ) from None


def _probe(url: str, timeout: float) -> None:
    """Open ``url`` within ``timeout`` seconds or raise; DNS included (it ignores socket timeouts)."""
    import urllib.request

    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True, name="vgg16-weights-probe")
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise TimeoutError(f"no answer within {timeout:g} s")
    if outcome[0] is not None:
        raise outcome[0]


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
