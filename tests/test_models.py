"""cnn_bn, vgg16 (weights, offline failure, fine-tuning phase) and starting from an earlier model."""

from __future__ import annotations

import socket
import threading

import keras
import numpy as np
import pytest

from ocrexp import config
from ocrexp.config import compose
from ocrexp.errors import ConfigError, OcrexpError
from ocrexp.models import build_model, transfer, vgg
from tests.training import TINY, mlflow_env_kept, run, tracked

# VGG16 costs ~120x the tutorial CNN per image on a CPU: its runs use a handful of images.
VGG_TINY = (*TINY, "model=vgg16", "model.weights=null", "dataset.limit_train=160", "dataset.limit_test=64",
            "trainer.batch_size=32")


def build(*overrides: str, shape=(28, 28, 1), classes: int = 10):
    model, tags = build_model(compose(*overrides).model, shape, classes)
    return model


def test_cnn_bn_takes_its_shapes_from_the_dataset_and_normalises_every_layer():
    model = build("model=cnn_bn")
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("BatchNormalization") == 4  # every conv and the dense
    assert model.count_params() == 243_114
    gap = build("model=cnn_bn", "model.head=gap", "model.dense_units=null", "model.convs_per_block=2",
                shape=(32, 32, 3), classes=5)
    assert gap.input_shape == (None, 32, 32, 3) and gap.output_shape == (None, 5)
    assert "gap" in [layer.name for layer in gap.layers] and kinds.count("Conv2D") * 2 == sum(
        isinstance(layer, keras.layers.Conv2D) for layer in gap.layers)


def trainable_names(model) -> list[str]:
    return [layer.name for layer in transfer.leaves(model) if layer.trainable and layer.weights]


def test_vgg16_resizes_repeats_channels_and_trains_only_its_head():
    model = build("model=vgg16", "model.weights=null")
    assert model.input_shape == (None, 28, 28, 1)
    assert model.get_layer("gray_to_rgb").output.shape[1:] == (32, 32, 3)
    assert trainable_names(model) == ["dense", "probs"]
    assert len(model.trainable_weights) == 4


def test_vgg16_fine_tuning_unfreezes_from_the_named_block_on():
    model = build("model=vgg16", "model.weights=null")
    transfer.unfreeze_from(model, "block5")
    assert trainable_names(model) == ["block5_conv1", "block5_conv2", "block5_conv3", "dense", "probs"]
    with pytest.raises(ConfigError, match="block9.*block1_conv1"):
        transfer.unfreeze_from(model, "block9")


@pytest.mark.slow
def test_vgg16_with_random_weights_trains_both_phases_on_one_epoch_axis(tmp_path, monkeypatch):
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    result = run(*tracked(tmp_path, *VGG_TINY, "model.fine_tune={unfreeze_from: block5_conv1, epochs: 1, lr: 1e-5}"))
    assert len(result.history["val_loss"]) == 2 and 0.0 <= result.report["test_accuracy"] <= 1.0
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(result.run_id, "val_loss")]
    lrs = [m.value for m in client.get_metric_history(result.run_id, "lr")]
    assert steps == [1, 2] and lrs == pytest.approx([1e-3, 1e-5])
    assert client.get_run(result.run_id).data.tags["ocrexp.phases"] == "train:1-1 fine_tune:2-2"


def base_of(model):
    return next(layer for layer in model.layers if layer.name == "vgg16")


