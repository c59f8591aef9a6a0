"""model.whiten: a first convolution fixed to whiten the training images' patches; model.crop."""

from __future__ import annotations

import numpy as np
import pytest

from ocrexp import config
from ocrexp.config import compose
from ocrexp.errors import ConfigError
from ocrexp.models import build_model
from ocrexp.models.whitening import patch_whitening, whiten_first_conv

SPEEDRUN_STEM = ("model.stem=strided", "model.conv1_filters=16", "model.crop=1")


def test_whitened_patches_have_zero_mean_and_unit_covariance_and_come_in_opposite_pairs():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(300, 10, 10, 2))
    images = noise + 0.7 * np.roll(noise, 1, axis=2) + 0.5 * noise[..., ::-1] + 0.5  # neighbours, channels correlated
    kernel, bias = patch_whitening(images.astype(np.float32), (3, 3), (1, 2), 12, eps=1e-9)
    assert kernel.shape == (3, 3, 2, 12) and bias.shape == (12,)
    windows = np.lib.stride_tricks.sliding_window_view(images, (3, 3), axis=(1, 2))[:, :, ::2]
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 18)  # the kernel's (row, column, channel) order
    out = patches @ kernel.reshape(18, 12) + bias
    assert np.allclose(out.mean(0), 0, atol=1e-3)
    assert np.allclose(np.cov(out[:, :6], rowvar=False, bias=True), np.eye(6), atol=1e-3)
    assert np.array_equal(kernel[..., 6:], -kernel[..., :6])


def test_the_frozen_first_layer_of_the_speedrun_stem_whitens_what_it_sees_through_the_crop(mnist):
    import keras

    model, _ = build_model(compose(*SPEEDRUN_STEM, "model.whiten=true").model, (28, 28, 1), 10)
    assert [layer.name for layer in model.layers[:2]] == ["crop", "conv1"]
    images = mnist.x_train[:2000]
    whiten_first_conv(model, images, 255.0)
    conv = model.get_layer("conv1")
    trainable = {id(v) for v in model.trainable_weights}
    assert not conv.trainable and id(conv.kernel) not in trainable and id(conv.bias) not in trainable
    assert len(trainable) == len(model.weights) - 2
    # the layer's own output, before its ReLU, is white over the same images
    pre = keras.Model(model.inputs[0], model.get_layer("crop").output)(images.astype("float32").reshape(-1, 28, 28, 1) / 255.0)
    linear = keras.ops.convert_to_numpy(keras.ops.conv(pre, conv.kernel, strides=2) + conv.bias).reshape(-1, 16)
    assert np.allclose(linear.mean(0), 0, atol=1e-3)
    cov = np.cov(linear[:, :8], rowvar=False, bias=True)
    assert np.allclose(np.diag(cov)[:4], 1, atol=0.02)  # the leading directions: eps is negligible there
    assert np.allclose(cov - np.diag(np.diag(cov)), 0, atol=1e-3)


@pytest.mark.slow
def test_a_whitened_run_trains_everything_but_the_first_layer():
    from tests.training import fit

    fitted = fit(*SPEEDRUN_STEM, "model.whiten=true")
    fresh, _ = build_model(fitted.cfg.model, (28, 28, 1), 10)
    whiten_first_conv(fresh, fitted.splits.x_train, fitted.cfg.dataset.scale)
    for name in ("conv1", "conv2"):
        trained, before = (np.asarray(m.get_layer(name).kernel) for m in (fitted.model, fresh))
        assert np.array_equal(trained, before) == (name == "conv1"), name


def test_whiten_needs_filters_in_pairs_and_no_more_than_the_patches_have():
    images = np.zeros((4, 8, 8, 1), np.float32)
    with pytest.raises(ConfigError, match=r"^model.whiten=true needs an even number of filters .* it has 15\.$"):
        patch_whitening(images, (4, 4), (2, 2), 15)
    with pytest.raises(ConfigError, match=r"^model.whiten=true gives at most 18 first-layer filters for 3x3 patches "
                                          r"of 1 channel\(s\); the model asks for 32\.$"):
        patch_whitening(images, (3, 3), (1, 1), 32)


def test_whiten_and_crop_settings_are_checked_before_tensorflow_loads():
    with pytest.raises(ConfigError, match="^model.whiten='yes' is not allowed: use true or false.$"):
        config.validate(compose("model.whiten=yes"))
    with pytest.raises(ConfigError, match="^model.whiten=true sets up a freshly built model's first layer"):
        config.validate(compose("model.whiten=true", "model.init_from=runs:/abc/model"))
    with pytest.raises(ConfigError, match=r"^model.whiten=true needs an even number .* model.conv1_filters is 15\.$"):
        config.validate(compose("model.whiten=true", "model.conv1_filters=15"))
    with pytest.raises(ConfigError, match="^model.crop=-1 is not allowed: use 0 or a positive number of pixels.$"):
        config.validate(compose("model.crop=-1"))


def test_crop_cuts_every_border_and_keeps_the_full_input():
    model, _ = build_model(compose(*SPEEDRUN_STEM).model, (28, 28, 1), 10)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.get_layer("crop").output.shape == (None, 26, 26, 1)
    assert model.get_layer("conv1").output.shape == (None, 12, 12, 16)
    assert "crop" not in [layer.name for layer in build_model(compose().model, (28, 28, 1), 10)[0].layers]


def test_the_run_header_counts_the_frozen_first_layer():
    from ocrexp.train import header, prepare

    cfg = compose("experiment=speedrun", "debug=fast", "tracking=none")
    line = header(cfg, prepare(cfg))
    assert line.startswith("speedrun: cnn (81,970 params, 272 frozen) on mnist (")  # conv1: 16 x (4x4 + 1)


def test_a_functional_model_without_a_bias_gets_its_first_convolution_whitened():
    model, _ = build_model(compose("model=cnn_bn", "model.whiten=true").model, (28, 28, 1), 10)
    images = (np.random.default_rng(0).random((500, 28, 28, 1)) * 255).astype(np.uint8)
    whiten_first_conv(model, images, 255.0)
    conv = model.get_layer("block1_conv1")  # 5x5, no bias: BatchNorm centres its output
    assert not conv.trainable and not conv.use_bias
    kernel, _ = patch_whitening(images.astype(np.float32) / 255.0, (5, 5), (1, 1), 32)
    assert np.allclose(np.asarray(conv.kernel), kernel)


@pytest.mark.parametrize("crop", [11, 14])
def test_a_crop_that_leaves_too_little_image_is_one_config_error(crop):
    with pytest.raises(ConfigError, match=rf"^the tutorial CNN's maps shrink to nothing on 28x28 images with "
                                          rf"model.crop={crop}, model.stem=pool and model.kernel_size=3: use a "
                                          r"smaller crop or kernel\.$"):
        build_model(compose(f"model.crop={crop}").model, (28, 28, 1), 10)
