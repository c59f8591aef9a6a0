"""Every named experiment composes, validates and runs under debug=fast, and documents its result."""

from __future__ import annotations

import re

import pytest

from ocrexp import config
from ocrexp.config import compose
from ocrexp.paths import project_root
from tests.system_packages import require_fashion_mnist
from tests.training import run

EXPERIMENTS_DIR = project_root() / "experiments"
EXPERIMENTS = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
# Experiments whose YAML header states the result measured here.
MEASURED = ("tutorial_augmented", "vgg16_transfer", "fashion_cnn_bn", "digits_finetune", "mnist_best", "speedrun")


@pytest.fixture(scope="module")
def mnist_model_file(tmp_path_factory) -> str:
    """An (untrained) 28x28 gray, 10-class model file for experiments that start from one."""
    from ocrexp.models import build_model

    model, _ = build_model(compose("model=cnn_bn").model, (28, 28, 1), 10)
    path = tmp_path_factory.mktemp("models") / "mnist.keras"
    model.save(path)
    return str(path)


def shrink(name: str, mnist_model_file: str) -> list[str]:
    """debug=fast, plus what keeps the slow parts of an experiment to a few steps."""
    cfg = compose(f"experiment={name}", "tracking=none")
    extra = ["debug=fast", "tracking=none", "trainer.verbose=0"]
    if cfg.model.get("fine_tune"):
        extra.append("model.fine_tune.epochs=1")
    if cfg.model.get("weights", None) == "imagenet":
        extra += ["model.weights=null", "dataset.limit_train=160", "dataset.limit_test=64"]
    if cfg.model.get("init_from"):
        extra.append(f"model.init_from={mnist_model_file}")
    return extra


def test_every_issue_experiment_exists():
    assert set(MEASURED) | {"tutorial"} <= set(EXPERIMENTS)


# The fast path runs the tutorial; the rest train under `slow`.
@pytest.mark.parametrize("name", [n if n == "tutorial" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in EXPERIMENTS])
def test_experiment_composes_and_runs_under_debug_fast(name, mnist_model_file):
    overrides = [f"experiment={name}", *shrink(name, mnist_model_file)]
    cfg = compose(*overrides)
    config.validate(cfg)
    if cfg.dataset.name == "fashion_mnist":
        require_fashion_mnist()
    assert cfg.trainer.epochs == 1 and cfg.dataset.limit_train <= 2000
    result = run(*overrides)
    phases = 1 + (1 if cfg.model.get("fine_tune") else 0)
    assert len(result.history["val_accuracy"]) == phases
    assert 0.0 <= result.report["test_accuracy"] <= 1.0


@pytest.mark.parametrize("name", MEASURED)
def test_experiment_states_the_result_it_gave_here(name):
    text = (EXPERIMENTS_DIR / f"{name}.yaml").read_text()
    assert re.search(r"^# Measured here.*\d+\.\d+ ?%", text, re.M), f"{name}.yaml has no measured result"


def test_readme_describes_every_experiment_with_its_command():
    readme = (EXPERIMENTS_DIR / "README.md").read_text()
    for name in EXPERIMENTS:
        assert any(line.startswith(f"| `{name}` |") for line in readme.splitlines()), f"no row for {name}"
        assert f"experiment={name}" in readme, name
