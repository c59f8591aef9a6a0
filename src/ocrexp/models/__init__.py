"""Model architectures (one module per family) and how a run's model is built from ``cfg.model``.

A model config is a ``_target_`` builder with its architecture arguments, plus keys every model
shares, which the builder never sees:

- ``init_from``: start from an earlier model instead of building a fresh one (``models.transfer``);
- ``freeze_features``: train only the classification layer;
- ``whiten`` (``cnn`` and ``cnn_bn``; not VGG16, whose first layer is pretrained): fix the first
  convolution to whiten the training images' patches (``models.whitening``, applied by
  ``train.prepare``, which has the images);
- ``fine_tune``: an optional second phase (``ocrexp.fitting``).
"""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig, OmegaConf

SHARED_KEYS = ("init_from", "freeze_features", "fine_tune", "whiten")


def build_model(model_cfg: DictConfig, input_shape: Sequence[int], num_classes: int,
                tracking_uri: str | None = None):
    """The run's Keras model and the tags recording where it started from (empty for a fresh model)."""
    from ocrexp.models import transfer

    uri = model_cfg.get("init_from")
    if uri:
        model, replaced = transfer.init_from(str(uri), input_shape, num_classes,
                                             bool(model_cfg.get("freeze_features")), tracking_uri)
        return model, transfer.provenance_tags(str(uri), replaced, tracking_uri)

    from ocrexp.config import instantiate

    architecture = OmegaConf.masked_copy(model_cfg, [k for k in model_cfg if k not in SHARED_KEYS])
    model = instantiate(architecture, input_shape=list(input_shape), num_classes=num_classes, _convert_="all")
    if model_cfg.get("freeze_features"):
        transfer.freeze_features(model)
    return model, {}
