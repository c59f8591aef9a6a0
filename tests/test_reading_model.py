"""Reading numbers with a real (small) trained model: reader, CLI, MLflow pyfunc, REST serving.

The session's model is the tutorial CNN trained for 375 steps on real MNIST (about 97% test
accuracy, ~20 s on two cores): enough to read clean digits, so the assertions are about
reading, not about how good the classifier is.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrexp.data.numbers import NumberStyle, generate_numbers

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def digit_model(mnist):
    import keras

    from ocrexp.models.cnn import tutorial_cnn

    keras.utils.set_random_seed(0)
    model = tutorial_cnn(mnist.input_shape, mnist.num_classes)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(mnist.x_train[:24000].astype("float32") / 255.0, mnist.y_train[:24000], batch_size=64, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="session")
def model_file(digit_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "digits.keras"
    digit_model.save(path)
    return path


@pytest.fixture(scope="session")
def reader(digit_model):
    from ocrexp.reading import NumberReader

    return NumberReader(digit_model, batch_size=64)


@pytest.fixture(scope="session")
def clean_numbers(mnist):
    return generate_numbers(mnist.x_test, mnist.y_test, 40, seed=11, length=(1, 6), style=NumberStyle(noise=False))


@contextlib.contextmanager
def _store(uri: str):
    """MLflow pointed at ``uri`` for the block, then back to its default."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(None)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _number_accuracy(readings, labels) -> float:
    return float(np.mean([getattr(r, "number", None) == label for r, label in zip(readings, labels)]))


# --- the reader -----------------------------------------------------------------------------


def test_a_test_digit_redrawn_large_on_paper_is_classified_like_the_original(mnist, reader):
    x = mnist.x_test[:300, ..., 0]
    probs = reader.predict_fields(x.astype(np.float32) / 255.0)
    sure = np.flatnonzero(probs.max(axis=1) > 0.99)[:60]
    scans = []
    for i, k in enumerate(sure):
        big = Image.fromarray(x[k]).resize((28 * 6, 28 * 6), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (320, 260), 0)
        canvas.paste(big, (20 + 7 * (i % 10), 40 + 5 * (i % 7)))
        scans.append(_png(255 - np.asarray(canvas)))  # dark ink on white paper
    readings = reader.read(scans)
    same = [r.number == str(probs[k].argmax()) for r, k in zip(readings, sure)]
    assert np.mean(same) >= 0.98


def test_composed_numbers_are_read_left_to_right_with_boxes(reader, clean_numbers):
    readings = reader.read(clean_numbers.images)
    assert _number_accuracy(readings, clean_numbers.labels) >= 0.8
    for reading, image in zip(readings, clean_numbers.images):
        lefts = [d.box[0] for d in reading.digits]
        assert lefts == sorted(lefts)
        assert all(0 <= d.box[0] < d.box[2] <= image.shape[1] and 0 <= d.box[1] < d.box[3] <= image.shape[0]
                   for d in reading.digits)
        assert reading.confidence == pytest.approx(np.prod([d.confidence for d in reading.digits]))



def test_a_model_of_images_without_a_channel_axis_reads_the_same(digit_model, reader, clean_numbers):
    import keras

    from ocrexp.reading import NumberReader

    images = keras.Input((28, 28))
    flat = keras.Model(images, digit_model(keras.layers.Reshape((28, 28, 1))(images)))  # same weights
    expected = [r.number for r in reader.read(clean_numbers.images[:20])]
    assert [r.number for r in NumberReader(flat).read(clean_numbers.images[:20])] == expected


