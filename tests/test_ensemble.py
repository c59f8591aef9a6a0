"""``ocrexp ensemble`` and ``ocrexp.models.ensemble``: tiny real Keras models (a few hundred weights)
on MNIST-shaped images; members logged as MLflow runs the way training logs them (no training run)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from ocrexp.errors import OcrexpError
from tests.training import mlflow_env_kept

SHAPE = (28, 28, 1)
LIMIT_TEST = 200  # test images of the logged members' config


def tiny(seed: int = 0, shape=SHAPE, classes: int = 10, probs=None):
    """Pool 4x4 -> Flatten -> Dense softmax (500 weights on MNIST's shape). ``probs``: the constant
    output of a model that ignores its image (zero kernel, log-probabilities as bias)."""
    import keras

    keras.utils.set_random_seed(seed)
    head = keras.layers.Dense(classes, activation="softmax", name="probs")
    model = keras.Sequential([keras.Input(shape, name="image"), keras.layers.AveragePooling2D(4, name="pool"),
                              keras.layers.Flatten(name="flat"), head], name=f"tiny_{seed}")
    if probs is not None:
        kernel, _ = head.get_weights()
        head.set_weights([np.zeros_like(kernel), np.log(np.asarray(probs, dtype=np.float32))])
    return model


def images(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, *SHAPE), dtype=np.float32)


def onehotish(top: int, p: float, runner_up: int | None = None, q: float = 0.0, classes: int = 10) -> list[float]:
    """Probability ``p`` on ``top``, ``q`` on ``runner_up``, the rest spread evenly."""
    rest = (1.0 - p - q) / (classes - 1 - (runner_up is not None))
    out = [rest] * classes
    out[top] = p
    if runner_up is not None:
        out[runner_up] = q
    return out


# -- the model -----------------------------------------------------------------------------------
def test_the_soft_vote_is_the_mean_of_the_members_probabilities():
    from ocrexp.models.ensemble import build_ensemble

    members = [tiny(seed) for seed in range(3)]
    x = images()
    out = np.asarray(build_ensemble(members, "soft")(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.mean([np.asarray(m(x)) for m in members], axis=0), atol=1e-6)


def test_the_majority_vote_follows_the_most_members_not_the_surest_one():
    from ocrexp.models.ensemble import build_ensemble

    # Two members lean to 1, one is sure of 2: the mean favours 2, the vote 1.
    members = [tiny(probs=onehotish(1, 0.40, 2, 0.35)), tiny(probs=onehotish(1, 0.40, 2, 0.35)),
               tiny(probs=onehotish(2, 0.99))]
    x = images(4)
    soft, majority = (np.asarray(build_ensemble(members, vote)(x)) for vote in ("soft", "majority"))
    assert (soft.argmax(axis=1) == 2).all() and (majority.argmax(axis=1) == 1).all()
    np.testing.assert_allclose(majority.sum(axis=1), 1.0, atol=1e-5)
    assert majority[0, 1] == pytest.approx(2 / 3, abs=0.01)  # two votes of three


def test_a_tied_majority_vote_goes_to_the_class_the_members_are_surest_of():
    from ocrexp.models.ensemble import build_ensemble

    members = [tiny(probs=onehotish(3, 0.6)), tiny(probs=onehotish(7, 0.9))]
    out = np.asarray(build_ensemble(members, "majority")(images(2)))
    assert (out.argmax(axis=1) == 7).all()
    assert out[0, 3] == pytest.approx(0.5, abs=0.01) and out[0, 7] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("odd, words", [(dict(shape=(32, 32, 1)), "different images"),
                                        (dict(classes=5), "different classes")])
def test_members_that_disagree_on_input_shape_or_classes_are_one_sentence(odd, words):
    from ocrexp.models.ensemble import build_ensemble

    with pytest.raises(OcrexpError, match=words) as caught:
        build_ensemble([tiny(0), tiny(1, **odd)])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("vote", ["soft", "majority"])
def test_the_saved_ensemble_loads_in_safe_mode_and_predicts_identically(tmp_path, vote):
    import keras

    from ocrexp.models.ensemble import build_ensemble

    ensemble = build_ensemble([tiny(seed) for seed in range(3)], vote)
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = keras.models.load_model(tmp_path / "ensemble.keras", safe_mode=True, compile=False)
    x = images()
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(ensemble(x)))


# -- the command ---------------------------------------------------------------------------------
def log_member(uri: str, name: str, model) -> str:
    """Record ``model`` as a finished run, as training records one: config, dataset, test report, model."""
    from ocrexp import config
    from ocrexp.data.pipeline import scale_images, split
    from ocrexp.report import log_report, test_report
    from ocrexp.tracking import RunTracker

    cfg = config.compose(f"tracking.uri={uri}", f"dataset.limit_test={LIMIT_TEST}", "dataset.limit_train=400",
                         "tracking.log_plots=false")
    data = config.instantiate(cfg.dataset.source)
    splits = split(data, cfg.dataset.validation_split, cfg.seed, cfg.dataset.limit_train, cfg.dataset.limit_test)
    x_train = scale_images(splits.x_train, cfg.dataset.scale)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, splits.y_train, epochs=2, batch_size=64, verbose=0)
    with mlflow_env_kept(), RunTracker(cfg, name) as tracker:
        tracker.log_dataset(data, splits)
        x_test = scale_images(splits.x_test, cfg.dataset.scale)
        report = test_report(model, x_test, splits.y_test)
        log_report(tracker, report, splits.x_test, data.class_names, False)
        tracker.log_model(model, x_test[:4], report["outputs"][:4], class_names=list(data.class_names))
    return tracker.run_id


@pytest.fixture(scope="module")
def members(tmp_path_factory, mnist):
    """Two tiny models, fitted for two epochs on 320 MNIST images and logged as runs: (store, ids)."""
    root = tmp_path_factory.mktemp("ensemble")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return uri, [log_member(uri, f"tiny-{seed}", tiny(seed)) for seed in range(2)]


def ensemble(*argv: str) -> int:
    from ocrexp.cli import main

    with mlflow_env_kept():
        return main(["ensemble", *argv])


@pytest.fixture(scope="module")
def recorded(members):
    """``ocrexp ensemble`` of the two members (one named by id prefix, one by name): (run, its output)."""
    import mlflow

    uri, ids = members
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ensemble(ids[0][:8], "tiny-1", "--tracking-uri", uri) == 0
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_run(ids[0]).info.experiment_id], "tags.`ocrexp.ensemble_of` != ''")
    return run, out.getvalue()


@pytest.mark.slow
def test_the_ensemble_is_recorded_as_a_run_with_its_members_metrics_plots_and_model(members, recorded):
    import mlflow

    uri, ids = members
    run, out = recorded
    assert run.info.status == "FINISHED" and run.info.run_name == "ensemble-soft-2"
    assert run.data.tags["ocrexp.ensemble_of"] == ",".join(ids) and run.data.tags["ocrexp.ensemble.vote"] == "soft"
    assert {"test_accuracy", "test_loss", "predict_s_per_1000", "params"} <= set(run.data.metrics)
    client = mlflow.MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == \
        {"plots/confusion_matrix.png", "plots/misclassified.png"}
    logged = client.search_logged_models([run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")
    assert sorted(m.name for m in logged) == ["model", "reader"]  # one Keras model, and its number reader
    for member in ids:
        line = next(line for line in out.splitlines() if member[:8] in line)
        assert f"test_accuracy={client.get_run(member).data.metrics['test_accuracy']:.4f}" in line
    assert f"ensemble: test_accuracy={run.data.metrics['test_accuracy']:.4f}" in out
    assert "s per 1,000 images" in out and f"MLflow run {run.info.run_id}" in out


@pytest.mark.slow
def test_the_recorded_model_is_the_members_soft_vote_and_loads_as_any_model_does(members, recorded, tmp_path,
                                                                                capsys):
    from ocrexp.cli import main
    from ocrexp.models.ensemble import build_ensemble
    from ocrexp.models.io import load_model
    from ocrexp.models.transfer import init_from

    uri, ids = members
    run, _ = recorded
    model = load_model(f"runs:/{run.info.run_id}/model", uri)  # as predict and ocrexp-eval load it
    x = images()
    expected = build_ensemble([load_model(f"runs:/{i}/model", uri) for i in ids], "soft")(x)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(expected), atol=1e-6)
    started, replaced = init_from(f"runs:/{run.info.run_id[:8]}/model", SHAPE, 10, tracking_uri=uri)
    assert not replaced and started.count_params() == model.count_params()
    digit = tmp_path / "digit.png"
    _write_digit(digit)
    with mlflow_env_kept():
        assert main(["predict", "--model", f"runs:/{run.info.run_id[:8]}/model", "--tracking-uri", uri,
                     "--workers", "0", str(digit)]) == 0
    assert capsys.readouterr().out.startswith(str(digit))


@pytest.mark.slow
def test_filter_and_top_take_the_best_runs_by_the_metric_and_leave_ensembles_out(members, recorded):
    import mlflow

    from ocrexp.commands.ensemble import filtered_members

    uri, ids = members
    client = mlflow.MlflowClient(uri)
    by_accuracy = filtered_members(client, "", uri, 2, "test_accuracy", None)
    assert sorted(r.info.run_id for r in by_accuracy) == sorted(ids)  # not the ensemble, though it scores
    accuracies = [r.data.metrics["test_accuracy"] for r in by_accuracy]
    assert accuracies == sorted(accuracies, reverse=True)
    losses = [r.data.metrics["test_loss"] for r in filtered_members(client, "", uri, 2, "test_loss", None)]
    assert losses == sorted(losses)


@pytest.mark.slow
def test_sweep_and_top_take_its_best_complete_trials_by_the_studys_value(members, capsys):
    import mlflow

    from ocrexp.commands.ensemble import sweep_members
    from ocrexp.sweep_protocol import NUMBER_TAG, PARENT_TAG, ROLE_TAG, STATE_TAG, STUDY_ROLE, STUDY_TAG

    uri, ids = members
    client = mlflow.MlflowClient(uri)
    experiment = client.get_run(ids[0]).info.experiment_id
    parent = client.create_run(experiment, run_name="tiny_sweep", tags={ROLE_TAG: STUDY_ROLE, STUDY_TAG: "tiny_sweep"})
    client.log_param(parent.info.run_id, "optuna.directions", "maximize")
    client.log_param(parent.info.run_id, "optuna.metric", "val_accuracy")
    pruned = client.create_run(experiment, run_name="trial-2").info.run_id
    # Trial 0 (ids[0]) scored below trial 1 (ids[1]); trial 2 was pruned.
    for number, (run_id, state, value) in enumerate([(ids[0], "COMPLETE", 0.5), (ids[1], "COMPLETE", 0.7),
                                                     (pruned, "PRUNED", None)]):
        for key, tag in {PARENT_TAG: parent.info.run_id, STUDY_TAG: "tiny_sweep", NUMBER_TAG: str(number),
                         STATE_TAG: state}.items():
            client.set_tag(run_id, key, tag)
        if value is not None:
            client.log_metric(parent.info.run_id, "trial_value", value, step=number)
    client.set_terminated(pruned, "FINISHED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    try:
        assert [r.info.run_id for r in sweep_members(client, "tiny_sweep", uri, 2, None)] == [ids[1], ids[0]]
        assert ensemble("--sweep", "tiny_sweep", "--top", "3", "--tracking-uri", uri) == 2
        assert capsys.readouterr().err == "error: sweep 'tiny_sweep' has 2 COMPLETE trials; give --top 2 or fewer.\n"
    finally:
        for run_id in ids:
            for key in (PARENT_TAG, STUDY_TAG, NUMBER_TAG, STATE_TAG):
                client.delete_tag(run_id, key)
        client.delete_run(pruned)
        client.delete_run(parent.info.run_id)


@pytest.mark.slow
@pytest.mark.parametrize("differs, words", [({"tags": {"ocrexp.dataset.checksum": "0123abcd"}}, "dataset (checksum)"),
                                             ({"params": {"dataset.scale": "1.0"}}, "pixel scale")])
def test_members_of_different_data_are_one_line_and_record_nothing(members, capsys, differs, words):
    import mlflow

    uri, ids = members
    client = mlflow.MlflowClient(uri)
    first = client.get_run(ids[0])
    # A run like the first member but for its data (the check comes before any model is loaded).
    tags = {**first.data.tags, **differs.get("tags", {})}
    other = client.create_run(first.info.experiment_id, run_name="other-data",
                              tags={k: v for k, v in tags.items() if not k.startswith("mlflow.")}).info.run_id
    for key, value in {**first.data.params, **differs.get("params", {})}.items():
        client.log_param(other, key, value)
    client.set_terminated(other, "FINISHED")
    before = len(client.search_runs([first.info.experiment_id]))
    try:
        assert ensemble(ids[0], other, "--tracking-uri", uri, "--vote", "majority") == 2
        assert len(client.search_runs([first.info.experiment_id])) == before
    finally:
        client.delete_run(other)
    err = capsys.readouterr().err
    assert err.startswith("error: the models were trained on different data") and err.count("\n") == 1
    assert words in err and "other-data" in err


@pytest.mark.parametrize("argv, words", [
    (["tiny-0"], "at least two models"),
    (["tiny-0", "tiny-0"], "name each model once"),
    (["tiny-0", "--sweep", "s"], "RUN and --sweep"),
    (["--sweep", "s"], "--top K"),
    (["--filter", "attributes.run_name LIKE 'tiny-%'", "--top", "5"], "or fewer"),
])
@pytest.mark.slow
def test_a_mistake_in_choosing_the_members_is_one_line(members, capsys, argv, words):
    uri, _ = members
    assert ensemble(*argv, "--tracking-uri", uri) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def _write_digit(path) -> None:
    """A dark 4 on white, as a scan would show it."""
    from PIL import Image

    canvas = np.full((60, 60), 255, np.uint8)
    canvas[10:40, 15:19] = 0
    canvas[36:40, 15:40] = 0
    canvas[10:55, 32:36] = 0
    Image.fromarray(canvas).save(path)


@pytest.mark.slow
def test_ocrexp_eval_takes_the_ensembles_model(members, recorded, tmp_path):
    import mlflow

    from tests.project import Project

    uri, ids = members
    client = mlflow.MlflowClient(uri)
    run, _ = recorded
    proc = Project(tmp_path).run("ocrexp-eval", f"model_uri=runs:/{run.info.run_id}/model", f"tracking.uri={uri}",
                                 f"dataset.limit_test={LIMIT_TEST}", "tracking.log_plots=false")
    (evaluation,) = client.search_runs([run.info.experiment_id],
                                       f"tags.`ocrexp.source_run_id` = '{run.info.run_id}'")
    assert evaluation.data.metrics["test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    assert "test_accuracy=" in proc.stdout + proc.stderr
