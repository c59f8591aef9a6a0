"""The user's own labelled images: one folder per class, PNG or JPEG, any size or colour.

Two layouts are understood::

    root/<label>/*.png|jpg                      split into train/test by ``test_fraction`` (seeded)
    root/train/<label>/*  +  root/test/<label>/*    split as given (a test/ without train/ is an error)

Class names are the label folders' names, sorted numeric-aware ("2" < "9" < "10"); class ``k`` is
the ``k``-th of them. Every image is converted to 8-bit grey and resized (bilinear, antialiased
when shrinking; the aspect ratio is not kept) to ``image_size``. Transparent pixels are laid over
white, as on paper; ``invert: true`` turns dark-on-light scans into MNIST's light-on-dark.

Anything that would silently produce a wrong dataset (an unreadable or non-image file with an
image suffix, an empty label folder, a loose image outside any label folder, a test label that has
no training folder) is a ``DataError`` naming the file or folder. Hidden entries (".name") and
files with other suffixes are ignored, and label folders are read flat (no sub-folders).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocrexp.data.base import DigitData, content_digest
from ocrexp.errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUT = "<root>/<label>/*.png|jpg or <root>/train/<label>/ and <root>/test/<label>/"


def load(root: str, image_size: int | Sequence[int] = 28, test_fraction: float = 0.2, split_seed: int = 0,
         invert: bool = False, name: str = "folder") -> DigitData:
    """Images under ``root`` as uint8 ``(N, height, width, 1)`` arrays with labels from folder names."""
    height, width = _size(image_size)
    if not 0 < test_fraction < 1:
        raise ConfigError(f"dataset.source.test_fraction={test_fraction!r} is not allowed: use a fraction in (0, 1).")
    root_dir = Path(root).expanduser()
    if not root_dir.is_dir():
        raise DataError(f"Image folder {root_dir} does not exist; set dataset.source.root to a folder laid out as {LAYOUT}.")
    train_dir, test_dir = root_dir / "train", root_dir / "test"
    if train_dir.is_dir():
        train = _scan(train_dir)
        test = _scan(test_dir) if test_dir.is_dir() else None
    elif test_dir.is_dir():
        raise DataError(f"{root_dir} has a test/ folder but no train/ folder; add {train_dir} or move the label folders up.")
    else:
        train, test = _scan(root_dir), None
    class_names = sorted(train, key=natural_key)
    if test is None:
        train, test = _split(train, class_names, test_fraction, split_seed, root_dir)
    else:
        for label in sorted(test, key=natural_key):
            if label not in train:
                raise DataError(f"{test_dir / label} has no counterpart in {train_dir}: every test label must "
                                "also be a training label.")
    x_train, y_train = _decode(train, class_names, (height, width), invert)
    x_test, y_test = _decode(test, class_names, (height, width), invert)
    return DigitData(
        name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=class_names,
        checksum=content_digest(x_train, y_train, x_test, y_test, np.asarray(class_names)),
        source=str(root_dir), extra={"path": str(root_dir), "layout": "train/test" if test_dir.is_dir() else "split"},
    )


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: "2" < "9" < "10", "img2" < "img10"."""
    return tuple((0, int(part), part) if part.isdigit() else (1, part.casefold(), part)
                 for part in re.split(r"(\d+)", name))


def read_image(path: Path, size: tuple[int, int], invert: bool = False) -> np.ndarray:
    """One image file as uint8 ``(height, width)`` grey; ``DataError`` naming the file if it can't be."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            gray = _to_gray(im, path)
            if gray.size != (size[1], size[0]):
                gray = gray.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(gray, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"Cannot read {path} as an image ({str(exc).rstrip('.') or type(exc).__name__}).") from None
    return 255 - pixels if invert else pixels


def _to_gray(im, path: Path):
    """An 8-bit grey ('L') copy of ``im``: alpha over white, 16-bit scaled down, colour to luma."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs: scale 0..65535 to 0..255
        values = np.asarray(im, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(values / 257), 0, 255).astype(np.uint8))
    if im.mode in ("LA", "RGBA", "PA") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("L")
    if im.mode in ("1", "L", "P", "RGB", "CMYK", "YCbCr"):
        return im.convert("L")
    raise DataError(f"{path} has pixel mode {im.mode}, which ocrexp cannot turn into 8-bit grey; "
                    "save it as an ordinary greyscale or RGB PNG/JPEG.")


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    dims = [image_size] if isinstance(image_size, int) else list(image_size)
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ConfigError(f"dataset.source.image_size={image_size!r} is not allowed: use a positive size "
                          "such as 28 or [height, width].")
    return dims[0], dims[1]


def _scan(folder: Path) -> dict[str, list[Path]]:
    """``{label: sorted image files}`` for the label folders directly under ``folder``."""
    labels: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            labels[entry.name] = _images_in(entry)
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(f"{entry} is not inside a label folder; put each image in {folder}/<label>/.")
    if not labels:
        raise DataError(f"{folder} holds no label folders; lay your images out as {LAYOUT}.")
    return labels


def _images_in(label_dir: Path) -> list[Path]:
    files = [p for p in label_dir.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    if not files:
        raise DataError(f"Label folder {label_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images; add some or remove it.")
    return sorted(files, key=lambda p: natural_key(p.name))


def _split(files: dict[str, list[Path]], class_names: list[str], test_fraction: float, seed: int,
           root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Hold out ``test_fraction`` of each class (seeded; every class keeps at least one training image)."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    for label in class_names:
        paths = files[label]
        order = rng.permutation(len(paths))
        n_test = min(int(round(len(paths) * test_fraction)), len(paths) - 1)
        test[label] = [paths[i] for i in sorted(order[:n_test])]
        train[label] = [paths[i] for i in sorted(order[n_test:])]
    if not any(test.values()):
        raise DataError(f"{root} has too few images per label to hold out test_fraction={test_fraction}; "
                        "add images, raise the fraction, or give it train/ and test/ folders.")
    return train, {label: paths for label, paths in test.items() if paths}


def _decode(files: dict[str, list[Path]], class_names: list[str], size: tuple[int, int],
            invert: bool) -> tuple[np.ndarray, np.ndarray]:
    index = {label: k for k, label in enumerate(class_names)}
    paths = [(p, index[label]) for label in sorted(files, key=natural_key) for p in files[label]]
    x = np.empty((len(paths), size[0], size[1], 1), dtype=np.uint8)
    for i, (path, _) in enumerate(paths):
        x[i, ..., 0] = read_image(path, size, invert)
    return x, np.array([k for _, k in paths], dtype=np.int64)
