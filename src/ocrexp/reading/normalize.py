"""MNIST's own geometry, applied to any grayscale image: polarity, crop, fit, centre of mass.

MNIST digits are bright ink on a black background, cropped to their bounding box, scaled with
anti-aliasing to fit a 20x20 box keeping the aspect ratio, and placed in a 28x28 field so that
their centre of mass is at the centre. :func:`to_ink` brings a photo or scan to that polarity and
contrast; :func:`normalize_digit` does the geometry. Both single-digit images and each digit cut
out of a number go through the same :func:`normalize_digit`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ocrexp.reading.decode import require_contrast
from ocrexp.reading.errors import ImageSizeError, NoDigitsError, UnreadableImageError, UnsupportedImageError

#: MNIST: a 20-pixel box inside a 28-pixel field; other field sizes keep the ratio.
BOX_RATIO = 20 / 28
#: Ink below this (on 0-1) is anti-aliasing haze, not part of the digit's bounding box.
BBOX_LEVEL = 0.05
#: Lighting counts as uneven when the paper's shade varies across the image by more than this.
UNEVEN_LIGHTING = 0.08
#: Anti-aliased resampling, like the area averaging that made MNIST grey levels from binary scans.
RESAMPLING = Image.Resampling.BILINEAR


def pixel_plane(values: np.ndarray, what: str = "image") -> np.ndarray:
    """``values`` as a 2-D float32 array of finite levels, or the one-sentence ImageError saying why not."""
    a = np.asarray(values)
    if a.ndim != 2:
        raise UnsupportedImageError(f"{what} has shape {a.shape}; expected a 2-D (H, W) array")
    if a.dtype.kind not in "biuf":
        raise UnsupportedImageError(f"{what} has dtype {a.dtype}; expected integers, floats or booleans")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise UnreadableImageError(f"{what} holds NaN or infinite levels; expected finite values in [0, 1]")
    return a


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The grey level that best separates finite ``values`` into two classes (Otsu's method;
    negative values count as 0). With a single level there is nothing to separate: that level."""
    v = np.asarray(values, dtype=np.float32).ravel()
    hi = float(v.max(initial=0.0))
    if hi <= 0.0:
        return 0.0
    # A bincount over quantised levels: the same histogram as np.histogram, several times faster.
    hist = np.bincount(np.clip((v * (bins / hi)).astype(np.intp), 0, bins - 1), minlength=bins)
    centers = (np.arange(bins) + 0.5) * (hi / bins)
    w0 = np.cumsum(hist, dtype=np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centers, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (s0 / w0 - (s0[-1] - s0) / w1) ** 2
    if np.isnan(between[:-1]).all():  # every value in one bin
        return hi
    return float((int(np.nanargmax(between[:-1])) + 1) * (hi / bins))


def to_ink(gray: np.ndarray) -> np.ndarray:
    """Ink intensity in [0, 1]: 0 on the paper, 1 at full pen pressure (MNIST polarity).

    Polarity comes from the image's median shade (paper covers most of any picture of a
    number): dark ink on light paper is inverted. The paper is the median shade of the pixels on
    its side of Otsu's split (so even a digit filling a tight crop does not darken it), taken
    locally where the lighting is uneven (a photo's shading). The paper's own grain (three
    robust standard deviations) is removed and the strokes' typical intensity is stretched to 1.
    """
    g = pixel_plane(gray)
    if g.size == 0:
        raise ImageSizeError(f"image is {g.shape[1]}x{g.shape[0]} pixels; there is nothing to read")
    require_contrast(g)  # as load_image does; a uniform image would come out as all ink
    median = _median01(g)
    dark_ink = median >= (float(g.min()) + float(g.max())) / 2
    paper = _uneven_paper(g, dark_ink)
    if paper is None:
        cut = otsu_threshold(g)
        side = g[g > cut] if dark_ink else g[g <= cut]
        paper = _median01(side) if side.size else median
    signed = (paper - g) if dark_ink else (g - paper)
    # Grain is measured on the paper's pixels only (Otsu's split), so that a digit filling much
    # of a tightly cropped image does not pass for grain and get stripped away.
    on_paper = signed[signed <= otsu_threshold(np.clip(signed, 0.0, None))]
    grain = 3.0 * 1.4826 * _median01(np.abs(on_paper))
    ink = np.clip(signed - grain, 0.0, None)
    strokes = ink[ink > otsu_threshold(ink)]
    level = float(np.percentile(strokes, 90)) if strokes.size else float(ink.max())
    if level <= 0.0:
        raise NoDigitsError("no ink found: the image has no marks darker or lighter than its paper")
    return np.clip(ink / level, 0.0, 1.0)


def _uneven_paper(gray: np.ndarray, dark_ink: bool) -> np.ndarray | None:
    """The paper's shade at every pixel if the lighting varies across the image, else None.

    The image is cut into blocks a third of its smaller side; in each, the paper is the 90th
    percentile of brightness (the 10th for light ink), which stays paper even where a thick
    digit covers most of the block. The block shades, interpolated, are the paper everywhere.
    """
    h, w = gray.shape
    block = max(1, min(h, w) // 3)
    rows, cols = max(1, h // block), max(1, w // block)
    cells = gray[:rows * block, :cols * block].reshape(rows, block, cols, block).transpose(0, 2, 1, 3)
    paper = np.percentile(cells.reshape(rows, cols, -1), 90 if dark_ink else 10, axis=2).astype(np.float32)
    if float(paper.max() - paper.min()) < UNEVEN_LIGHTING:
        return None
    full = Image.fromarray(paper).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(full, np.float32)


def _median01(values: np.ndarray, bins: int = 2048) -> float:
    """The median of values in [0, 1] to within 1/bins, by histogram: linear time, no sort."""
    counts = np.bincount((np.clip(values, 0.0, 1.0) * (bins - 1)).astype(np.intp).ravel(), minlength=bins)
    return float(np.searchsorted(np.cumsum(counts), (counts.sum() + 1) / 2)) / (bins - 1)


def normalize_digit(ink: np.ndarray, size: int = 28, box: int | None = None) -> np.ndarray:
    """One digit's ink (any size, 0 = background) to a ``size x size`` MNIST-style float32 image.

    Crops to the bounding box of the ink, resizes with anti-aliasing so the longer side is
    ``box`` (20 for 28) keeping the aspect ratio, and pastes it so its centre of mass falls on
    the centre of the field (shifted back inside when a lopsided digit would poke out).
    """
    box = box or max(1, round(size * BOX_RATIO))
    a = np.clip(pixel_plane(ink, "digit ink"), 0.0, None)  # ink is never negative
    present = a > BBOX_LEVEL
    rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
    if rows.size == 0:
        raise NoDigitsError("no ink in the digit's region")
    crop = a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        resized = Image.fromarray(np.ascontiguousarray(crop)).resize((new_w, new_h), RESAMPLING)
        crop = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    mass = float(crop.sum())
    cy = float(crop.sum(axis=1) @ np.arange(new_h)) / mass  # centre of mass, in pixel indices
    cx = float(crop.sum(axis=0) @ np.arange(new_w)) / mass
    top = int(np.clip(round(size / 2 - cy), 0, size - new_h))
    left = int(np.clip(round(size / 2 - cx), 0, size - new_w))
    field = np.zeros((size, size), np.float32)
    field[top:top + new_h, left:left + new_w] = crop
    return field
