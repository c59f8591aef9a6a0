"""UCI handwritten digits (the copy inside scikit-learn), upsampled to MNIST's 28×28 frame.

The 1,797 images are 8×8 counts (0–16) of ink pixels in 4×4 blocks of a 32×32 bitmap, written by
people other than MNIST's writers: a small, different test of the same task, and a target for
fine-tuning an MNIST model.

Resizing: each 8×8 image is upsampled to ``image_size - 2*margin`` pixels a side with bilinear
interpolation (Pillow's, on the float values, pixel centres aligned), scaled from 0–16 to 0–255,
rounded to uint8 and framed by ``margin`` black pixels. The defaults (20×20 inside 28×28) match
MNIST's layout (each digit fitted into a 20×20 box and centred in 28×28), and ink is bright on
black as in MNIST. Bilinear keeps strokes smooth; nearest-neighbour would give 2.5-pixel blocks of
uneven width, and bicubic overshoots at stroke edges.

The train/test split is stratified by class and seeded by ``split_seed`` (not the run's seed), so
every run compares on the same test images.
"""

from __future__ import annotations

import numpy as np

from ocrexp.data.base import DigitData, content_digest
from ocrexp.errors import ConfigError, DataError

NAME = "digits"
CLASS_NAMES = [str(d) for d in range(10)]
# content_digest of scikit-learn's (1797, 8, 8) images as uint8 and int64 targets (scikit-learn 1.9):
# the source is pinned, so a changed copy cannot silently change results.
SOURCE_SHA256 = "1fa49054f5d5ba0bcf14a7848951319bfb97150b87f1a8c21b50191db38780b9"
MAX_VALUE = 16


def load(test_fraction: float = 0.25, split_seed: int = 0, image_size: int = 28, margin: int = 4) -> DigitData:
    """The UCI digits as uint8 ``(N, image_size, image_size, 1)`` images, split into train and test."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"dataset.source.test_fraction={test_fraction!r} is not allowed: use a fraction in (0, 1).")
    inner = image_size - 2 * margin
    if margin < 0 or inner < 1:
        raise ConfigError(f"dataset.source.margin={margin!r} is not allowed with image_size={image_size}: "
                          "use 0 <= margin < image_size / 2.")
    images, labels = _source()
    x = upsample(images, inner, margin)
    train_idx, test_idx = _stratified_split(labels, test_fraction, split_seed)
    x_train, y_train, x_test, y_test = x[train_idx], labels[train_idx], x[test_idx], labels[test_idx]
    return DigitData(
        name=NAME, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=list(CLASS_NAMES),
        checksum=content_digest(x_train, y_train, x_test, y_test),
        source=f"sklearn.datasets.load_digits (UCI, {len(labels)} images), bilinear 8x8->{inner}x{inner} "
               f"+ {margin}px margin, test_fraction={test_fraction}, split_seed={split_seed}",
        extra={"path": "scikit-learn's bundled copy", "source_sha256": SOURCE_SHA256},
    )


def fetch(cache_dir=None, *, force: bool = False, progress=None) -> DigitData:
    """Check scikit-learn's copy against the pin (``ocrexp data fetch digits``); nothing is downloaded."""
    (progress or (lambda _m: None))("checking scikit-learn's bundled copy against its pinned checksum")
    return load()


def upsample(images: np.ndarray, inner: int, margin: int) -> np.ndarray:
    """``(N, 8, 8)`` values 0–16 → uint8 ``(N, inner + 2*margin, same, 1)`` values 0–255 (see module doc)."""
    from PIL import Image

    out = np.zeros((len(images), inner + 2 * margin, inner + 2 * margin, 1), dtype=np.uint8)
    for i, img in enumerate(images):
        big = np.asarray(Image.fromarray(img.astype(np.float32)).resize((inner, inner), Image.Resampling.BILINEAR))
        out[i, margin:margin + inner, margin:margin + inner, 0] = np.clip(np.rint(big * (255 / MAX_VALUE)), 0, 255)
    return out


def _source() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 images (uint8 0–16) and int64 labels, checked against ``SOURCE_SHA256``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
    digest = content_digest(images, labels)
    if digest != SOURCE_SHA256:
        raise DataError(f"scikit-learn's digits (sklearn.datasets.load_digits) hash to {digest}, not the pinned "
                        f"{SOURCE_SHA256}: this scikit-learn ships different data, so results would not be comparable.")
    return images, labels


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, ``test_fraction`` of each class in test (seeded)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
                                           random_state=seed)
    return np.sort(train_idx), np.sort(test_idx)
