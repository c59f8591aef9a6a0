"""The tutorial CNN is exactly the tutorial's architecture; shapes come from the data."""

from __future__ import annotations

import pytest

from ocrexp import config
from ocrexp.config import compose
from ocrexp.errors import ConfigError
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


def test_the_strided_stem_gives_the_second_conv_the_tutorial_stems_grid_with_one_layer_less():
    tutorial, _ = build_model(compose().model, (28, 28, 1), 10)
    strided, _ = build_model(compose("model.stem=strided").model, (28, 28, 1), 10)
    assert [type(layer).__name__ for layer in strided.layers] == [
        "Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    conv1 = strided.get_layer("conv1")
    assert conv1.kernel_size == (4, 4) and conv1.strides == (2, 2)  # conv 3x3 + pool 2: a 4x4 field, stride 2
    assert conv1.output.shape == tutorial.get_layer("pool1").output.shape == (None, 13, 13, 32)
    assert strided.count_params() == 225_034 + 32 * (16 - 9)
    assert build_model(compose("model.stem=strided", "model.kernel_size=5").model, (28, 28, 1), 10)[0].get_layer(
        "conv1").output.shape == (None, 12, 12, 32)


def test_an_unknown_stem_is_one_config_error_before_anything_is_built():
    cfg = compose("model.stem=avg")
    with pytest.raises(ConfigError, match="^model.stem='avg' is not allowed: choose pool or strided.$"):
        config.validate(cfg)
    with pytest.raises(ConfigError, match="^model.stem='avg' is not allowed: choose pool or strided.$"):
        build_model(cfg.model, (28, 28, 1), 10)  # the builder says the same to callers that skip validation
