"""Fashion-MNIST (Zalando): 60,000 training and 10,000 test images of clothing, 28×28 grey, 10 classes.

A drop-in for MNIST with the same format and sizes, much harder to classify. Nothing is downloaded:
``load`` looks, in order, in

1. our cache ``<data dir>/fashion_mnist.npz`` (Keras' array layout) with its manifest;
2. folders holding the four IDX files, by default Debian's ``/usr/share/datasets/fashion-mnist/``
   (``apt-get install dataset-fashion-mnist``);
3. Keras' cache ``$KERAS_HOME/datasets/fashion-mnist/`` (``~/.keras/...``), where
   ``keras.datasets.fashion_mnist.load_data()`` leaves the same four files.

Each IDX file is checked before it is parsed: Debian's ``.gz`` against its pinned sha256, any other
copy (Keras' download, a gunzipped file) by the sha256 of its decompressed bytes, decompressing no
more than the expected size. The parsed arrays must hash to ``CONTENT_SHA256``, and the result is
cached atomically so later runs read one ``.npz``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ocrexp.data import idx
from ocrexp.data.base import DigitData
from ocrexp.data.checksums import check_sha256, sha256_bytes, sha256_file
from ocrexp.data.mnist import keras_cache_path
from ocrexp.data.pinned import KEYS, PinnedDataset
from ocrexp.errors import DataError

NAME = "fashion_mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CACHE_FILE = "fashion_mnist.npz"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


class IdxFile(NamedTuple):
    """One of the four files: its name, Debian's ``.gz`` sha256, and its decompressed sha256 and size."""

    name: str
    debian_gz_sha256: str
    idx_sha256: str
    idx_size: int


FILES = {
    "x_train": IdxFile("train-images-idx3-ubyte",
                       "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                       "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
    "y_train": IdxFile("train-labels-idx1-ubyte",
                       "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                       "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
    "x_test": IdxFile("t10k-images-idx3-ubyte",
                      "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                      "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
    "y_test": IdxFile("t10k-labels-idx1-ubyte",
                      "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                      "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
}
# content_digest(x_train, y_train, x_test, y_test) of (N, 28, 28, 1) uint8 images and int64 labels,
# from Debian's files (first train labels 9 0 0 3 0 2 7 2 5 5; 6,000 per class in train, 1,000 in test).
CONTENT_SHA256 = "e82adc0c97c6273e3db09f058ebe2cde03fe9e1df16f9d9054d558032e2a0f39"
PINNED = PinnedDataset(NAME, "Fashion-MNIST", CLASS_NAMES, CONTENT_SHA256, CACHE_FILE)

Progress = Callable[[str], None]


def load(cache_dir: str | Path | None = None, idx_dirs: Sequence[str | Path] = (DEBIAN_DIR,)) -> DigitData:
    """Fashion-MNIST as uint8 ``(N, 28, 28, 1)`` images and int64 labels, from the first valid source.

    ``cache_dir`` defaults to ``paths.data_dir()``; ``idx_dirs`` are folders holding the four IDX
    files (gzip or not), searched after the cache and before Keras' cache.
    """
    return _find(PINNED.cache_path(cache_dir), idx_dirs, use_cache=True, report=_notice, quiet_hit=True)


def fetch(cache_dir: str | Path | None = None, *, force: bool = False, progress: Progress | None = None,
          idx_dirs: Sequence[str | Path] = (DEBIAN_DIR,)) -> DigitData:
    """Verify Fashion-MNIST from a local source and cache it (``ocrexp data fetch fashion_mnist``).

    Without ``force`` a valid cache is reused; with it, the cache is rebuilt from the IDX files.
    """
    return _find(PINNED.cache_path(cache_dir), idx_dirs, use_cache=not force, report=progress or (lambda _m: None))


def keras_dir() -> Path:
    """Where ``keras.datasets.fashion_mnist.load_data()`` keeps its four files."""
    return keras_cache_path().parent / "fashion-mnist"


def _find(cache: Path, idx_dirs: Sequence[str | Path], *, use_cache: bool, report: Progress,
          quiet_hit: bool = False) -> DigitData:
    if use_cache:
        data = PINNED.from_cache(cache)
        if data is not None:
            if not quiet_hit:
                report(f"found a valid copy in {cache}")
            return data
    folders = [Path(d).expanduser() for d in idx_dirs] + [keras_dir()]
    for folder in folders:
        files = _idx_files(folder)
        if files is not None:
            report(f"verifying and converting the IDX files in {folder}")
            return _write_cache(cache, _read_verified(files), str(folder), report)
    searched = ", ".join(str(f) for f in folders[:-1])
    raise DataError(
        f"Fashion-MNIST is not in {cache.parent}, {searched} or Keras' cache {keras_dir()}; install it with "
        f"`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or copy the four IDX files "
        f"({', '.join(f.name + '.gz' for f in FILES.values())}) from "
        f"https://github.com/zalandoresearch/fashion-mnist into {keras_dir()}."
    )


def _idx_files(folder: Path) -> dict[str, Path] | None:
    """The four files in ``folder`` (``.gz`` or not), None when it holds none of them."""
    found = {}
    for key, spec in FILES.items():
        for candidate in (folder / f"{spec.name}.gz", folder / spec.name):
            if candidate.is_file():
                found[key] = candidate
                break
    if not found:
        return None
    missing = [spec.name for key, spec in FILES.items() if key not in found]
    if missing:
        raise DataError(f"{folder} holds some Fashion-MNIST files but not {', '.join(missing)} (.gz or not); "
                        "complete or remove the set.")
    return found


def _read_verified(files: dict[str, Path]) -> tuple[np.ndarray, ...]:
    """The four arrays in Keras' layout, each file checked against its sha256 before it is parsed."""
    arrays = []
    for key in KEYS:
        path, spec = files[key], FILES[key]
        if sha256_file(path) == spec.debian_gz_sha256:
            blob = idx.read_bytes(path)
        else:  # not Debian's exact file (Keras' download, a gunzipped copy): check what it holds
            blob = idx.read_bytes(path, max_bytes=spec.idx_size)
            check_sha256(sha256_bytes(blob), spec.idx_sha256, f"{path} (decompressed)")
        arrays.append(idx.parse(blob, str(path)))
    return tuple(arrays)


def _write_cache(cache: Path, arrays: tuple[np.ndarray, ...], origin: str, report: Progress) -> DigitData:
    data = PINNED.verified(arrays, cache, origin)  # the file checks passed: the last line of defence
    try:
        PINNED.save(cache, arrays, data, origin)
    except OSError as exc:  # a read-only data dir costs a re-conversion next time, nothing more
        report(f"could not write the cache {cache} ({exc}); using the files directly")
        return replace(data, source=origin, extra={"path": origin, "origin": origin})
    report(f"cached in {cache}")
    return data


def _notice(message: str) -> None:
    print(f"ocrexp: fashion_mnist: {message}", file=sys.stderr, flush=True)
