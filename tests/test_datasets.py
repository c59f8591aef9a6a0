"""The extra dataset sources: Fashion-MNIST, UCI digits, image folders and IDX files.

Fashion-MNIST is read from Debian's package (``apt-get install dataset-fashion-mnist``); folder and
IDX data are written by the tests (the IDX files by a writer independent of the parser, from real
UCI digits). Each source also trains once under ``debug=fast`` in this process, and the
Fashion-MNIST run checks that its class names reach MLflow.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrexp import cli
from ocrexp.data import digits, fashion_mnist, folder, idx
from ocrexp.data.checksums import read_manifest
from ocrexp.errors import ConfigError, DataError
from tests.system_packages import require_fashion_mnist

DEBIAN = Path(fashion_mnist.DEBIAN_DIR)
needs_debian = pytest.mark.usefixtures("debian_fashion_files")
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def assert_one_sentence(exc: pytest.ExceptionInfo, *must_name: object) -> str:
    """The error is one line, one sentence, and names each of ``must_name``."""
    msg = str(exc.value)
    assert "\n" not in msg and ". " not in msg.rstrip("."), msg
    for name in must_name:
        assert str(name) in msg, (name, msg)
    return msg


pytestmark = pytest.mark.usefixtures("keras_home")  # conftest: an empty KERAS_HOME per test


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.fixture
def debian_fashion_files() -> None:
    require_fashion_mnist()


@pytest.fixture(scope="session")
def fashion_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fashion_cache")


@pytest.fixture(scope="session")
def fashion(fashion_cache, tmp_path_factory):
    """Fashion-MNIST converted from Debian's files into a fresh cache (no Keras cache around)."""
    require_fashion_mnist()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("no_keras")))
        return fashion_mnist.load(fashion_cache)


