"""ocrexp.compat's hooks on private parts of MLflow, Keras and Hydra still have their effect, and no
other module touches a private part of those libraries (or of Optuna).

Each hook's test asserts what the hook is for (one trace of the train step, no re-loaded model,
Hydra's report replaced...), so that an upgrade that removes the private part, or keeps it but stops
using it, fails here rather than going unnoticed.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import sys
from pathlib import Path

import pytest

from ocrexp.compat import CompatError

SRC = Path(__file__).resolve().parents[1] / "src"
COMPAT = SRC / "ocrexp" / "compat"
LIBRARIES = ("mlflow", "optuna", "keras", "tensorflow", "tf_keras", "hydra", "omegaconf")
# Modules of those libraries that are private without an underscore in their name.
PRIVATE_MODULES = ("keras.src", "tensorflow.python", "tensorflow.core", "hydra._internal")
# Private names of those libraries that ocrexp once used outside ocrexp.compat, read however they are
# reached (``x._trial_id``, ``getattr(x, "_trial_id")``).
PRIVATE_NAMES = {"_trial_id", "_study_id", "_storage", "_sample", "_get_trials", "_is_multi_objective",
                 "_return_value", "_active_run_stack", "_symbolic_build", "_get_source_type", "_value",
                 "_get_node", "_learning_rate", "run_and_report", "warn_dependency_requirement_mismatches",
                 "_tracking_store_registry",
                 "_parse_overrides_and_create_caching_repo"}


def _private_uses(text: str, where: str) -> list[str]:
    """``where:line: what`` for each private part of the libraries that the code ``text`` touches."""
    found = []
    for node in ast.walk(ast.parse(text, where)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            root, *rest = module.split(".")
            if root in LIBRARIES and (module.startswith(PRIVATE_MODULES)
                                      or any(p.startswith("_") and not p.startswith("__") for p in rest)):
                found.append(f"{where}:{node.lineno}: imports {module}")
                break
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own:
                found.append(f"{where}:{node.lineno}: reads .{node.attr}")
        if (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr", "setattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in PRIVATE_NAMES):
            found.append(f"{where}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_module_outside_compat_touches_a_private_part_of_the_libraries():
    found = [use for path in sorted(SRC.rglob("*.py")) if COMPAT not in path.parents
             for use in _private_uses(path.read_text(), str(path.relative_to(SRC)))]
    assert not found, "move these into ocrexp.compat (or use a public API):\n" + "\n".join(found)


def test_the_scan_finds_each_kind_of_private_use_but_not_a_class_own():
    text = "\n".join(["from hydra._internal import utils", "import keras.src.backend",
                      "from mlflow.tracking import _tracking_service", "x = trial._trial_id",
                      "y = getattr(fluent, '_active_run_stack', None)", "z = self._value",
                      "import optuna.samplers", "from omegaconf import OmegaConf"])
    found = _private_uses(text, "sample.py")
    assert sorted(int(line.split(":")[1]) for line in found) == [1, 2, 3, 4, 5], found


# -- Keras --------------------------------------------------------------------------------------------

def test_after_build_before_fit_a_fit_traces_its_train_step_once():
    import keras
    import numpy as np
    import tensorflow as tf

    from ocrexp.compat.keras import build_before_fit
    from tests.training import traced_functions

    def traces_of_one_fit(hooked: bool) -> int:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=False)
        data = tf.data.Dataset.from_tensor_slices((np.ones((16, 4), "float32"), np.zeros(16, "int64"))).batch(8)
        if hooked:
            assert build_before_fit(model, data)
            assert model.optimizer.built
        with traced_functions() as traced:
            model.fit(data, epochs=1, verbose=0, shuffle=False)
        return traced.count("one_step_on_data")

    assert traces_of_one_fit(hooked=True) == 1
    assert traces_of_one_fit(hooked=False) == 2, "Keras no longer traces twice without the hook: remove it"


# -- MLflow -------------------------------------------------------------------------------------------

class _Echo:
    """A pyfunc model that leaves a file behind when MLflow loads it and predicts with it."""

    def __init__(self, marker: str):
        self.marker = marker

    def predict(self, context, model_input, params=None):
        Path(self.marker).touch()
        return model_input


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A throw-away tracking store, the active one while this module's tests run (creating one takes
    seconds, so they share it)."""
    import os

    import mlflow

    before = os.environ.pop("MLFLOW_TRACKING_URI", None)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")
    try:
        yield mlflow.MlflowClient()
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)  # set_tracking_uri exports it
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def test_a_model_logged_through_the_hook_is_not_loaded_back_nor_its_requirements_checked(mlflow_store, tmp_path):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from ocrexp.compat.mlflow import log_model

    class _PythonEcho(_Echo, mlflow.pyfunc.PythonModel):
        pass

    example = pd.DataFrame({"x": [1.0, 2.0]})
    common = dict(input_example=example, signature=infer_signature(example, example),
                  pip_requirements=["numpy==0.0.1"])  # not what is installed: MLflow's check would warn
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    checker = logging.getLogger("mlflow.utils.requirements_utils")
    checker.addHandler(handler)
    try:
        with mlflow.start_run():
            saved = []
            log_model(mlflow.pyfunc, "hooked", saved=lambda path: saved.append(Path(path, "MLmodel").is_file()),
                      python_model=_PythonEcho(str(tmp_path / "hooked-loaded")), **common)
            hooked_warnings = list(warnings)
            mlflow.pyfunc.log_model(name="plain", python_model=_PythonEcho(str(tmp_path / "plain-loaded")), **common)
    finally:
        checker.removeHandler(handler)
    assert saved == [True]  # saved(path) saw the saved model, before its upload
    assert not (tmp_path / "hooked-loaded").exists()  # MLflow did not load the model back to predict
    assert not any("mismatches" in w for w in hooked_warnings)
    # Without the hook MLflow does both, so the two assertions above measure the hook.
    assert (tmp_path / "plain-loaded").exists()
    assert any("mismatches" in w for w in warnings[len(hooked_warnings):])


