"""MNIST geometry and segmentation on real MNIST test digits (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from ocrexp.data.numbers import NumberStyle, generate_numbers
from ocrexp.reading.decode import load_image
from ocrexp.reading.errors import NoDigitsError
from ocrexp.reading.normalize import normalize_digit, to_ink
from ocrexp.reading.segment import SPLIT_ASPECT, cut_lattice, find_glyphs


def _ink(mnist, i: int) -> np.ndarray:
    return mnist.x_test[i, ..., 0].astype(np.float32) / 255.0


def _on_paper(ink: np.ndarray) -> np.ndarray:
    return np.rint(240 - 220 * np.clip(ink, 0, 1)).astype(np.uint8)


def _render(ink: np.ndarray, scale: float) -> np.ndarray:
    img = Image.fromarray(np.rint(ink * 255).astype(np.uint8))
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC),
                      np.float32) / 255.0


def _row(inks: list[np.ndarray], gaps: list[int], pad: int = 12) -> np.ndarray:
    """Ink of digits laid left to right with the given gaps (negative: overlapping boxes)."""
    crops = []
    for ink in inks:
        rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
        crops.append(ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    height = max(c.shape[0] for c in crops)
    x, lefts = 0, []
    for i, c in enumerate(crops):
        lefts.append(x)
        x += c.shape[1] + (gaps[i] if i < len(gaps) else 0)
    canvas = np.zeros((height + 2 * pad, max(l_ + c.shape[1] for l_, c in zip(lefts, crops)) + 2 * pad), np.float32)
    for left, c in zip(lefts, crops):
        top = pad + (height - c.shape[0]) // 2
        region = canvas[top:top + c.shape[0], pad + left:pad + left + c.shape[1]]
        np.maximum(region, c, out=region)
    return canvas


def test_normalising_an_mnist_digit_gives_it_back(mnist):
    originals = mnist.x_test[:500, ..., 0].astype(np.float32) / 255.0
    again = np.stack([normalize_digit(to_ink(d)) for d in originals])
    assert np.abs(again - originals).mean() < 0.002
    centres = np.array([ndimage.center_of_mass(d) for d in again])
    assert np.allclose(centres.mean(axis=0), (14.0, 14.0), atol=0.1)  # MNIST's own centre of mass


def test_a_digit_on_a_large_scanned_canvas_comes_back_to_mnist_geometry(mnist):
    original = _ink(mnist, 7)
    canvas = np.zeros((400, 300), np.float32)
    big = _render(original, 8.0)  # 224 x 224, then placed off-centre
    canvas[150:150 + big.shape[0], 40:40 + big.shape[1]] = big
    field = normalize_digit(to_ink(load_image(_on_paper(canvas))))
    rows, cols = np.flatnonzero((field > 0.05).any(1)), np.flatnonzero((field > 0.05).any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20  # fits the 20 x 20 box
    assert np.allclose(ndimage.center_of_mass(field), (14, 14), atol=0.5)
    assert np.abs(field - original).mean() < 0.03


def test_normalising_keeps_the_aspect_ratio_of_a_thin_one():
    stroke = np.zeros((100, 12), np.float32)
    stroke[:, 4:8] = 1.0
    field = normalize_digit(stroke)
    rows, cols = np.flatnonzero((field > 0.05).any(1)), np.flatnonzero((field > 0.05).any(0))
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 <= 4


def test_field_size_follows_the_model_not_a_constant():
    field = normalize_digit(np.pad(np.ones((30, 30), np.float32), 5), size=32)
    assert field.shape == (32, 32)


def test_uneven_gaps_and_specks_still_give_one_glyph_per_digit_in_order(mnist):
    ids = [3, 2, 1, 18, 4]  # test digits 0 1 ? ? ?
    ink = _row([_render(_ink(mnist, i), 2.0) for i in ids], gaps=[2, 30, 6, 55])
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, ink.shape[0], 40), rng.integers(0, ink.shape[1], 40)
    ink[ys, xs] = 0.8  # single-pixel specks of ink
    glyphs = find_glyphs(to_ink(load_image(_on_paper(ink))))
    assert len(glyphs) == len(ids)
    centres = [(g.box[1] + g.box[3]) / 2 for g in glyphs]
    assert centres == sorted(centres)


def test_a_digit_broken_in_two_pieces_is_one_glyph(mnist):
    digit = _render(_ink(mnist, 0), 2.0)  # a 7
    rows = np.flatnonzero(digit.any(1))
    band = rows[0] + (rows[-1] - rows[0]) // 3
    broken = digit.copy()
    broken[band:band + 3] = 0.0  # the pen lifted: two separate marks
    _, pieces = ndimage.label(broken > 0.3)
    assert pieces >= 2
    ink = _row([_render(_ink(mnist, 1), 2.0), broken, _render(_ink(mnist, 2), 2.0)], gaps=[10, 10])
    assert len(find_glyphs(to_ink(load_image(_on_paper(ink))))) == 3


def test_touching_digits_form_one_wide_glyph_offered_cuts(mnist):
    ink = _row([_render(_ink(mnist, 3), 2.0), _render(_ink(mnist, 4), 2.0)], gaps=[-4])  # 0 and 4 overlap
    glyphs = find_glyphs(to_ink(load_image(_on_paper(ink))))
    assert len(glyphs) == 1 and glyphs[0].width >= SPLIT_ASPECT * glyphs[0].height
    lattice = cut_lattice(glyphs[0])
    assert lattice.n_nodes > 2 and len(lattice.pieces) > 2
    assert lattice.spans[0] == (0, lattice.n_nodes - 1)  # the whole glyph is always a candidate


def test_a_narrow_glyph_is_not_offered_cuts(mnist):
    (glyph,) = find_glyphs(to_ink(_render(_ink(mnist, 2), 3.0)))
    assert len(cut_lattice(glyph).pieces) == 1


def test_generated_numbers_segment_into_their_digit_count(mnist):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 200, seed=1, length=(1, 6))
    counts = [len(find_glyphs(to_ink(load_image(im)))) for im in numbers.images]
    right = np.mean([c == len(label) for c, label in zip(counts, numbers.labels)])
    assert right >= 0.99


def test_paper_with_only_grain_and_specks_has_no_digits():
    rng = np.random.default_rng(3)
    paper = rng.normal(230, 6, (120, 200))
    paper[rng.integers(0, 120, 30), rng.integers(0, 200, 30)] = 40  # ink specks
    with pytest.raises(NoDigitsError, match="specks"):
        find_glyphs(to_ink(load_image(np.clip(paper, 0, 255).astype(np.uint8))))


def test_numbers_style_with_touching_pairs_makes_wide_glyphs(mnist):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 40, seed=2, length=2, style=NumberStyle(touching=1.0))
    singles = [len(find_glyphs(to_ink(load_image(im)))) == 1 for im in numbers.images]
    assert np.mean(singles) > 0.8  # touching digits are one connected mark


def test_uneven_lighting_is_flattened_before_segmenting(mnist):
    numbers = generate_numbers(mnist.x_test, mnist.y_test, 60, seed=4, length=4)
    right = 0
    for image in numbers.images:
        h, w = image.shape
        shade = np.linspace(0, 120, w)[None, :] + np.linspace(0, 60, h)[:, None]  # a photo's falloff
        shaded = np.clip(image - shade, 0, 255).astype(np.uint8)
        ink = to_ink(load_image(shaded))
        assert np.percentile(ink, 50) == 0.0  # the dark corner is still paper, not ink
        right += len(find_glyphs(ink)) == 4
    assert right >= 57


def test_a_tightly_cropped_digit_reads_like_one_with_a_wide_margin(mnist):
    # The same glyphs (the generator draws them before the margin) with 2 px or ~70% of a digit
    # height of paper around them: a digit covering much of its image must neither lose its
    # strokes as "grain" nor be missed.
    def fields(margin):
        style = NumberStyle(margin=(margin, margin))
        numbers = generate_numbers(mnist.x_test, mnist.y_test, 150, seed=3, length=1, style=style)
        return [find_glyphs(to_ink(load_image(image))) for image in numbers.images]

    tight, wide = fields(0.0), fields(0.7)
    assert all(len(t) == len(w) == 1 for t, w in zip(tight, wide))
    diffs = np.array([np.abs(normalize_digit(t[0].ink) - normalize_digit(w[0].ink)).mean() for t, w in zip(tight, wide)])
    assert diffs.mean() < 0.025 and diffs.max() < 0.15
