"""Names that changed, so that configs logged under the old ones still run and old commands get a pointer.

The recipe of the Keras tutorial ocrexp grew from was once called "the seed" (``experiment=seed_tutorial``,
``augmentation=seed``, ``seed_cnn``); ``seed`` now means only the random seed. ``ocrexp reproduce`` passes
a logged config through :func:`upgrade`; the command-line error reporter names the new option.
"""

from __future__ import annotations

from omegaconf import DictConfig, ListConfig, OmegaConf

# config group -> {old option: new option}
RENAMED_OPTIONS = {
    "experiment": {"seed_tutorial": "tutorial", "seed_augmented": "tutorial_augmented"},
    "augmentation": {"seed": "tutorial"},
}
# builder paths (``_target_``) logged by earlier runs -> today's
RENAMED_TARGETS = {"ocrexp.models.cnn.seed_cnn": "ocrexp.models.cnn.tutorial_cnn"}


def renamed_option(group: str, option: str) -> str | None:
    """Today's name of ``group=option`` if it was renamed, else None."""
    return RENAMED_OPTIONS.get(group, {}).get(option)


def upgrade(cfg: DictConfig) -> DictConfig:
    """``cfg`` (a logged run's config) with today's builder paths and option names, changed in place."""
    _retarget(cfg)
    augmentation = cfg.get("augmentation")
    if isinstance(augmentation, DictConfig) and augmentation.get("name") in RENAMED_OPTIONS["augmentation"]:
        augmentation.name = RENAMED_OPTIONS["augmentation"][augmentation.name]
    return cfg


def _retarget(node) -> None:
    if isinstance(node, DictConfig):
        if node.get("_target_") in RENAMED_TARGETS:
            node._target_ = RENAMED_TARGETS[node._target_]
        keys = list(node.keys())
    elif isinstance(node, ListConfig):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        # Only nested configs hold builders; reading an interpolation or a missing value would fail.
        if not (OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key)):
            _retarget(node[key])
