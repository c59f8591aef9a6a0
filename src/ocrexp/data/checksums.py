"""File hashes, checksum manifests and atomic writes for dataset caches.

Every data source that converts a download into a local cache uses these: check a download's
sha256 before opening it, write the converted arrays atomically (a reader never sees a half-written
file, and parallel jobs converting at once do not corrupt each other), and record where the cache
came from in a small JSON manifest beside it (``mnist.npz`` → ``mnist.manifest.json``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ocrexp.errors import DataError

_CHUNK = 1 << 20
# A fixed timestamp makes the same arrays always produce the same file bytes (and sha256).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of an in-memory blob (e.g. one member read from an archive)."""
    return hashlib.sha256(data).hexdigest()


def check_sha256(actual: str, expected: str, what: str) -> None:
    """Raise ``DataError`` unless ``actual == expected``; ``what`` names the file for the user."""
    if actual != expected:
        raise DataError(f"{what} has sha256 {actual}, expected {expected}: it is corrupt or not the file we pinned")


def manifest_path(data_path: str | Path) -> Path:
    """The manifest that describes ``data_path``: ``<dir>/<stem>.manifest.json``."""
    p = Path(data_path)
    return p.with_name(f"{p.stem}.manifest.json")


def read_manifest(data_path: str | Path) -> dict | None:
    """The manifest of ``data_path`` as a dict, or None when it is missing or unreadable."""
    try:
        manifest = json.loads(manifest_path(data_path).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(data_path: str | Path, **fields: object) -> Path:
    """Atomically write the manifest of ``data_path``: its file sha256 and size plus ``fields``."""
    p = Path(data_path)
    manifest = {
        "file": p.name,
        "file_sha256": sha256_file(p),
        "size": p.stat().st_size,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
    }
    out = manifest_path(p)
    atomic_write_bytes(out, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return out


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    _atomic_write(Path(path), lambda f: f.write(data))


def save_npz_atomic(path: str | Path, arrays: Mapping[str, np.ndarray], *, compress: bool = False) -> str:
    """Save ``arrays`` as an ``.npz`` (readable by ``np.load``) atomically; return the file's sha256.

    The bytes depend only on the arrays (fixed zip timestamps, no pickled objects), so two
    processes converting the same data write identical files.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED

    def write(f: io.BufferedWriter) -> None:
        with zipfile.ZipFile(f, "w", compression=method, allowZip64=True) as zf:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
                info.compress_type = method
                info.external_attr = 0o644 << 16
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    _atomic_write(Path(path), write)
    return sha256_file(path)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache must be readable by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
