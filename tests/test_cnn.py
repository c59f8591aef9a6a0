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
    assert kinds == ["Cropping2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout",
                     "Dense"]
    assert model.layers[-1].activation.__name__ == "softmax"


def test_input_shape_and_class_count_flow_from_the_dataset():
    model, _ = build_model(compose().model, (32, 32, 3), 5)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5)


def test_the_strided_stem_gives_the_second_conv_the_tutorial_stems_grid_with_one_layer_less():
    tutorial, _ = build_model(compose().model, (28, 28, 1), 10)
    strided, _ = build_model(compose("model.stem=strided").model, (28, 28, 1), 10)
    assert [type(layer).__name__ for layer in strided.layers] == [
        "Cropping2D", "Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dropout", "Dense"]
    conv1 = strided.get_layer("conv1")
    assert conv1.kernel_size == (4, 4) and conv1.strides == (2, 2)  # conv 3x3 + pool 2: a 4x4 field, stride 2
    # 13x13 as the tutorial builds it; 12x12 once the rows and columns no output reads are trimmed
    assert conv1.output.shape == tutorial.get_layer("pool1").output.shape == (None, 12, 12, 32)
    assert strided.count_params() == 225_034 + 32 * (16 - 9)
    assert build_model(compose("model.stem=strided", "model.kernel_size=5").model, (28, 28, 1), 10)[0].get_layer(
        "conv1").output.shape == (None, 12, 12, 32)


def test_an_unknown_stem_is_one_config_error_before_anything_is_built():
    cfg = compose("model.stem=avg")
    with pytest.raises(ConfigError, match="^model.stem='avg' is not allowed: choose pool or strided.$"):
        config.validate(cfg)
    with pytest.raises(ConfigError, match="^model.stem='avg' is not allowed: choose pool or strided.$"):
        build_model(cfg.model, (28, 28, 1), 10)  # the builder says the same to callers that skip validation


@pytest.mark.parametrize("overrides", [[], ["model.stem=strided"], ["model.crop=1", "model.stem=strided"],
                                       ["model.kernel_size=5"]])
def test_the_trim_drops_only_pixels_no_output_depends_on(overrides):
    import keras
    import numpy as np

    from ocrexp.models.cnn import _unread_tail, tutorial_cnn

    settings = {k: v for k, v in compose(*overrides).model.items() if k != "_target_" and k in (
        "conv1_filters", "conv2_filters", "kernel_size", "dense_units", "dropout", "stem", "crop")}
    keras.utils.set_random_seed(0)
    trimmed, full = tutorial_cnn((28, 28, 1), 10, **settings), tutorial_cnn((28, 28, 1), 10, trim=False, **settings)
    full.set_weights(trimmed.get_weights())
    images = np.random.default_rng(0).random((8, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(trimmed(images), full(images), rtol=1e-5, atol=1e-6)
    # the full model's output does not change with the pixels trimmed away, and does with the last one kept
    unread = settings["crop"] + _unread_tail(28 - 2 * settings["crop"], settings["kernel_size"], settings["stem"])
    changed = images.copy()
    changed[:, 28 - unread:] = changed[:, :, 28 - unread:] = 0.5
    np.testing.assert_allclose(full(changed), full(images), rtol=1e-5, atol=1e-6)
    changed[:, 27 - unread] += 1.0
    assert not np.allclose(full(changed), full(images))


def test_the_default_cnn_reads_26x26_of_the_28x28_images():
    model, _ = build_model(compose().model, (28, 28, 1), 10)
    assert model.layers[0].name == "trim" and model.get_layer("conv1").input.shape == (None, 26, 26, 1)
    assert model.input_shape == (None, 28, 28, 1)
    assert build_model(compose("model.kernel_size=5").model, (28, 28, 1), 10)[0].layers[0].name == "conv1"
