"""Config composition, overrides and validation: no TensorFlow needed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException

from ocrexp import config
from ocrexp.config import compose
from ocrexp.errors import ConfigError



def test_default_composition_is_the_seed_recipe():
    cfg = compose()
    assert cfg.dataset.name == "mnist" and cfg.dataset.scale == 255.0
    assert cfg.dataset.validation_split == 0.2
    assert cfg.model.name == "cnn" and cfg.model.dropout == 0.5
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 1e-3
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (10, 64)
    assert cfg.trainer.loss == "categorical_crossentropy"
    assert cfg.augmentation.layers == []
    assert cfg.optimized_metric == "val_accuracy"


def test_tutorial_experiment_equals_the_default():
    default, named = compose(), compose("experiment=tutorial")
    named.run_name = default.run_name
    assert named == default


def test_command_line_overrides_apply():
    cfg = compose("trainer.epochs=3", "optimizer.lr=1e-3", "seed=7", "model.dense_units=64")
    assert (cfg.trainer.epochs, cfg.optimizer.lr, cfg.seed, cfg.model.dense_units) == (3, 1e-3, 7, 64)


def test_debug_fast_shrinks_data_and_epochs():
    cfg = compose("debug=fast")
    assert cfg.dataset.limit_train <= 2000 and cfg.dataset.limit_test <= 1000 and cfg.trainer.epochs == 1
    assert compose("debug=fast", "trainer.epochs=3").trainer.epochs == 3


def test_paths_come_from_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    monkeypatch.delenv("OCREXP_DATA_DIR", raising=False)
    cfg = compose()
    assert cfg.paths.root_dir == str(tmp_path)
    assert cfg.dataset.source.cache_dir == str(tmp_path / "data")


@pytest.mark.parametrize("override", ["trainer.device=tpu", "trainer.epochs=ten", "model.dropuot=0.3",
                                      "model=nonexistent", "nokey=1"])
def test_hydra_rejects_unknown_keys_options_and_types(override):
    with pytest.raises(ConfigCompositionException):
        compose(override)


@pytest.mark.parametrize("override, key", [
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=-1", "trainer.batch_size"),
    ("model.dropout=1.0", "model.dropout"),
    ("model.dropout=-0.1", "model.dropout"),
    ("dataset.validation_split=0", "dataset.validation_split"),
    ("dataset.validation_split=1.5", "dataset.validation_split"),
    ("optimizer.lr=0", "optimizer.lr"),
    ("model.dense_units=0", "model.dense_units"),
    ("optimized_metric=f1", "optimized_metric"),
    ("trainer.loss=mse", "trainer.loss"),
    ("trainer.steps_per_execution=0", "trainer.steps_per_execution"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size"),
    ("trainer.strategy=horovod", "trainer.strategy"),
    ("trainer.cpu_replicas=2", "trainer.cpu_replicas"),  # only with strategy=mirrored
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        config.validate(compose(override))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["model=cnn_bn", "model.filters=[0,-5,128]"], "model.filters.0=0 is not allowed: use a positive integer."),
    (["model=cnn_bn", "model.filters=[16,-5,128]"], "model.filters.1=-5 is not allowed: use a positive integer."),
    (["model=cnn_bn", "model.filters=[16,null]"], "model.filters.1=None is not allowed: use a positive integer."),
    (["model=cnn_bn", "model.filters=[16,2.5]"], "model.filters.1=2.5 is not allowed: use a positive integer."),
    (["+model.block_filters={0: 16, 1: -5}"], "model.block_filters.1=-5 is not allowed: use a positive integer."),
    (["+model.blocks=[{filters: 16}, {filters: 0}]"], "model.blocks.1.filters=0 is not allowed: use a positive integer."),
    (["+model.block_dropout=[0.1,1.5]"], "model.block_dropout.1=1.5 is not allowed: use a rate in [0, 1)."),
    (["schedule=plateau", "schedule.factor=[0.5,2.0]"], "schedule.factor.1=2.0 is not allowed: use a multiplier in (0, 1)."),
    (["model.conv1_filters=0"], "model.conv1_filters=0 is not allowed: use a positive integer."),
    (["trainer.mixed_precision=yes"], "trainer.mixed_precision='yes' is not allowed: use true, false or auto."),
])
def test_items_of_list_and_dict_settings_are_range_checked_like_scalars(overrides, message):
    with pytest.raises(ConfigError) as err:
        config.validate(compose(*overrides))
    assert str(err.value) == message


def test_valid_list_settings_and_null_layers_pass_validation():
    config.validate(compose("model=cnn_bn", "model.filters=[8,16,32,64]"))
    config.validate(compose("model=cnn_bn", "model.head=gap", "model.dense_units=null"))
    config.validate(compose("experiment=mnist_best"))


def test_a_bad_list_item_on_the_command_line_is_one_line_with_usage_status(project):
    proc = project.run("ocrexp-train", "model=cnn_bn", "model.filters=[16,-5,128]", "tracking=none", check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: model.filters.1=-5 is not allowed: use a positive integer."]
    assert not (project.root / "mlruns").exists()


def test_valid_default_passes_validation():
    config.validate(compose())
    config.validate(compose("optimized_metric=[val_accuracy,params]"))
    assert config.optimized_metrics(compose("optimized_metric=[val_accuracy,params]")) == ["val_accuracy", "params"]


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    code = ("import atexit, sys; sys.argv=['ocrexp-train', *sys.argv[1:]]\n"  # atexit: main() may end the process
            "atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED', "
            "file=sys.stderr))\n"
            "from ocrexp.train import main\n"
            "main()\n")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "OCREXP_ROOT": str(cwd)})


def test_help_lists_groups_without_loading_tensorflow(tmp_path):
    proc = _cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for group in ("dataset: ", "model: ", "augmentation: ", "optimizer: ", "trainer: ", "tracking: ",
                  "debug: ", "experiment: "):
        assert group in proc.stdout
    assert "tutorial" in proc.stdout
    assert "TF_NOT_LOADED" in proc.stderr


def test_cfg_job_prints_the_composed_config_without_loading_tensorflow(tmp_path):
    proc = _cli("--cfg", "job", "trainer.epochs=3", cwd=tmp_path)
    assert proc.returncode == 0 and "epochs: 3" in proc.stdout
    assert "TF_NOT_LOADED" in proc.stderr


def test_bad_value_exits_before_tensorflow_with_one_line_and_no_run(tmp_path):
    proc = _cli("trainer.epochs=0", cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln and ln != "TF_NOT_LOADED"]
    assert lines == ["error: trainer.epochs=0 is not allowed: use a positive number of epochs."]
    assert "TF_NOT_LOADED" in proc.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("override, expected", [
    ("trainer.epoch=3", "error: trainer.epoch is not a setting (did you mean trainer.epochs?): add `--cfg job` to "
                        "list them all; to add a new key, write +trainer.epoch=3."),
    ("model=cnn_nb", "error: model=cnn_nb is not a known model (did you mean cnn_bn?): choose from cnn, cnn_bn, vgg16."),
    ("trainer.epochs=ten", "error: trainer.epochs=ten: Value 'ten' of type 'str' could not be converted to Integer."),
    ("trainer.batch_size=[1", "error: could not parse the override 'trainer.batch_size=[1': no viable alternative at "
                              "input '[1' (the syntax: https://hydra.cc/docs/advanced/override_grammar/basic/)."),
])
def test_command_line_mistakes_are_one_line_with_usage_status(tmp_path, override, expected):
    proc = _cli(override, cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln and ln != "TF_NOT_LOADED"]
    assert (proc.returncode, lines) == (2, [expected])
    assert not (tmp_path / "mlruns").exists()


def test_hydra_full_error_still_gives_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    proc = _cli("trainer.epoch=3", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigCompositionException" in proc.stderr