def fashion_files_linked(dest: Path, **replace: bytes) -> Path:
    """``dest`` with Debian's four files symlinked, except ``replace[name]`` written as raw bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    for spec in fashion_mnist.FILES.values():
        if spec.name in replace:
            (dest / spec.name).write_bytes(replace[spec.name])
        else:
            (dest / f"{spec.name}.gz").symlink_to(DEBIAN / f"{spec.name}.gz")
    return dest


def debian_raw(name: str) -> bytes:
    return gzip.decompress((DEBIAN / f"{name}.gz").read_bytes())


@needs_debian
def test_fashion_mnist_from_debian_files_matches_the_published_facts(fashion, fashion_cache):
    assert fashion.x_train.shape == (60_000, 28, 28, 1) and fashion.x_test.shape == (10_000, 28, 28, 1)
    assert fashion.x_train.dtype == np.uint8 and fashion.y_train.dtype == np.int64
    assert fashion.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert fashion.y_test[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.checksum == fashion_mnist.CONTENT_SHA256 and str(DEBIAN) in fashion.source
    manifest = read_manifest(fashion_cache / fashion_mnist.CACHE_FILE)
    assert manifest["content_sha256"] == fashion.checksum and manifest["origin"] == str(DEBIAN)


@needs_debian
def test_fashion_mnist_reloads_from_its_cache_without_any_idx_files(fashion, fashion_cache, tmp_path):
    again = fashion_mnist.load(fashion_cache, idx_dirs=[tmp_path / "nothing here"])
    assert again.checksum == fashion.checksum and np.array_equal(again.x_test, fashion.x_test)
    assert again.extra["origin"] == str(DEBIAN)


@needs_debian
def test_fashion_mnist_tampered_cache_is_rebuilt_from_the_idx_files(fashion, tmp_path, capsys):
    cache = tmp_path / fashion_mnist.CACHE_FILE
    np.savez(cache, x_train=fashion.x_test[:5, ..., 0], y_train=fashion.y_test[:5],
             x_test=fashion.x_test[:5, ..., 0], y_test=fashion.y_test[:5])
    rebuilt = fashion_mnist.load(tmp_path)
    assert rebuilt.checksum == fashion_mnist.CONTENT_SHA256 and len(rebuilt.x_train) == 60_000
    assert "failed its checksum" in capsys.readouterr().err


@needs_debian
def test_fashion_mnist_from_keras_cache_checks_decompressed_copies(fashion, keras_home, tmp_path):
    # Keras' folder, with the label files gunzipped (so they are checked by their IDX sha256)
    labels = {n: debian_raw(n) for n in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")}
    fashion_files_linked(keras_home / "datasets" / "fashion-mnist", **labels)
    data = fashion_mnist.load(tmp_path / "cache", idx_dirs=[])
    assert data.checksum == fashion.checksum and "fashion-mnist" in data.extra["origin"]


@needs_debian
def test_fashion_mnist_corrupt_file_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    raw = bytearray(debian_raw("t10k-labels-idx1-ubyte"))
    raw[100] = (raw[100] + 1) % 10  # one label changed: still a perfectly valid IDX file
    bad_dir = fashion_files_linked(tmp_path / "files", **{"t10k-labels-idx1-ubyte": bytes(raw)})
    parsed: list[str] = []
    real_parse = idx.parse
    monkeypatch.setattr(idx, "parse", lambda blob, what: parsed.append(what) or real_parse(blob, what))
    with pytest.raises(DataError) as exc:
        fashion_mnist.load(tmp_path / "cache", idx_dirs=[bad_dir])
    bad_file = bad_dir / "t10k-labels-idx1-ubyte"
    assert_one_sentence(exc, bad_file, "sha256", fashion_mnist.FILES["y_test"].idx_sha256)
    assert str(bad_file) not in parsed and not (tmp_path / "cache" / fashion_mnist.CACHE_FILE).exists()


def test_fashion_mnist_missing_everywhere_says_how_to_install_it(tmp_path, keras_home):
    with pytest.raises(DataError) as exc:
        fashion_mnist.load(tmp_path / "cache", idx_dirs=[tmp_path / "nowhere"])
    assert_one_sentence(exc, "apt-get install dataset-fashion-mnist", tmp_path / "nowhere",
                        keras_home / "datasets" / "fashion-mnist", "train-images-idx3-ubyte.gz")


def test_fashion_mnist_incomplete_file_set_names_the_missing_files(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        fashion_mnist.load(tmp_path / "cache", idx_dirs=[tmp_path])
    assert_one_sentence(exc, tmp_path, "t10k-labels-idx1-ubyte")


@needs_debian
def test_cli_fetch_fashion_mnist_reports_the_verified_copy(fashion, fashion_cache, capsys):
    assert cli.main(["data", "fetch", "fashion_mnist", "--data-dir", str(fashion_cache)]) == 0
    out = capsys.readouterr().out
    assert "60,000 train + 10,000 test images (28x28x1, 10 classes)" in out and fashion.checksum in out


# ---------------------------------------------------------------- UCI digits


@pytest.fixture(scope="session")
def uci():
    return digits.load()


def test_digits_are_mnist_framed_uint8_with_a_stratified_split(uci):
    assert uci.x_train.shape == (1347, 28, 28, 1) and uci.x_test.shape == (450, 28, 28, 1)
    assert uci.x_train.dtype == np.uint8 and uci.x_train.max() == 255 and uci.class_names == list("0123456789")
    frame = np.ones((28, 28), bool)
    frame[4:24, 4:24] = False
    assert not uci.x_train[:, frame].any() and not uci.x_test[:, frame].any()  # the 4-pixel MNIST margin
    assert set(np.bincount(uci.y_test)) <= {43, 44, 45, 46}  # 25% of each class (174..183 images)


def test_digits_split_is_fixed_by_split_seed_not_by_chance(uci):
    assert digits.load().checksum == uci.checksum
    other = digits.load(split_seed=1)
    assert other.checksum != uci.checksum and other.x_test.shape == uci.x_test.shape
    train_idx, test_idx = digits._stratified_split(np.repeat(np.arange(10), 20), 0.25, 0)
    assert len(np.intersect1d(train_idx, test_idx)) == 0 and len(train_idx) + len(test_idx) == 200


def test_digits_upsampling_is_bilinear_and_keeps_the_8x8_content():
    from sklearn.datasets import load_digits

    source = load_digits().images[:50]
    big = digits.upsample(source, inner=24, margin=2)[:, 2:26, 2:26, 0].astype(int)
    # 8 -> 24 with pixel centres aligned: output pixel 3k+1 sits exactly on input pixel k ...
    assert np.array_equal(big[:, 1::3, 1::3], np.rint(source * 255 / 16))
    # ... and pixel 3k+2 a third of the way to pixel k+1 (linear between neighbours)
    between = (2 * source[:, :, :-1] + source[:, :, 1:]) / 3
    assert np.abs(big[:, 1::3, 2:-3:3] - between * 255 / 16).max() <= 0.51
    flat = digits.upsample(np.full((1, 8, 8), 16), inner=20, margin=4)[0, ..., 0]
    assert (flat[4:24, 4:24] == 255).all()


def test_digits_bad_options_are_config_errors():
    with pytest.raises(ConfigError) as exc:
        digits.load(image_size=28, margin=14)
    assert_one_sentence(exc, "dataset.source.margin=14")


# ---------------------------------------------------------------- image folders


def save(path: Path, pixels: np.ndarray, mode: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path, **kw)
    return path


def ink(h: int, w: int, value: int = 0, background: int = 255) -> np.ndarray:
    """A light page with a dark square in the top-left quarter."""
    page = np.full((h, w), background, np.uint8)
    page[: h // 2, : w // 2] = value
    return page


@pytest.fixture(scope="session")
def image_root(tmp_path_factory) -> Path:
    """root/<label>/ with labels 2, 9, 10 and every kind of PNG/JPEG a user may have."""
    root = tmp_path_factory.mktemp("images")
    for i in range(5):
        save(root / "2" / f"gray_{i}.png", ink(40, 30))
        save(root / "9" / f"rgb_{i}.jpg", ink(64, 48), "RGB", quality=95)
        rgba = np.zeros((32, 24, 4), np.uint8)
        rgba[:16, :12] = (0, 0, 0, 255)  # opaque black ink, transparent elsewhere
        save(root / "10" / f"alpha_{i}.png", rgba)
    save(root / "2" / "sixteen_bit.png", ink(16, 12).astype(np.uint16) * 257)  # Pillow: mode I;16
    save(root / "9" / "palette.png", ink(20, 15), "P")
    (root / "10" / "notes.txt").write_text("not an image, ignored")
    (root / "10" / ".hidden.png").write_bytes(b"ignored")
    return root


@pytest.fixture(scope="session")
def from_folder(image_root):
    return folder.load(str(image_root), image_size=[16, 12], test_fraction=0.4, invert=True)


def test_folder_class_names_are_label_folders_in_numeric_order(from_folder):
    assert from_folder.class_names == ["2", "9", "10"]
    assert from_folder.x_train.shape[1:] == (16, 12, 1) and from_folder.x_train.dtype == np.uint8
    # 6, 6 and 5 images: 40% of each held out, rounded
    assert np.bincount(from_folder.y_test).tolist() == [2, 2, 2]
    assert np.bincount(from_folder.y_train).tolist() == [4, 4, 3]


def test_folder_images_become_gray_at_the_configured_size_whatever_their_kind(from_folder):
    images = np.concatenate([from_folder.x_train, from_folder.x_test])[..., 0].astype(int)
    # every source image is dark ink top-left on a light page (alpha over white), inverted like MNIST
    assert (images[:, :7, :5] > 230).all() and (images[:, 9:, 7:] < 25).all()


def test_folder_split_is_seeded(image_root, from_folder):
    same = folder.load(str(image_root), image_size=[16, 12], test_fraction=0.4, invert=True)
    assert same.checksum == from_folder.checksum
    other = folder.load(str(image_root), image_size=[16, 12], test_fraction=0.4, invert=True, split_seed=5)
    assert other.checksum != from_folder.checksum


def test_folder_train_and_test_subfolders_are_used_as_given(tmp_path):
    for label, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            save(tmp_path / "train" / label / f"{i}.png", ink(28, 28))
    save(tmp_path / "test" / "dog" / "0.png", ink(28, 28))
    data = folder.load(str(tmp_path))
    assert data.class_names == ["cat", "dog"] and len(data.x_train) == 5
    assert data.y_test.tolist() == [1] and data.extra["layout"] == "train/test"


def _five_good(root: Path) -> None:
    for i in range(5):
        save(root / "1" / f"{i}.png", ink(8, 8))


def _empty_label(root: Path) -> Path:
    _five_good(root)
    (root / "2").mkdir()
    return root / "2"


def _unreadable(root: Path) -> Path:
    _five_good(root)
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    return root / "1" / "broken.png"


def _not_an_image(root: Path) -> Path:
    _five_good(root)
    (root / "1" / "scan.jpg").write_text("a text file with an image suffix")
    return root / "1" / "scan.jpg"


def _no_label_folders(root: Path) -> Path:
    (root / "readme.txt").write_text("nothing")
    return root


def _loose_image(root: Path) -> Path:
    _five_good(root)
    return save(root / "stray.png", ink(8, 8))


def _unknown_test_label(root: Path) -> Path:
    save(root / "train" / "1" / "a.png", ink(8, 8))
    return save(root / "test" / "7" / "a.png", ink(8, 8)).parent


def _test_without_train(root: Path) -> Path:
    save(root / "test" / "1" / "a.png", ink(8, 8))
    return root


def _too_few_to_split(root: Path) -> Path:
    save(root / "1" / "a.png", ink(8, 8))
    return root


def _missing_root(root: Path) -> Path:
    return root / "does-not-exist"


@pytest.mark.parametrize("make_broken", [_empty_label, _unreadable, _not_an_image, _no_label_folders, _loose_image,
                                         _unknown_test_label, _test_without_train, _too_few_to_split, _missing_root])
def test_folder_problems_are_one_sentence_naming_the_file_or_folder(tmp_path, make_broken):
    named = make_broken(tmp_path)
    root = tmp_path / "does-not-exist" if make_broken is _missing_root else tmp_path
    with pytest.raises(DataError) as exc:
        folder.load(str(root))
    assert_one_sentence(exc, named)


def test_folder_image_size_must_be_positive(image_root):
    with pytest.raises(ConfigError) as exc:
        folder.load(str(image_root), image_size=[28, 0])
    assert_one_sentence(exc, "dataset.source.image_size")


# ---------------------------------------------------------------- IDX files


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, compress: bool = False) -> Path:
    """An IDX file written straight from the format's description (not with the code under test)."""
    array = np.asarray(array)
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += array.astype(IDX_TYPES[code]).tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)
    return path


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory, uci) -> Path:
    """A slice of the UCI digits as IDX: images gzipped, labels plain."""
    root = tmp_path_factory.mktemp("idx")
    write_idx(root / "train-images-idx3-ubyte.gz", uci.x_train[:600, ..., 0], compress=True)
    write_idx(root / "train-labels-idx1-ubyte", uci.y_train[:600])
    write_idx(root / "t10k-images-idx3-ubyte.gz", uci.x_test[:200, ..., 0], compress=True)
    write_idx(root / "t10k-labels-idx1-ubyte", uci.y_test[:200])
    return root