def test_a_model_that_does_not_take_square_images_is_one_sentence(model_file, scans_dir, tmp_path, capsys):
    import keras

    from ocrexp.cli import main as ocrexp

    vector = tmp_path / "vector.keras"
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")]).save(vector)
    not_a_model = tmp_path / "text.keras"
    not_a_model.write_text("not a model")
    d, _ = scans_dir
    for path, says in ((vector, "takes inputs of shape (784,)"), (not_a_model, "could not be loaded as a Keras model")):
        assert ocrexp(["predict", "--model", str(path), str(d)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]


def test_wide_touching_pairs_are_cut_in_two(mnist, reader):
    from ocrexp.reading import find_glyphs, load_image, to_ink

    pairs = generate_numbers(mnist.x_test, mnist.y_test, 80, seed=12, length=2,
                             style=NumberStyle(touching=1.0, noise=False, scale=(2, 2)))
    wide = []
    for image, label in zip(pairs.images, pairs.labels):
        glyphs = find_glyphs(to_ink(load_image(image)))
        if len(glyphs) == 1 and glyphs[0].width >= 1.4 * glyphs[0].height:
            wide.append((image, label))  # one connected mark, clearly wider than a digit
    assert len(wide) >= 15
    readings = reader.read([image for image, _ in wide])
    assert np.mean([len(r.number) == 2 for r in readings]) >= 0.7
    assert _number_accuracy(readings, [label for _, label in wide]) >= 0.5


def test_digits_of_many_images_share_one_model_call_per_batch(reader, clean_numbers):
    calls: list[int] = []
    original = reader._call
    reader._call = lambda x: (calls.append(len(x)), original(x))[1]
    try:
        readings = reader.read(clean_numbers.images)
    finally:
        reader._call = original
    digits = sum(len(r.number) for r in readings)
    assert max(calls) <= reader.batch_size
    assert len(calls) < digits / 8  # batched across images, never one call per digit
    assert len(calls) <= -(-sum(calls) // reader.batch_size) + len(calls) // 2 + 1


def test_worker_processes_read_the_same_as_one_process(reader, clean_numbers):
    images = [_png(im) for im in clean_numbers.images[:12]] + [b"not an image"]
    alone = reader.read(images)
    pooled = reader.read(images, workers=2)
    assert [getattr(r, "number", str(r)) for r in pooled] == [getattr(r, "number", str(r)) for r in alone]


def test_a_bad_image_in_the_batch_leaves_the_others_read(reader, clean_numbers):
    from ocrexp.reading import BlankImageError, ImageError, UnreadableImageError

    good = _png(clean_numbers.images[0])
    results = reader.read([good, b"", b"just text", np.full((40, 40), 255, np.uint8), good])
    assert [type(r).__name__ for r in results] == ["Reading", "UnreadableImageError", "UnreadableImageError",
                                                  "BlankImageError", "Reading"]
    assert isinstance(results[1], UnreadableImageError) and isinstance(results[3], BlankImageError)
    assert all(isinstance(r, ImageError) for r in results[1:4])
    assert results[0].number == results[4].number == clean_numbers.labels[0]


# --- ocrexp predict -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def scans_dir(clean_numbers, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A directory with readable numbers (PNG and JPEG) and every kind of bad file."""
    d = tmp_path_factory.mktemp("scans")
    good: dict[str, str] = {}
    for i in range(4):
        name = f"good{i}.png" if i % 2 == 0 else f"good{i}.jpg"
        Image.fromarray(clean_numbers.images[i]).save(d / name, quality=95)
        good[name] = clean_numbers.labels[i]
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("meter reading: 4721\n")
    (d / "truncated.png").write_bytes(_png(clean_numbers.images[0])[:150])
    Image.new("L", (1, 1)).save(d / "dot.png")
    Image.new("L", (60, 40), 255).save(d / "white.png")
    frames = [Image.fromarray(clean_numbers.images[0]), Image.fromarray(255 - clean_numbers.images[0])]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    (d / "readme.txt").write_text("not an image suffix: skipped when listing the directory")
    return d, good


BAD = {"empty.png": "empty", "notes.png": "text", "truncated.png": "truncated", "dot.png": "1x1",
       "white.png": "uniform", "anim.gif": "animated"}


def test_predict_reads_good_files_and_gives_one_error_line_per_bad_one(model_file, scans_dir, capsys):
    from ocrexp.cli import main as ocrexp
    from ocrexp.commands.predict import EXIT_SOME_FAILED

    d, good = scans_dir
    status = ocrexp(["predict", "--model", str(model_file), str(d)])
    out, err = capsys.readouterr()
    assert status == EXIT_SOME_FAILED != 0
    lines = dict(line.split("  ", 1) for line in out.splitlines())
    for name, label in good.items():
        number, confidence = lines[str(d / name)].split()
        assert number == label and confidence.startswith("(") and 0 <= float(confidence.strip("()")) <= 1
    errors = err.splitlines()
    assert len(errors) == len(BAD)
    for name, words in BAD.items():
        (line,) = [e for e in errors if e.startswith(str(d / name) + "  error: ")]
        assert words in line
    assert "readme.txt" not in out + err


def test_predict_json_lists_every_file_in_order_with_digits_or_error(model_file, scans_dir, capsys):
    from ocrexp.cli import main as ocrexp

    d, good = scans_dir
    status = ocrexp(["predict", "--model", str(model_file), "--json", "--batch-size", "16",
                     str(d / "good*"), str(d / "white.png"), str(d / "missing.png")])
    records = json.loads(capsys.readouterr().out)
    assert status != 0
    by_path = {Path(r["path"]).name: r for r in records}
    assert set(by_path) == set(good) | {"white.png", "missing.png"}
    for name, label in good.items():
        r = by_path[name]
        assert r["number"] == label and len(r["digits"]) == len(label) and "error" not in r
        assert all(set(dig) == {"digit", "confidence", "box"} for dig in r["digits"])
    assert "uniform" in by_path["white.png"]["error"] and "no such file" in by_path["missing.png"]["error"]


def test_predict_exits_zero_when_every_image_is_read(model_file, scans_dir, capsys):
    from ocrexp.cli import main as ocrexp

    d, good = scans_dir
    assert ocrexp(["predict", "--model", str(model_file), *(str(d / n) for n in good)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(good)


def test_predict_console_script_end_to_end_with_worker_processes(model_file, clean_numbers, tmp_path):
    for i, image in enumerate(clean_numbers.images[:20]):  # enough images for the worker pool
        Image.fromarray(image).save(tmp_path / f"n{i:02d}.png")
    (tmp_path / "n99.png").write_bytes(b"")
    proc = subprocess.run([str(BIN / "ocrexp"), "predict", "--model", str(model_file), "--workers", "2", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    read = [line.split()[1] for line in proc.stdout.splitlines()]
    assert np.mean([r == label for r, label in zip(read, clean_numbers.labels[:20])]) >= 0.8 and len(read) == 20
    assert proc.stderr.strip().endswith("n99.png  error: file is empty (0 bytes)")


def test_predict_with_an_unknown_model_is_a_usage_error(scans_dir, capsys):
    from ocrexp.cli import main as ocrexp

    d, _ = scans_dir
    assert ocrexp(["predict", "--model", str(d / "nope.keras"), str(d)]) == 2
    assert "nope.keras" in capsys.readouterr().err


# --- MLflow: pyfunc, serving, benchmark -----------------------------------------------------


@pytest.fixture(scope="session")
def logged_reader(digit_model, tmp_path_factory) -> tuple[str, str]:
    """The reader logged with ``log_reader`` into a throw-away store: (tracking_uri, run_id)."""
    from ocrexp.tracking.logged_models import log_reader

    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with _store(uri) as mlflow:
        experiment = mlflow.create_experiment("reading", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment) as run:
            log_reader(digit_model)
    return uri, run.info.run_id


def test_logged_reader_loads_with_its_signature_and_reads_bytes_base64_and_arrays(logged_reader, clean_numbers):
    import pandas as pd

    uri, run_id = logged_reader
    with _store(uri) as mlflow:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/reader")
    inputs = model.metadata.get_input_schema().to_dict()
    assert inputs == [{"type": "binary", "name": "image", "required": True}]
    assert {"number", "confidence", "digit_confidences", "error"} <= set(model.metadata.get_output_schema().input_names())
    png = _png(clean_numbers.images[1])
    frame = pd.DataFrame({"image": [png, base64.b64encode(png).decode(), clean_numbers.images[1], b"%PDF-1.4 junk"]})
    out = model.predict(frame)
    assert list(out["number"][:3]) == [clean_numbers.labels[1]] * 3
    assert list(out["error"][:3]) == ["", "", ""] and out["error"][3] != ""
    assert out["confidence"][3] == 0.0 and len(out["digit_confidences"][0]) == len(clean_numbers.labels[1])


def test_logged_reader_holds_no_pickle_and_carries_its_keras_model(logged_reader):
    uri, run_id = logged_reader
    with _store(uri) as mlflow:
        local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/reader"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not any(f.endswith((".pkl", ".pickle")) for f in files)
    assert any(f.endswith(".keras") for f in files) and "code/ocrexp/reading/reader.py" in files
    assert "python_model.pkl" not in files and "served_model.py" in {Path(f).name for f in files}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_a_posted_image_with_its_number(logged_reader, clean_numbers, tmp_path):
    uri, run_id = logged_reader
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/reader",
                               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.5)
        images = [base64.b64encode(_png(im)).decode() for im in clean_numbers.images[:3]]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[b] for b in images]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            predictions = json.loads(r.read())["predictions"]
        assert [p["number"] for p in predictions] == clean_numbers.labels[:3]
        assert all(0 < p["confidence"] <= 1 and p["error"] == "" for p in predictions)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


def test_read_benchmark_logs_number_and_digit_accuracy_to_the_run(digit_model, mnist, logged_reader):
    from ocrexp.reading.benchmark import run_read_benchmark

    uri, _ = logged_reader
    with _store(uri) as mlflow:
        with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("reading").experiment_id) as run:
            metrics = run_read_benchmark(digit_model, count=30, length=4, seed=0, digits=mnist)
        logged = mlflow.get_run(run.info.run_id).data.metrics
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "read")}
    assert logged["read_number_accuracy"] == metrics["read_number_accuracy"] >= 0.6
    assert 0.85 <= logged["read_digit_accuracy"] <= 1.0 and logged["read_length_accuracy"] >= 0.9
    assert "read/benchmark.json" in artifacts


def test_ocrexp_eval_read_mode_records_number_accuracy_in_a_new_run(model_file, project):
    proc = project.run("ocrexp-eval", f"model_uri={model_file}", "mode=read", "read.count=24", "read.length=[2,5]")
    assert "read_number_accuracy=" in proc.stdout
    (run,) = project.runs()
    assert run.info.status == "FINISHED"
    assert {"read_number_accuracy", "read_digit_accuracy", "read_length_accuracy"} <= set(run.data.metrics)
    assert run.data.metrics["read_digit_accuracy"] >= 0.85


def test_sigterm_ends_an_evaluation_run_killed_with_one_line(model_file, project):
    from ocrexp.tracking.store import ensure_store

    ensure_store(project.tracking_uri)
    proc = subprocess.Popen([str(BIN / "ocrexp-eval"), f"model_uri={model_file}", "mode=read", "read.count=200000"],
                            cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.time() + 120
        while not project.runs() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    (run,) = project.runs()
    assert (proc.returncode, err.strip()) == (143, f"terminated (SIGTERM): run {run.info.run_id} ended as KILLED")
    assert run.info.status == "KILLED" and run.data.tags["ocrexp.error"] == "terminated (SIGTERM)"


def test_scores_count_dropped_extra_and_wrong_digits():
    from ocrexp.reading.benchmark import score_readings

    scores = score_readings(["4721", "472", "47211", "4821", None], ["4721"] * 5)
    assert scores["number_accuracy"] == pytest.approx(0.2)
    assert scores["digit_accuracy"] == pytest.approx(1 - (0 + 1 + 1 + 1 + 4) / 20)
    assert scores["length_accuracy"] == pytest.approx(0.4) and scores["failed"] == 1


def test_a_training_run_logs_the_reader_and_predict_reads_with_its_model_uri(trained, clean_numbers, tmp_path):
    project, run_id = trained
    with _store(project.tracking_uri) as mlflow:
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/reader")
    assert model.metadata.get_input_schema().input_names() == ["image"]
    Image.fromarray(clean_numbers.images[0]).save(tmp_path / "scan.png")
    proc = project.run("ocrexp", "predict", "--model", f"runs:/{run_id}/model", str(tmp_path / "scan.png"))
    name, number, confidence = proc.stdout.split()
    assert name == str(tmp_path / "scan.png") and number.isdigit() and confidence.startswith("(")
