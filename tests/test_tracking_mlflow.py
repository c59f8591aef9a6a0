"""What a run leaves in MLflow beyond params and metrics: dataset inputs, a description, registered models.

The session's ``trained`` run shows the inputs and the note; one more real ``ocrexp-train
debug=fast tracking.register_as=digits`` run (per module) fills a registry that ``ocrexp predict``
and ``ocrexp-eval`` then read by version and by alias.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from ocrexp.tracking.datasets import split_digest
from tests.project import Project
from tests.training import mlflow_env_kept

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def predicting(project: Project):
    """``ocrexp predict --model MODEL PATH...`` in this process, on ``project``'s store; MLflow and
    the environment are left as they were (``mlflow.set_tracking_uri`` exports ``MLFLOW_TRACKING_URI``)."""
    import mlflow

    from ocrexp.cli import main

    with mlflow_env_kept():
        try:
            yield lambda model, *paths: main(["predict", "--model", model, "--tracking-uri", project.tracking_uri,
                                              *paths])
        finally:
            mlflow.set_tracking_uri(None)


def inputs_by_context(run) -> dict:
    """context -> ``mlflow.entities.Dataset`` of each of the run's dataset inputs."""
    return {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
            for i in run.inputs.dataset_inputs}


# --- dataset inputs and the note, on the session's run --------------------------------------------


def test_training_run_logs_its_three_splits_as_inputs_with_checksum_digests(trained, mnist):
    from ocrexp.config import compose
    from ocrexp.data.pipeline import split

    project, run_id = trained
    run = project.client().get_run(run_id)
    inputs = inputs_by_context(run)
    assert len(run.inputs.dataset_inputs) == 3 and set(inputs) == {"training", "validation", "test"}
    cfg = compose("debug=fast")
    splits = split(mnist, cfg.dataset.validation_split, cfg.seed, cfg.dataset.limit_train, cfg.dataset.limit_test)
    checksum = run.data.tags["ocrexp.dataset.checksum"]
    expected = {"training": split_digest(checksum, "train", splits.y_train),
                "validation": split_digest(checksum, "train", splits.y_val),
                "test": split_digest(checksum, "test", splits.y_test)}
    assert {context: d.digest for context, d in inputs.items()} == expected
    assert len(set(expected.values())) == 3 and all(d.startswith(checksum[:8]) for d in expected.values())
    assert {d.name for d in inputs.values()} == {"mnist"}
    sizes = {context: json.loads(d.profile)["images"] for context, d in inputs.items()}
    assert sizes == {"training": 1600, "validation": 400, "test": 1000}


def test_dataset_inputs_hold_metadata_only(trained, shared_data_dir):
    import mlflow

    project, run_id = trained
    cache = str(shared_data_dir / "mnist.npz")
    for dataset in inputs_by_context(project.client().get_run(run_id)).values():
        profile = json.loads(dataset.profile)
        assert set(profile) == {"images", "image_shape", "classes", "drawn_from"} and len(dataset.profile) < 200
        assert profile["image_shape"] == [28, 28, 1] and profile["classes"] == 10
        assert dataset.source_type == "local" and json.loads(dataset.source) == {"uri": cache}
        (images,) = json.loads(json.loads(dataset.schema)["mlflow_tensorspec"]["features"])
        assert images["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 28, 28, 1]} and len(dataset.schema) < 500
        assert mlflow.data.get_source(dataset).uri == cache  # MLflow reads our source back


def test_split_digest_tells_splits_apart_and_fits_mlflow():
    import numpy as np

    labels = np.arange(100) % 10
    checksum = "ab" * 32
    digest = split_digest(checksum, "train", labels)
    assert digest == split_digest(checksum, "train", labels.copy()) and len(digest) <= 36  # MLflow's column
    assert digest.startswith("abababab-")
    others = {split_digest(checksum, "test", labels), split_digest(checksum, "train", labels[::-1]),
              split_digest(checksum, "train", labels[:99]), split_digest("cd" * 32, "train", labels)}
    assert digest not in others and len(others) == 4


@pytest.mark.parametrize("source, extra, source_type, shown", [
    ("https://example.org/digits.npz", {}, "http", {"url": "https://example.org/digits.npz"}),
    ("sklearn.datasets.load_digits (UCI)", {"path": "scikit-learn's bundled copy"}, "code",
     {"tags": {"ocrexp.dataset.source": "sklearn.datasets.load_digits (UCI)"}}),
])
def test_a_dataset_from_a_url_or_from_code_gets_the_matching_mlflow_source(source, extra, source_type, shown):
    import numpy as np

    from ocrexp.data.base import DigitData
    from ocrexp.tracking.datasets import EVALUATION, dataset_input

    x, y = np.zeros((4, 8, 8, 1), np.uint8), np.arange(4)
    data = DigitData("tiny", x, y, x, y, list("0123"), "0" * 64, source=source, extra=extra)
    item = dataset_input(data, EVALUATION, "test", y)
    assert item.dataset.source_type == source_type and json.loads(item.dataset.source) == shown


def test_finished_training_run_describes_itself_with_the_result_and_how_to_reproduce(trained):
    project, run_id = trained
    run = project.client().get_run(run_id)
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("cnn on mnist (1,600 train images, 1 epoch): ")
    assert f"test accuracy {run.data.metrics['test_accuracy']:.2%}." in note
    assert (f"Reproduce: `ocrexp reproduce {run_id}` or "
            "`ocrexp-train debug=fast trainer.deterministic=true run_name=fixture`.") in note


def test_a_register_as_name_that_breaks_model_uris_is_refused_before_a_run_starts(tmp_path):
    from ocrexp.config import compose
    from ocrexp.errors import ConfigError
    from ocrexp.tracking import RunTracker

    cfg = compose(f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "tracking.register_as=digits/v2")
    with pytest.raises(ConfigError, match=r"tracking.register_as='digits/v2' is not allowed"):
        with RunTracker(cfg, "never"):
            pass
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("at", ["mlflow.start_run", "RunTracker._log_config"])
def test_a_ctrl_c_while_a_run_starts_ends_it_killed_and_names_it(tmp_path, monkeypatch, at):
    import mlflow

    from ocrexp.config import compose
    from ocrexp.tracking import RunTracker

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlflow if at == "mlflow.start_run" else RunTracker, at.split(".")[1], ctrl_c)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt) as interrupted:
        with RunTracker(compose(f"tracking.uri={uri}"), "interrupted"):
            pytest.fail("the run never started")
    run = mlflow.MlflowClient(uri).get_run(interrupted.value.killed_run)  # for the command's last line
    assert (run.info.status, run.data.tags["ocrexp.error"]) == ("KILLED", "interrupted (Ctrl-C)")
    assert mlflow.active_run() is None