def test_idx_set_loads_gz_or_plain_and_keeps_every_value(idx_root, uci):
    data = idx.load(str(idx_root))  # label names in the config say .gz; the plain files are found
    assert np.array_equal(data.x_train, uci.x_train[:600]) and np.array_equal(data.y_test, uci.y_test[:200])
    assert data.class_names == [str(k) for k in range(10)] and data.input_shape == (28, 28, 1)
    named = idx.load(str(idx_root), class_names=list("abcdefghij"))
    assert named.class_names[3] == "d" and named.checksum == data.checksum


@pytest.mark.parametrize("code", sorted(IDX_TYPES))
def test_idx_parser_reads_every_type_the_format_defines(tmp_path, code):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(IDX_TYPES[code])
    assert np.array_equal(idx.read(write_idx(tmp_path / "f", array, code)), array)


def _copy_set(src: Path, dst: Path, **replace: np.ndarray | bytes) -> Path:
    shutil.copytree(src, dst)
    for name, content in replace.items():
        for old in dst.glob(f"{name}*"):
            old.unlink()
        if isinstance(content, bytes):
            (dst / name).write_bytes(content)
        else:
            write_idx(dst / name, content, 0x0B if content.dtype == np.int16 else 0x08)
    return dst / next(iter(replace))


IDX_PROBLEMS = {
    "bad magic": ("t10k-labels-idx1-ubyte", b"\x08\x03\x00\x00junk", "zero bytes"),
    "unknown type": ("t10k-labels-idx1-ubyte", b"\x00\x00\x07\x01\x00\x00\x00\x01x", "0x07"),
    "truncated": ("t10k-labels-idx1-ubyte", b"\x00\x00\x08\x01\x00\x00\x00\xc8" + bytes(150), "truncated"),
    "padded": ("t10k-labels-idx1-ubyte", b"\x00\x00\x08\x01\x00\x00\x00\x02" + bytes(3), "padded"),
    "count mismatch": ("t10k-labels-idx1-ubyte", np.zeros(199, np.uint8), "199 labels"),
    "wrong image kind": ("t10k-images-idx3-ubyte", np.zeros((200, 28, 28), np.int16), "unsigned bytes"),
    "labels not 1-D": ("t10k-labels-idx1-ubyte", np.zeros((200, 2), np.uint8), "one integer per image"),
    "image size differs": ("t10k-images-idx3-ubyte", np.zeros((200, 14, 14), np.uint8), "same size"),
    "not gzip after all": ("t10k-images-idx3-ubyte.gz", b"\x1f\x8b but not gzip", "Cannot read"),
}


