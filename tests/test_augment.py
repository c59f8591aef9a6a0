"""Augmentation recipes: what they do to training images, and what they never touch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ocrexp import augment, config
from ocrexp.config import compose
from ocrexp.fitting import training_model
from tests.training import TINY, run, tracked

RECIPES = ("tutorial", "strong")


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    """64 real MNIST training digits as the model sees them (float32 in [0, 1])."""
    return mnist.x_train[:64].astype("float32") / 255.0


def recipe(name: str, seed: int = 42):
    return config.instantiate(compose(f"augmentation={name}").augmentation, seed=seed)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_keeps_shape_dtype_and_range_and_changes_training_pixels(name, digits):
    out = np.asarray(recipe(name)(digits, training=True))
    assert out.shape == digits.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    changed = np.abs(out - digits).reshape(len(digits), -1).max(axis=1) > 0.05
    assert changed.mean() > 0.9


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_reproducible_under_a_seed_and_differs_across_seeds(name, digits):
    first, again = recipe(name, seed=7)(digits, training=True), recipe(name, seed=7)(digits, training=True)
    other = recipe(name, seed=8)(digits, training=True)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.allclose(np.asarray(first), np.asarray(other))


@pytest.mark.parametrize("name", RECIPES)
def test_inference_path_never_augments(name, digits):
    """Validation, test and prediction go through the same wrapper with training off: images pass as they are."""
    identity = keras.Sequential([keras.Input(digits.shape[1:]), keras.layers.Identity()])
    trainee = training_model(identity, recipe(name))
    np.testing.assert_array_equal(trainee.predict(digits, verbose=0), digits)
    np.testing.assert_array_equal(np.asarray(trainee(digits, training=False)), digits)
    assert not np.allclose(np.asarray(trainee(digits, training=True)), digits)


def centre_of_mass(images: np.ndarray) -> np.ndarray:
    """(N, 2) row/column centre of the ink of each image."""
    rows, cols = np.mgrid[: images.shape[1], : images.shape[2]]
    ink = images[..., 0]
    total = ink.sum(axis=(1, 2))
    return np.stack([(ink * rows).sum(axis=(1, 2)) / total, (ink * cols).sum(axis=(1, 2)) / total], axis=1)


def test_seed_shift_moves_digits_by_up_to_a_tenth_of_the_image_like_image_data_generator(digits):
    shift = augment.RandomAffine(width_shift_range=0.1, height_shift_range=0.1, seed=0)
    batch = np.repeat(digits[:1], 256, axis=0)
    moved = centre_of_mass(np.asarray(shift(batch, training=True))) - centre_of_mass(batch)
    assert np.abs(moved).max() <= 2.8 + 0.3  # 10% of 28 px, plus interpolation at the border
    assert np.abs(moved).max() > 2.0 and np.abs(moved[:, 0]).mean() > 0.9  # uniform in ±2.8 px: mean 1.4


def test_seed_rotation_is_within_ten_degrees(digits):
    bar = np.zeros((1, 28, 28, 1), np.float32)
    bar[0, 13:15, 4:24] = 1.0  # a horizontal stroke through the centre
    rotated = np.asarray(augment.RandomAffine(rotation_range=10, seed=0)(np.repeat(bar, 256, axis=0), training=True))
    rows, cols = np.mgrid[:28, :28]
    angles = []
    for image in rotated[..., 0]:
        w = image / image.sum()
        r, c = (w * rows).sum(), (w * cols).sum()
        cov = np.cov(np.stack([cols.ravel() - c, rows.ravel() - r]), aweights=w.ravel())
        angles.append(np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))
    angles = np.abs(angles)
    assert angles.max() <= 10.5 and angles.max() > 8.0


def test_seed_zoom_scales_each_axis_independently_within_ten_percent():
    square = np.zeros((1, 28, 28, 1), np.float32)
    square[0, 8:20, 8:20] = 1.0
    zoomed = np.asarray(augment.RandomAffine(zoom_range=0.1, seed=0)(np.repeat(square, 256, axis=0), training=True))
    height = zoomed[..., 0].sum(axis=1).max(axis=1)  # the fullest column's ink: the square's height
    width = zoomed[..., 0].sum(axis=2).max(axis=1)
    ratio_w, ratio_h = width / 12.0, height / 12.0
    # An input zoom z shows the square at 1/z of its size: z in [0.9, 1.1] -> size in [0.91, 1.11].
    assert ratio_w.min() > 0.88 and ratio_w.max() < 1.14 and ratio_h.min() > 0.88 and ratio_h.max() < 1.14
    assert np.corrcoef(ratio_w, ratio_h)[0, 1] < 0.5  # independent draws per axis
    assert (ratio_w.max() - ratio_w.min()) > 0.12


@pytest.mark.slow
def test_run_with_augmentation_logs_a_grid_of_augmented_training_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    result = run(*tracked(tmp_path, *TINY, "augmentation=tutorial"))
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    names = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert "plots/augmentation.png" in names
    png = client.download_artifacts(result.run_id, "plots/augmentation.png", str(tmp_path))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