# --- the model registry ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registered(tmp_path_factory, mnist) -> tuple[Project, str]:
    """One real run registered as ``digits``: (project, run_id)."""
    project = Project(tmp_path_factory.mktemp("registry"))
    project.run("ocrexp-train", "debug=fast", "trainer.deterministic=true", "tracking.log_plots=false",
                "tracking.register_as=digits")
    (run,) = project.runs()
    return project, run.info.run_id


@pytest.fixture(scope="module")
def champion(registered) -> Project:
    """``digits@champion`` is version 1."""
    project, _ = registered
    project.client().set_registered_model_alias("digits", "champion", "1")
    return project


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    from ocrexp.reading.pyfunc import example_png

    path = tmp_path_factory.mktemp("scan") / "seventeen.png"
    path.write_bytes(example_png())
    return path


def test_register_as_registers_the_model_and_the_reader_and_tags_the_run(registered):
    project, run_id = registered
    client = project.client()
    for name in ("digits", "digits-reader"):
        (version,) = client.search_model_versions(f"name = '{name}'")
        assert str(version.version) == "1" and version.run_id == run_id and version.status == "READY"
    tags = client.get_run(run_id).data.tags
    assert tags["ocrexp.registered_model"] == "models:/digits/1"
    assert tags["ocrexp.registered_reader"] == "models:/digits-reader/1"


def test_predict_reads_with_a_registered_version_and_an_alias(champion, scan, capsys):
    with predicting(champion) as predict:
        assert predict("models:/digits/1", str(scan)) == 0
        assert predict("models:/digits@champion", str(scan)) == 0
    by_version, by_alias = capsys.readouterr().out.splitlines()
    name, number, confidence = by_version.split()
    assert name == str(scan) and number.isdigit() and confidence.startswith("(")
    assert by_alias == by_version


@pytest.mark.parametrize("uri, why", [
    ("models:/nope/1", "no registered model is named 'nope' (registered models: digits, digits-reader)."),
    ("models:/digits/9", "model 'digits' has no version 9 (its versions: 1)."),
    ("models:/digits@prod", "model 'digits' has no alias 'prod' (its aliases: @champion (version 1);"),
])
def test_an_unknown_registered_model_is_one_error_line_with_status_2(champion, scan, capsys, uri, why):
    with predicting(champion) as predict:
        assert predict(uri, str(scan)) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1
    assert out.err.startswith(f"error: could not fetch model '{uri}' from ") and why in out.err


def test_eval_of_an_alias_records_a_run_with_its_evaluation_input_and_a_note(champion, registered, mnist):
    project, run_id = registered
    champion.run("ocrexp-eval", "model_uri=models:/digits@champion", "dataset.limit_test=200")
    run = [r for r in project.runs() if r.data.tags.get("mlflow.source.name") == "ocrexp-eval"][-1]
    assert run.info.status == "FINISHED" and run.data.tags["ocrexp.source_run_id"] == run_id
    (only,) = run.inputs.dataset_inputs
    assert [(t.key, t.value) for t in only.tags] == [("mlflow.data.context", "evaluation")]
    assert only.dataset.digest == split_digest(mnist.checksum, "test", mnist.y_test[:200])
    assert json.loads(only.dataset.profile)["images"] == 200
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(f"Evaluation of the model from run [{run_id}]")
    assert (f"models:/digits@champion on mnist (200 test images): test accuracy "
            f"{run.data.metrics['test_accuracy']:.2%}. Rerun: "
            "`ocrexp-eval model_uri=models:/digits@champion dataset.limit_test=200`.") in note


def test_logging_a_model_skips_the_requirements_check_only_while_it_logs(monkeypatch):
    import mlflow
    from mlflow.models import Model
    from mlflow.utils import environment

    from ocrexp.compat.mlflow import log_model

    check = environment.warn_dependency_requirement_mismatches
    seen = {}

    def failing_log(artifact_path, name, flavor, **kwargs):
        seen.update(check=environment.warn_dependency_requirement_mismatches, kwargs=kwargs, flavor=flavor.__name__)
        raise RuntimeError("store gone")

    monkeypatch.setattr(Model, "log", failing_log)
    with pytest.raises(RuntimeError, match="store gone"):
        log_model(mlflow.tensorflow, "model", pip_requirements=["x==1"])
    assert seen["check"] is not check and seen["check"](["x==1"]) is None
    assert seen["kwargs"]["validate_serving_input"] is False and seen["flavor"] == "mlflow.tensorflow"
    assert environment.warn_dependency_requirement_mismatches is check  # put back despite the error