@pytest.mark.parametrize("problem", sorted(IDX_PROBLEMS))
def test_idx_problems_are_one_sentence_naming_the_file(idx_root, tmp_path, problem):
    name, content, says = IDX_PROBLEMS[problem]
    bad = _copy_set(idx_root, tmp_path / "set", **{name: content})
    with pytest.raises(DataError) as exc:
        idx.load(str(tmp_path / "set"))
    assert_one_sentence(exc, bad, says)


def test_idx_missing_files_and_short_class_names_are_named(idx_root, tmp_path):
    with pytest.raises(DataError) as exc:
        idx.load(str(tmp_path / "nowhere"))
    assert_one_sentence(exc, tmp_path / "nowhere", "dataset.source.root")
    with pytest.raises(DataError) as exc:
        idx.load(str(idx_root), test_labels="labels.bin")
    assert_one_sentence(exc, idx_root / "labels.bin", "dataset.source.test_labels")
    with pytest.raises(DataError) as exc:
        idx.load(str(idx_root), class_names=["zero", "one"])
    assert_one_sentence(exc, "2 names", "up to 9")


# ---------------------------------------------------------------- training on each source


def fast_config(*overrides: str):
    """The real config under ``debug=fast``, without tracking unless ``overrides`` ask for it."""
    from ocrexp.config import compose

    quiet = [] if any(o.startswith("tracking=") for o in overrides) else ["tracking=none"]
    return compose("debug=fast", *quiet, *overrides)


