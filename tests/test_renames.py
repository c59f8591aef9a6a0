"""Runs and commands from before the tutorial's recipe was renamed (it was "the seed") still work."""

from __future__ import annotations

import subprocess

import pytest
from omegaconf import OmegaConf

from ocrexp.config import compose
from ocrexp.renames import upgrade
from tests.project import BIN


def old_config_text(*overrides: str) -> str:
    """Today's config for ``overrides`` as an earlier version logged it (seed_cnn, augmentation seed)."""
    text = OmegaConf.to_yaml(compose(*overrides))
    old = text.replace("ocrexp.models.cnn.tutorial_cnn", "ocrexp.models.cnn.seed_cnn").replace(
        "name: tutorial\n", "name: seed\n")
    assert old != text
    return old


def test_upgrade_maps_old_builders_and_option_names():
    logged = OmegaConf.create(old_config_text("augmentation=tutorial"))
    assert logged.model._target_.endswith("seed_cnn") and logged.augmentation.name == "seed"
    assert OmegaConf.to_yaml(upgrade(logged)) == OmegaConf.to_yaml(compose("augmentation=tutorial"))


@pytest.mark.parametrize("old, new", [("experiment=seed_tutorial", "experiment=tutorial"),
                                      ("experiment=seed_augmented", "experiment=tutorial_augmented"),
                                      ("augmentation=seed", "augmentation=tutorial")])
def test_an_old_option_on_the_command_line_names_its_new_name(old, new):
    proc = subprocess.run([str(BIN / "ocrexp-train"), old, "--cfg", "job"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {old} was renamed: use {new}."


@pytest.mark.slow
def test_a_run_logged_under_the_old_names_reproduces(project):
    client = project.client()
    from ocrexp.tracking.store import ensure_store, get_experiment_id

    ensure_store(project.tracking_uri)
    experiment = get_experiment_id(client, "ocrexp")
    old = client.create_run(experiment, run_name="seed-era").info.run_id
    client.log_text(old, old_config_text("debug=fast", "augmentation=tutorial", "tracking.log_model=false",
                                         "run_name=seed-era"), "config.yaml")
    client.set_terminated(old)

    project.run("ocrexp", "reproduce", old)
    (new,) = [r for r in project.runs() if r.data.tags.get("ocrexp.reproduced_from") == old]
    assert new.info.status == "FINISHED"
    assert new.data.params["model._target_"] == "ocrexp.models.cnn.tutorial_cnn"
    assert new.data.params["augmentation.name"] == "tutorial"
    assert 0 < new.data.metrics["test_accuracy"] <= 1
