"""Convolutional digit classifiers."""

from __future__ import annotations

from typing import Sequence

from ocrexp.config import STEMS


def tutorial_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    conv1_filters: int = 32,
    conv2_filters: int = 64,
    kernel_size: int = 3,
    dense_units: int = 128,
    dropout: float = 0.5,
    stem: str = "pool",
    crop: int = 0,
    name: str = "cnn",
    trim: bool = True,
):
    """the Keras tutorial's CNN (225,034 parameters on 28x28x1, 10 classes, with the defaults).

    Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) -> MaxPool(2) -> Flatten
    -> Dense(128, relu) -> Dropout(0.5) -> Dense(classes, softmax).

    ``stem="strided"`` replaces the first Conv2D and MaxPool with one Conv2D of kernel
    ``kernel_size + 1`` and stride 2: the same receptive field and output grid (13x13 on MNIST)
    without computing, pooling away and back-propagating through the full-resolution map.

    ``crop`` pixels are cut from every border first (a ``Cropping2D`` layer, so the model still takes
    the dataset's full images): MNIST's digits sit in the central 20x20 box, and the convolutions
    need not run over the empty frame around it.

    ``trim`` drops the trailing rows and columns that no output depends on (valid convolutions and
    flooring pools read the tutorial CNN's 28x28 input only up to row and column 26): the same
    function of the same weights, computed over 15 % fewer positions; ``trim=False`` builds the
    layers as the tutorial writes them.
    """
    import keras
    from keras import layers

    if stem == "pool":
        first = [layers.Conv2D(conv1_filters, kernel_size, activation="relu", name="conv1"),
                 layers.MaxPooling2D(2, name="pool1")]
    elif stem == "strided":
        first = [layers.Conv2D(conv1_filters, kernel_size + 1, strides=2, activation="relu", name="conv1")]
    else:  # config.validate rejects it first; this is for callers of the function itself
        from ocrexp.errors import ConfigError

        raise ConfigError(f"model.stem={stem!r} is not allowed: choose {' or '.join(STEMS)}.")
    rows, cols = (_unread_tail(size - 2 * crop, kernel_size, stem) if trim else 0 for size in input_shape[:2])
    cut = []  # the border crop and the trailing pixels no output reads, in one layer
    if crop or rows or cols:
        cut = [layers.Cropping2D(((crop, crop + rows), (crop, crop + cols)), name="crop" if crop else "trim")]
    stack = [
        keras.Input(shape=tuple(input_shape), name="image"),
        *cut,
        *first,
        layers.Conv2D(conv2_filters, kernel_size, activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(dense_units, activation="relu", name="dense"),
        layers.Dropout(dropout, name="dropout"),
        # float32 output keeps softmax stable under mixed precision
        layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs"),
    ]
    try:
        return keras.Sequential(stack, name=name)
    except ValueError:  # Keras: "Computed output size would be zero or negative", or cropping too large
        from ocrexp.errors import ConfigError

        h, w = input_shape[:2]
        raise ConfigError(f"the tutorial CNN's maps shrink to nothing on {h}x{w} images with model.crop={crop}, "
                          f"model.stem={stem} and model.kernel_size={kernel_size}: use a smaller crop or kernel.") from None


def _unread_tail(size: int, kernel_size: int, stem: str) -> int:
    """How many trailing pixels along an axis of ``size`` the two conv-pool blocks never read."""
    if stem == "strided":  # conv of kernel_size + 1, stride 2
        grid = (size - kernel_size - 1) // 2 + 1
    else:  # valid conv, then a 2x2 pool that floors
        grid = (size - kernel_size + 1) // 2
    pooled = (grid - kernel_size + 1) // 2
    if pooled < 1:
        return 0  # the maps shrink to nothing: Keras' error says so
    grid_read = 2 * pooled + kernel_size - 1  # of conv2's input, by pool2 and conv2
    read = (grid_read - 1) * 2 + kernel_size + 1 if stem == "strided" else 2 * grid_read + kernel_size - 1
    return size - read


def bn_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    filters: Sequence[int] = (32, 64, 128),
    convs_per_block: int = 1,
    stem_kernel_size: int = 5,
    kernel_size: int = 3,
    head: str = "flatten",
    dense_units: int | None = 128,
    dropout: float = 0.4,
    name: str = "cnn_bn",
):
    """A batch-normalised CNN: conv blocks that halve the resolution, then a small head.

    Block i: ``convs_per_block`` x [Conv2D(filters[i], same, no bias) -> BatchNorm -> ReLU] ->
    MaxPool(2); the first conv uses ``stem_kernel_size``. Head: ``gap`` (global average pooling) or
    ``flatten``; then, if ``dense_units``, Dense -> BatchNorm -> ReLU; then Dropout -> Dense(softmax).
    """
    import keras
    from keras import layers

    if head not in ("gap", "flatten"):
        from ocrexp.errors import ConfigError

        raise ConfigError(f"model.head={head!r} is not allowed: choose gap or flatten.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for block, width in enumerate(filters, start=1):
        for conv in range(1, convs_per_block + 1):
            size = stem_kernel_size if (block, conv) == (1, 1) else kernel_size
            x = layers.Conv2D(width, size, padding="same", use_bias=False, name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x) if head == "gap" else layers.Flatten(name="flatten")(x)
    if dense_units:
        x = layers.Dense(dense_units, use_bias=False, name="dense")(x)
        x = layers.BatchNormalization(name="dense_bn")(x)
        x = layers.ReLU(name="dense_relu")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name=name)