def test_forgetting_the_active_run_writes_nothing_and_lets_the_next_run_start(mlflow_store):
    import mlflow

    from ocrexp.compat.mlflow import forget_active_run

    first = mlflow.start_run().info.run_id
    forget_active_run()
    assert mlflow.active_run() is None
    assert mlflow_store.get_run(first).info.status == "RUNNING"  # nothing was written to the store
    with mlflow.start_run() as second:  # would raise while the first were still active
        assert second.info.run_id != first


def test_forgetting_the_active_run_fails_loudly_without_mlflows_run_stack(monkeypatch):
    from mlflow.tracking import fluent

    from ocrexp.compat.mlflow import forget_active_run

    monkeypatch.delattr(fluent, "_active_run_stack")
    with pytest.raises(CompatError, match=r"forget_active_run needs mlflow.tracking.fluent._active_run_stack, "
                                          r"which mlflow \S+ does not have \(checked with mlflow 3"):
        forget_active_run()


# -- Hydra --------------------------------------------------------------------------------------------

def test_a_failed_jobs_exception_is_read_without_printing(capfd):
    from hydra.core.utils import JobReturn, JobStatus

    from ocrexp.compat.hydra import job_failure

    error = ValueError("boom")
    failed = JobReturn(status=JobStatus.FAILED)
    failed.return_value = error
    done = JobReturn(status=JobStatus.COMPLETED)
    done.return_value = 0.9
    assert job_failure(failed) is error and job_failure(done) is None
    assert capfd.readouterr().err == ""  # ``return_value`` would have printed "Error executing job..."