@pytest.mark.slow
# The tutorial CNN has 225,034 parameters on 28x28x1 with 10 classes and 35,715 on 16x12x1 with 3:
# the input shape and class count reach the model from the data.
@pytest.mark.parametrize("dataset, source, n_params, n_test", [
    ("digits", {}, 225_034, 450),
    ("folder", {"image_size": "[16,12]", "test_fraction": 0.4, "invert": True}, 35_715, 6),
    ("idx", {}, 225_034, 200),
])
def test_debug_fast_training_runs_on_each_dataset(dataset, source, n_params, n_test, image_root, idx_root):
    from ocrexp.train import run_experiment

    roots = {"folder": image_root, "idx": idx_root}
    overrides = [f"dataset={dataset}", *(f"dataset.source.{k}={v}" for k, v in source.items())]
    if dataset in roots:
        overrides.append(f"dataset.source.root={roots[dataset]}")
    result = run_experiment(fast_config(*overrides))
    assert result.n_params == n_params and len(result.report["y_true"]) == n_test
    assert np.isfinite(result.report["test_loss"]) and len(result.history["val_accuracy"]) == 1


@pytest.mark.slow
@needs_debian
def test_fashion_mnist_run_records_its_class_names_in_mlflow(tmp_path, monkeypatch):
    import mlflow

    from ocrexp.train import run_experiment

    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = fast_config("dataset=fashion_mnist", "tracking=mlflow", f"tracking.uri={uri}", "tracking.log_model=false")
    result = run_experiment(cfg)
    client = mlflow.MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["ocrexp.dataset"] == "fashion_mnist"
    assert run.data.tags["ocrexp.dataset.checksum"] == fashion_mnist.CONTENT_SHA256
    logged = json.loads(Path(client.download_artifacts(result.run_id, "dataset.json", str(tmp_path))).read_text())
    assert logged["class_names"] == fashion_mnist.CLASS_NAMES and logged["n_test"] == 1000
    plots = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots and run.info.artifact_uri.startswith(tmp_path.as_uri())