def test_vgg16_loads_a_weights_file_written_by_the_test(tmp_path):
    source = build("model=vgg16", "model.weights=null")
    path = tmp_path / "base.weights.h5"
    base_of(source).save_weights(path)
    loaded = build("model=vgg16", f"model.weights={path}")
    for a, b in zip(base_of(source).weights, base_of(loaded).weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_vgg16_loads_weights_in_the_imagenet_file_layout(tmp_path):
    """The downloadable no-top file is legacy HDF5 keyed by layer name; a file in that layout loads."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = build("model=vgg16", "model.weights=null")
    path = tmp_path / vgg.IMAGENET_FILE
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, base_of(source))
    loaded = build("model=vgg16", f"model.weights={path}")
    kernel = base_of(loaded).get_layer("block3_conv2").kernel
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(base_of(source).get_layer("block3_conv2").kernel))


def test_vgg16_weights_that_do_not_fit_fail_with_one_sentence(tmp_path):
    path = tmp_path / "other.weights.h5"
    build("model=cnn").save_weights(path)
    with pytest.raises(OcrexpError, match="could not be loaded into VGG16") as exc:
        build("model=vgg16", f"model.weights={path}")
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="model.weights"):
        config.validate(compose("model=vgg16", f"model.weights={tmp_path / 'missing.h5'}"))


@pytest.fixture
def silent_server():
    """A local port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/{vgg.IMAGENET_FILE}"
    stop.set()
    for conn in held:
        conn.close()
    server.close()


def _capture(outcome: list, call) -> None:
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test's thread
        outcome.append(exc)


def closed_port_url() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/{vgg.IMAGENET_FILE}"


@pytest.mark.parametrize("where", ["silent", "refused"])
def test_unreachable_imagenet_weights_fail_fast_with_one_sentence(where, silent_server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # nothing cached
    monkeypatch.setattr(vgg, "IMAGENET_URL", silent_server if where == "silent" else closed_port_url())
    monkeypatch.setattr(vgg, "DOWNLOAD_TIMEOUT_S", 1.0)
    # On a thread, so that a download that ignored its 1 s timeout fails the test (after 120 s, far
    # from any race with a slow machine) instead of hanging it.
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(outcome, lambda: build("model=vgg16")), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the download waited far beyond its timeout"
    (error,) = outcome
    assert isinstance(error, OcrexpError), error
    message = str(error)
    assert "\n" not in message and message.count(". ") == 0
    assert "model.weights=imagenet" in message and f"model.weights=/path/to/{vgg.IMAGENET_FILE}" in message
    assert not (tmp_path / "keras" / "models" / vgg.IMAGENET_FILE).exists()


# ------------------------------------------------------------------ init_from


# The init_from tests start from a real logged run (conftest's `trained`, one ocrexp-train): slow.
@pytest.fixture(scope="module")
def source_run(trained):
    """The session's logged debug=fast MNIST run: (project, run_id, its model)."""
    from ocrexp.models.io import load_model

    project, run_id = trained
    return project, run_id, load_model(f"runs:/{run_id}/model", project.tracking_uri)


def weights_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


@pytest.mark.slow
def test_init_from_a_logged_run_starts_from_its_weights_and_records_the_source(source_run, monkeypatch):
    project, run_id, source = source_run
    uri = f"runs:/{run_id}/model"
    model, tags = build_model(compose(f"model.init_from={uri}").model, (28, 28, 1), 10, project.tracking_uri)
    assert weights_equal(model.weights, source.weights)
    assert tags["ocrexp.init_from"] == uri and tags["ocrexp.source_run_id"] == run_id
    assert tags["ocrexp.init_from.head_replaced"] == "false" and f"#/runs/{run_id}" in tags["mlflow.note.content"]

    monkeypatch.setenv("OCREXP_ROOT", str(project.root))
    result = run(f"tracking.uri={project.tracking_uri}", "tracking.log_model=false", *TINY, f"model.init_from={uri}")
    recorded = project.client().get_run(result.run_id).data.tags
    assert recorded["ocrexp.source_run_id"] == run_id and recorded["ocrexp.init_from"] == uri


@pytest.mark.slow
def test_init_from_a_registered_model_finds_its_run(source_run):
    project, run_id, _ = source_run
    import mlflow

    with mlflow_env_kept():
        mlflow.set_tracking_uri(project.tracking_uri)
        version = mlflow.register_model(f"runs:/{run_id}/model", "digits-test")
    _, tags = build_model(compose(f"model.init_from=models:/digits-test/{version.version}").model, (28, 28, 1), 10,
                          project.tracking_uri)
    assert tags["ocrexp.source_run_id"] == run_id


@pytest.mark.slow
def test_init_from_a_logged_run_with_another_class_count_swaps_the_head_and_can_freeze_features(source_run):
    project, run_id, source = source_run
    cfg = compose(f"model.init_from=runs:/{run_id}/model", "model.freeze_features=true")
    model, tags = build_model(cfg.model, (28, 28, 1), 5, project.tracking_uri)
    assert model.output_shape == (None, 5) and tags["ocrexp.init_from.head_replaced"] == "true"
    assert tags["ocrexp.source_run_id"] == run_id
    assert weights_equal(model.weights[:-2], source.weights[:-2])  # every layer but the head is kept
    assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]
    assert model.trainable_weights[0].shape == (128, 5)


@pytest.mark.slow
def test_init_from_a_keras_file_records_the_file(source_run, tmp_path):
    _, _, source = source_run
    path = tmp_path / "mnist.keras"
    source.save(path)
    model, tags = build_model(compose(f"model.init_from={path}").model, (28, 28, 1), 10)
    assert weights_equal(model.weights, source.weights) and tags["ocrexp.init_from"] == str(path)
    assert "ocrexp.source_run_id" not in tags


@pytest.mark.slow
def test_init_from_images_of_another_size_is_refused_with_one_sentence(source_run, tmp_path):
    _, _, source = source_run
    path = tmp_path / "mnist.keras"
    source.save(path)
    with pytest.raises(ConfigError, match=r"\(28, 28, 1\).*\(32, 32, 3\)"):
        build_model(compose(f"model.init_from={path}").model, (32, 32, 3), 10)


def test_missing_init_from_file_says_how_to_write_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match=r"models/mnist_best\.keras.*ocrexp export RUN_ID"):
        config.validate(compose("experiment=digits_finetune"))