def test_hydra_mains_errors_go_to_the_replacement_report(capfd, monkeypatch):
    import hydra
    from hydra.core.global_hydra import GlobalHydra

    from ocrexp.hydra_errors import one_line_errors

    @hydra.main(version_base="1.3", config_path=None, config_name=None)
    def app(cfg):
        raise AssertionError("the bad override should stop Hydra before the task")

    monkeypatch.setattr(sys, "argv", ["app", "no_such_key=1"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        with one_line_errors(), pytest.raises(SystemExit) as stopped:
            app()
    finally:
        GlobalHydra.instance().clear()
    assert stopped.value.code == 2  # ocrexp's report; Hydra's own exits with 1
    err = capfd.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("error: no_such_key is not a setting"), err



def test_hydra_mains_flag_mistakes_go_to_the_replacement_report(capfd, monkeypatch):
    import hydra

    from ocrexp.hydra_errors import one_line_errors

    @hydra.main(version_base="1.3", config_path=None, config_name=None)
    def app(cfg):
        raise AssertionError("the unknown flag should stop Hydra before the task")

    monkeypatch.setattr(sys, "argv", ["app", "--no-such-flag"])
    with one_line_errors(), pytest.raises(SystemExit) as stopped:
        app()
    assert stopped.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err == "error: app: unrecognized arguments: --no-such-flag; `app --help` lists what it takes.", err

def test_help_lists_the_config_groups_from_one_copy_of_the_repository(capsys, monkeypatch, tmp_path):
    import hydra
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from ocrexp.compat.hydra import help_lists_groups_once

    made = []
    original = ConfigLoaderImpl._parse_overrides_and_create_caching_repo

    def counted(loader, config_name, overrides):
        made.append(config_name)
        return original(loader, config_name, overrides)

    for option in ("apple", "pear"):
        (tmp_path / "fruit").mkdir(exist_ok=True)
        (tmp_path / "fruit" / f"{option}.yaml").write_text("sweet: true\n")

    @hydra.main(version_base="1.3", config_path=str(tmp_path), config_name=None)
    def app(cfg):
        raise AssertionError("--help should stop Hydra before the task")

    def help_text(hook) -> tuple[str, int]:
        monkeypatch.setattr(ConfigLoaderImpl, "_parse_overrides_and_create_caching_repo", counted)
        made.clear()
        # Hydra's logging setup would leave handlers on pytest's captured stderr: keep it off.
        monkeypatch.setattr(sys, "argv", ["app", "--help", "hydra/job_logging=none", "hydra/hydra_logging=none"])
        # Help sets HydraConfig, which later tests must find unset.
        monkeypatch.setattr(HydraConfig.instance(), "cfg", HydraConfig.instance().cfg)
        try:
            with hook(), pytest.raises(SystemExit):
                app()
        finally:
            GlobalHydra.instance().clear()
        return capsys.readouterr().out, len(made)

    plain, copies_plain = help_text(contextlib.nullcontext)
    shared, copies_shared = help_text(help_lists_groups_once)
    assert "fruit: apple, pear" in plain and shared == plain
    assert copies_plain > 20 and copies_shared <= 2, (copies_plain, copies_shared)


# -- MLflow's tracking-store registry (the store server, ocrexp.tracking.store_process) ---------------

def test_sqlite_stores_come_from_the_routed_builder_until_mlflow_opens_them_itself_again(tmp_path):
    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from ocrexp.compat.mlflow import open_tracking_store, restore_sqlite_stores, route_sqlite_stores

    routed, own = (f"sqlite:///{tmp_path / name}.db" for name in ("routed", "own"))
    built = []

    def builder(store_uri, artifact_uri=None):
        built.append(store_uri)
        return SqlAlchemyStore(store_uri, str(tmp_path / "artifacts"))

    assert route_sqlite_stores(builder)
    try:
        experiment = mlflow.MlflowClient(routed).create_experiment("routed")
    finally:
        restore_sqlite_stores()
    assert built == [routed]  # the client's store came from the builder (the store server's proxy)
    mlflow.MlflowClient(own).create_experiment("own")
    assert built == [routed]  # and no longer does
    served = open_tracking_store(routed)  # what the store server opens for the run
    assert isinstance(served, SqlAlchemyStore) and served.get_experiment(experiment).name == "routed"


def test_without_mlflows_store_registry_nothing_is_routed_and_no_store_is_served(monkeypatch):
    from mlflow.tracking._tracking_service import utils

    from ocrexp.compat.mlflow import open_tracking_store, route_sqlite_stores

    monkeypatch.delattr(utils, "_tracking_store_registry")
    assert route_sqlite_stores(lambda **where: None) is False  # the run opens its store itself
    with pytest.raises(CompatError, match=r"open_tracking_store needs mlflow.tracking._tracking_service.utils."
                                          r"_tracking_store_registry, which mlflow \S+ does not have"):
        open_tracking_store("sqlite:///unused.db")
