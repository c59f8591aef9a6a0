"""IDX files (LeCun's format for MNIST and its look-alikes): one strict parser, and the ``idx`` dataset.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values, big-endian, in C order. ``parse`` checks
every part of that against the file's length before it builds an array, so a truncated, padded or
foreign file is reported in one sentence instead of becoming a wrongly shaped dataset.

``load`` turns any four IDX files (train/test images and labels, gzip-compressed or not) into a
``DigitData``: e.g. the original MNIST files a user already has::

    ocrexp-train dataset=idx dataset.source.root=/path/to/mnist
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ocrexp.data.base import DigitData, content_digest
from ocrexp.errors import DataError

# type code -> big-endian numpy dtype (the IDX specification's six types)
DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def parse(blob: bytes, what: str) -> np.ndarray:
    """The array stored in the (uncompressed) IDX bytes ``blob``; ``what`` names it in errors."""
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise DataError(f"{what} is not an IDX file: it does not start with two zero bytes.")
    code, ndim = blob[2], blob[3]
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise DataError(f"{what} has IDX type code 0x{code:02X}; the format defines only {known}.")
    if ndim == 0:
        raise DataError(f"{what} declares zero dimensions; an IDX file needs at least one.")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{what} is truncated inside its header ({len(blob)} bytes for {ndim} dimensions).")
    dims = struct.unpack(f">{ndim}I", blob[4:header])
    dtype = np.dtype(DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(blob) - header != expected:
        shape = "x".join(map(str, dims))
        raise DataError(f"{what} declares {shape} values of {dtype.itemsize} byte(s) ({expected:,} data bytes) "
                        f"but holds {len(blob) - header:,} data bytes: it is truncated or padded.")
    return np.frombuffer(blob, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """The IDX bytes of ``path``, gunzipped when the file is gzip (recognised by content, not name).

    ``max_bytes`` bounds what is decompressed, for files whose size is known in advance.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not compressed:
                return f.read()
            with gzip.GzipFile(fileobj=f) as gz:
                data = gz.read(-1 if max_bytes is None else max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Cannot read {path} ({_reason(exc)}).") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(f"{path} decompresses to more than the {max_bytes:,} bytes expected; it is not the file we pinned.")
    return data


def read(path: str | Path) -> np.ndarray:
    """The array in the IDX file ``path`` (gzip or not)."""
    return parse(read_bytes(path), str(path))


def load(root: str | None = None, train_images: str = FILE_NAMES["train_images"] + ".gz",
         train_labels: str = FILE_NAMES["train_labels"] + ".gz", test_images: str = FILE_NAMES["test_images"] + ".gz",
         test_labels: str = FILE_NAMES["test_labels"] + ".gz", class_names: Sequence[str] | None = None,
         name: str = "idx") -> DigitData:
    """A dataset from four IDX files: uint8 images ``(N, rows, cols[, channels])`` and integer labels.

    Relative file names are taken inside ``root``; a name that is missing is also tried with ``.gz``
    added or removed. Class ``k`` is called ``class_names[k]`` (default: ``"0"``, ``"1"``, ...).
    """
    files = {"train_images": train_images, "train_labels": train_labels,
             "test_images": test_images, "test_labels": test_labels}
    located = {key: _locate(root, value, key) for key, value in files.items()}
    x_train, x_test = (_images(located[k]) for k in ("train_images", "test_images"))
    y_train, y_test = (_labels(located[k]) for k in ("train_labels", "test_labels"))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{located[split + '_images']} holds {len(x):,} images but "
                            f"{located[split + '_labels']} holds {len(y):,} labels; they must match one to one.")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{located['test_images']} holds {_shape(x_test)} images but {located['train_images']} "
                        f"holds {_shape(x_train)}; train and test images must have the same size.")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    names = _class_names(class_names, n_classes, located)
    return DigitData(
        name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=names,
        checksum=content_digest(x_train, y_train, x_test, y_test),
        source=str(Path(located["train_images"]).parent), extra={k: str(v) for k, v in located.items()},
    )


def _locate(root: str | None, name: str, key: str) -> Path:
    """``name`` (inside ``root`` when relative), or the same name with ``.gz`` added or removed."""
    path = Path(name).expanduser()
    if root is not None and not path.is_absolute():
        path = Path(root).expanduser() / path
    alternative = path.with_suffix("") if path.suffix == ".gz" else path.with_name(path.name + ".gz")
    for candidate in (path, alternative):
        if candidate.is_file():
            return candidate
    if root is not None and not Path(root).expanduser().is_dir():
        raise DataError(f"IDX folder {root} does not exist; set dataset.source.root to the folder that holds your IDX files.")
    raise DataError(f"{path} (the {key.replace('_', ' ')} file) does not exist, with or without .gz; "
                    f"set dataset.source.{key} to the right file.")


def _images(path: Path) -> np.ndarray:
    x = read(path)
    if x.ndim not in (3, 4):
        raise DataError(f"{path} holds a {x.ndim}-dimensional array; an image file must be (count, rows, cols) "
                        "or (count, rows, cols, channels).")
    if x.dtype != np.uint8:
        raise DataError(f"{path} holds {x.dtype} values; images must be unsigned bytes (IDX type 0x08).")
    if len(x) == 0:
        raise DataError(f"{path} holds no images.")
    return x if x.ndim == 4 else x[..., None]


def _labels(path: Path) -> np.ndarray:
    y = read(path)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        shape = "x".join(map(str, y.shape))
        raise DataError(f"{path} holds a {shape} array of {y.dtype}; a label file must be one integer per image (IDX1).")
    if len(y) and y.min() < 0:
        raise DataError(f"{path} holds the negative label {int(y.min())}; labels must be class indices 0, 1, 2, ...")
    return y.astype(np.int64)


def _class_names(given: Sequence[str] | None, n_classes: int, located: dict[str, Path]) -> list[str]:
    if given is None:
        return [str(k) for k in range(n_classes)]
    names = [str(n) for n in given]
    if len(names) < n_classes:
        raise DataError(f"dataset.source.class_names lists {len(names)} names but the labels in "
                        f"{Path(located['train_labels']).parent} go up to {n_classes - 1}.")
    return names


def _shape(x: np.ndarray) -> str:
    """An image array's per-image shape, e.g. ``28x28x1``."""
    return "x".join(map(str, x.shape[1:]))


def _reason(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).rstrip(".")
