"""Convolutional digit classifiers."""

from __future__ import annotations

from typing import Sequence


def seed_cnn(
    input_shape: Sequence[int],
    num_classes: int,
    conv1_filters: int = 32,
    conv2_filters: int = 64,
    kernel_size: int = 3,
    dense_units: int = 128,
    dropout: float = 0.5,
    name: str = "cnn",
):
    """The seed tutorial's CNN (225,034 parameters on 28x28x1, 10 classes, with the defaults).

    Conv2D(32, 3x3, relu) -> MaxPool(2) -> Conv2D(64, 3x3, relu) -> MaxPool(2) -> Flatten
    -> Dense(128, relu) -> Dropout(0.5) -> Dense(classes, softmax).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=tuple(input_shape), name="image"),
            layers.Conv2D(conv1_filters, kernel_size, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(conv2_filters, kernel_size, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(dense_units, activation="relu", name="dense"),
            layers.Dropout(dropout, name="dropout"),
            # float32 output keeps softmax stable under mixed precision
            layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs"),
        ],
        name=name,
    )
