"""The tutorial CNN is exactly the tutorial's architecture; shapes come from the data."""

from __future__ import annotations

from ocrexp.config import compose
from ocrexp.models import build_model



def test_tutorial_cnn_has_225034_parameters_for_mnist():
    model, _ = build_model(compose().model, (28, 28, 1), 10)
    assert model.count_params() == 225_034
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    assert model.layers[-1].activation.__name__ == "softmax"


def test_input_shape_and_class_count_flow_from_the_dataset():
    model, _ = build_model(compose().model, (32, 32, 3), 5)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5)
