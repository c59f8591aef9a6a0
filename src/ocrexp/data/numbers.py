"""Seeded images of handwritten multi-digit numbers, composed from MNIST *test* digits only.

No training run ever sees these digits, so reading accuracy on them is an honest benchmark. Each
image is a row of randomly drawn test digits with random length, gaps, per-digit scale, slight
rotation and vertical jitter, optionally with touching neighbours, drawn as dark ink on light
paper with paper grain and ink specks, like a scan. The same seed gives the same images.

    numbers = generate_numbers(mnist.x_test, mnist.y_test, count=1000, length=4, seed=0)
    save_numbers(numbers, "data/numbers/len4-seed0")      # PNGs + labels.csv
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ocrexp.errors import ConfigError, DataError

LABELS_FILE = "labels.csv"


@dataclass(frozen=True)
class NumberStyle:
    """How numbers are drawn. Lengths are in units of one MNIST digit's 20-pixel box."""

    length: tuple[int, int] = (1, 6)          # digits per number, inclusive range
    scale: tuple[float, float] = (1.0, 2.5)   # digit height = 20 px x this, per number
    scale_jitter: float = 0.1                 # each digit's scale varies by up to +-this
    rotation: float = 8.0                     # degrees, each digit, +-
    gap: tuple[float, float] = (0.05, 0.6)    # space between digits, x digit height
    jitter_y: float = 0.08                    # vertical offset per digit, x digit height, +-
    touching: float = 0.0                     # probability that a neighbouring pair touches
    noise: bool = True                        # paper grain and ink specks
    margin: tuple[float, float] = (0.2, 0.8)  # blank border, x digit height

    def __post_init__(self) -> None:
        lo, hi = self.length
        if not 1 <= lo <= hi:
            raise ConfigError(f"numbers length={self.length}: need 1 <= min <= max")
        if not 0.0 <= self.touching <= 1.0:
            raise ConfigError(f"numbers touching={self.touching}: a probability in [0, 1]")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"numbers scale={self.scale}: need 0 < min <= max")


@dataclass
class NumberImages:
    """Grayscale uint8 images (dark ink on light paper), their number strings and source digits."""

    images: list[np.ndarray]
    labels: list[str]
    digit_indices: list[tuple[int, ...]] = field(default_factory=list)  # into the MNIST test set

    def __len__(self) -> int:
        return len(self.images)


def generate_numbers(x_test: np.ndarray, y_test: np.ndarray, count: int, *, seed: int = 0,
                     style: NumberStyle | None = None, length: int | tuple[int, int] | None = None,
                     class_names: list[str] | None = None) -> NumberImages:
    """``count`` number images built from the digit images ``x_test`` labelled ``y_test``.

    ``length`` (an int or an inclusive range) overrides ``style.length``.
    """
    if count < 1:
        raise ConfigError(f"numbers count={count}: must be at least 1")
    style = style or NumberStyle()
    if length is not None:
        style = NumberStyle(**{**style.__dict__, "length": (length, length) if isinstance(length, int) else tuple(length)})
    names = class_names or [str(i) for i in range(int(y_test.max()) + 1)]
    digits = np.asarray(x_test)[..., 0] if np.asarray(x_test).ndim == 4 else np.asarray(x_test)
    out = NumberImages([], [], [])
    for i in range(count):
        # One stream per image: image i is the same whatever the count, and its digits are the
        # same whatever the drawing style, so styles can be compared digit for digit.
        rng = np.random.default_rng([seed, i])
        n = int(rng.integers(style.length[0], style.length[1] + 1))
        idx = rng.integers(0, len(digits), size=n)
        out.images.append(_compose([digits[i] for i in idx], style, rng))
        out.labels.append("".join(names[int(y_test[i])] for i in idx))
        out.digit_indices.append(tuple(int(i) for i in idx))
    return out


def parse_length(text: str) -> tuple[int, int]:
    """``"4"`` -> (4, 4); ``"1-6"`` -> (1, 6)."""
    lo, _, hi = str(text).partition("-")
    try:
        length = (int(lo), int(hi or lo))
    except ValueError:
        raise ConfigError(f"numbers length {text!r}: expected N or MIN-MAX, e.g. 4 or 1-6") from None
    NumberStyle(length=length)  # validates
    return length


