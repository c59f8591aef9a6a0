"""The benchmark generator: seeded numbers composed from MNIST test digits only."""

from __future__ import annotations

import numpy as np
import pytest

from ocrexp.cli import main as ocrexp
from ocrexp.data.numbers import NumberStyle, generate_numbers, load_numbers, parse_length, save_numbers
from ocrexp.errors import ConfigError


def test_same_seed_same_images_other_seed_other_images(mnist):
    a = generate_numbers(mnist.x_test, mnist.y_test, 20, seed=5)
    b = generate_numbers(mnist.x_test, mnist.y_test, 20, seed=5)
    c = generate_numbers(mnist.x_test, mnist.y_test, 20, seed=6)
    assert a.labels == b.labels and all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert a.labels != c.labels


def test_an_image_does_not_depend_on_how_many_are_generated(mnist):
    few = generate_numbers(mnist.x_test, mnist.y_test, 3, seed=1)
    many = generate_numbers(mnist.x_test, mnist.y_test, 30, seed=1)
    assert few.labels == many.labels[:3]
    assert all(np.array_equal(x, y) for x, y in zip(few.images, many.images))


def test_labels_are_the_test_digits_drawn(mnist):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 50, seed=2)
    for label, indices in zip(numbers.labels, numbers.digit_indices):
        assert label == "".join(str(mnist.y_test[i]) for i in indices)
        assert all(0 <= i < len(mnist.x_test) for i in indices)


def test_lengths_follow_the_range_and_a_fixed_length(mnist):
    ranged = generate_numbers(mnist.x_test, mnist.y_test, 300, seed=3, length=(1, 6))
    assert {len(label) for label in ranged.labels} == {1, 2, 3, 4, 5, 6}
    fixed = generate_numbers(mnist.x_test, mnist.y_test, 20, seed=3, length=4)
    assert {len(label) for label in fixed.labels} == {4}


def test_images_look_like_scans_dark_ink_on_light_paper(mnist):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 10, seed=4)
    for image in numbers.images:
        assert image.dtype == np.uint8 and image.ndim == 2
        assert np.median(image) > 180 and image.min() < 100
    clean = generate_numbers(mnist.x_test, mnist.y_test, 5, seed=4, style=NumberStyle(noise=False))
    noisy = generate_numbers(mnist.x_test, mnist.y_test, 5, seed=4)
    corner = lambda im: im[:4, :4].std()  # noqa: E731
    assert all(corner(a) == 0 for a in clean.images) and any(corner(b) > 0 for b in noisy.images)


def test_digit_scale_follows_the_style(mnist):
    small = generate_numbers(mnist.x_test, mnist.y_test, 10, seed=7, length=1, style=NumberStyle(scale=(1, 1)))
    large = generate_numbers(mnist.x_test, mnist.y_test, 10, seed=7, length=1, style=NumberStyle(scale=(3, 3)))
    assert np.mean([b.shape[0] / a.shape[0] for a, b in zip(small.images, large.images)]) > 2


def test_save_and_load_round_trip_keeps_leading_zeros(mnist, tmp_path):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 30, seed=8, length=3)
    loaded = load_numbers(save_numbers(numbers, tmp_path / "set"))
    assert loaded.labels == numbers.labels and any(label.startswith("0") for label in loaded.labels)
    assert loaded.digit_indices == numbers.digit_indices
    assert all(np.array_equal(x, y) for x, y in zip(loaded.images, numbers.images))


@pytest.mark.parametrize("bad", [{"length": (0, 3)}, {"length": (4, 2)}, {"touching": 1.5}, {"scale": (0, 1)}])
def test_bad_style_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        NumberStyle(**bad)


def test_length_strings_parse_or_name_the_expected_form():
    assert parse_length("4") == (4, 4) and parse_length("1-6") == (1, 6)
    with pytest.raises(ConfigError, match="MIN-MAX"):
        parse_length("four")


def test_data_numbers_command_writes_pngs_and_labels(tmp_path, capsys):
    out = tmp_path / "bench"
    assert ocrexp(["data", "numbers", "--count", "12", "--length", "2-3", "--seed", "9",
                   "--touching", "0.5", "--out", str(out)]) == 0
    assert "12 number images" in capsys.readouterr().out
    loaded = load_numbers(out)
    assert len(loaded) == 12 and {len(label) for label in loaded.labels} <= {2, 3}
    assert len(list(out.glob("*.png"))) == 12


def test_data_numbers_command_rejects_a_bad_length(capsys):
    assert ocrexp(["data", "numbers", "--length", "x"]) == 2
    assert "MIN-MAX" in capsys.readouterr().err