def save_numbers(numbers: NumberImages, out_dir: str | Path) -> Path:
    """Write ``00000.png ...`` and ``labels.csv`` (file, number, MNIST test indices) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(numbers) - 1)))
    with open(out / LABELS_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "number", "mnist_test_indices"])
        for i, (image, label) in enumerate(zip(numbers.images, numbers.labels)):
            name = f"{i:0{width}d}.png"
            Image.fromarray(image).save(out / name)
            indices = " ".join(map(str, numbers.digit_indices[i])) if numbers.digit_indices else ""
            writer.writerow([name, label, indices])
    return out


def load_numbers(directory: str | Path) -> NumberImages:
    """Read a set written by :func:`save_numbers` (labels are kept as strings: leading zeros count)."""
    d = Path(directory)
    try:
        with open(d / LABELS_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"{d} has no readable {LABELS_FILE} ({exc.strerror}); create it with `ocrexp data numbers`") from None
    images = [np.asarray(Image.open(d / r["file"]).convert("L")) for r in rows]
    indices = [tuple(int(i) for i in r.get("mnist_test_indices", "").split()) for r in rows]
    return NumberImages(images, [r["number"] for r in rows], indices)


def _compose(digits: list[np.ndarray], style: NumberStyle, rng: np.random.Generator) -> np.ndarray:
    """One number: digits placed left to right on an ink canvas, then rendered on paper."""
    base = 20.0 * rng.uniform(*style.scale)
    glyphs = [_render_digit(d, base * rng.uniform(1 - style.scale_jitter, 1 + style.scale_jitter),
                            rng.uniform(-style.rotation, style.rotation)) for d in digits]
    height = max(g.shape[0] for g in glyphs)
    jitter = max(1, int(round(style.jitter_y * base)))
    tops = [jitter + (height - g.shape[0]) // 2 + int(rng.integers(-jitter, jitter + 1)) for g in glyphs]
    lefts = [0]
    for i in range(1, len(glyphs)):
        if rng.random() < style.touching:
            overlap = int(rng.integers(0, max(1, round(base / 20)) + 1))
            lefts.append(lefts[-1] + _touching_offset(glyphs[i - 1], glyphs[i], tops[i] - tops[i - 1]) - overlap)
        else:
            lefts.append(lefts[-1] + glyphs[i - 1].shape[1] + int(round(rng.uniform(*style.gap) * base)))
    margin = int(round(rng.uniform(*style.margin) * base)) + 2
    width = max(l_ + g.shape[1] for l_, g in zip(lefts, glyphs))
    canvas = np.zeros((height + 2 * jitter + 2 * margin, width + 2 * margin), np.float32)
    for top, left, g in zip(tops, lefts, glyphs):
        region = canvas[margin + top:margin + top + g.shape[0], margin + left:margin + left + g.shape[1]]
        np.maximum(region, g, out=region)
    return _on_paper(canvas, style.noise, rng)


def _render_digit(digit: np.ndarray, height: float, angle: float) -> np.ndarray:
    """A digit's ink (0-1), cropped to its box, scaled so the 20-px box becomes ``height``, rotated."""
    img = Image.fromarray(digit)
    box = img.getbbox() or (0, 0, digit.shape[1], digit.shape[0])
    img = img.crop(box)
    factor = height / 20.0
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    img = img.resize(size, Image.Resampling.BICUBIC).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    img = img.crop(img.getbbox() or (0, 0, img.width, img.height))
    return np.asarray(img, np.float32) / 255.0


def _touching_offset(left: np.ndarray, right: np.ndarray, dy: int) -> int:
    """Offset of ``right``'s origin from ``left``'s (``right`` sits ``dy`` rows lower) at which
    their ink first shares a column in some row, i.e. touches."""
    top, bottom = max(0, dy), min(left.shape[0], dy + right.shape[0])
    if bottom <= top:
        return left.shape[1]
    a = left[top:bottom] > 0.3
    b = right[top - dy:bottom - dy] > 0.3
    rows = a.any(axis=1) & b.any(axis=1)
    if not rows.any():
        return left.shape[1]
    last_ink = left.shape[1] - 1 - np.argmax(a[rows][:, ::-1], axis=1)
    first_ink = np.argmax(b[rows], axis=1)
    return int((last_ink - first_ink).max())


def _on_paper(ink: np.ndarray, noise: bool, rng: np.random.Generator) -> np.ndarray:
    paper, pen = rng.uniform(215, 250), rng.uniform(10, 70)
    if noise:
        specks = rng.random(ink.shape) < rng.uniform(0, 0.002)
        ink = np.maximum(ink, specks * rng.uniform(0.3, 0.9, ink.shape))
    image = paper - (paper - pen) * ink
    if noise:
        image = image + rng.normal(0.0, rng.uniform(2, 8), ink.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
