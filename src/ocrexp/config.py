"""The config schema (registered in Hydra's ConfigStore), resolvers, and range checks.

Importing this module is cheap (no TensorFlow, no MLflow): it runs before every composition so
that type errors and out-of-range values are reported before anything heavy starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from ocrexp import paths
from ocrexp.errors import ConfigError

LOSSES = {"categorical_crossentropy": "CategoricalCrossentropy",
          "categorical_focal_crossentropy": "CategoricalFocalCrossentropy"}
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "params")


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


@dataclass
class PathsConf:
    root_dir: str = "${ocrexp_root:}"
    data_dir: str = "${ocrexp_data_dir:}"


@dataclass
class DatasetConf:
    name: str = "???"
    source: Any = "???"
    validation_split: float = 0.2
    scale: float = 255.0
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64
    device: Device = Device.auto
    mixed_precision: bool = False
    deterministic: bool = False
    jit_compile: bool = False
    loss: str = "categorical_crossentropy"
    label_smoothing: float = 0.0
    verbose: Any = "auto"


@dataclass
class TrackingConf:
    enabled: bool = True
    uri: Optional[str] = None
    experiment_name: str = "ocrexp"
    log_model: bool = True
    log_plots: bool = True


@dataclass
class OcrexpConf:
    paths: PathsConf = field(default_factory=PathsConf)
    dataset: DatasetConf = field(default_factory=DatasetConf)
    model: Any = "???"
    augmentation: Any = "???"
    optimizer: Any = "???"
    trainer: TrainerConf = field(default_factory=TrainerConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    seed: int = 42
    optimized_metric: Any = "val_accuracy"
    run_name: Optional[str] = None


def register() -> None:
    """Register the schema and the path resolvers (idempotent)."""
    ConfigStore.instance().store(name="schema", node=OcrexpConf)
    OmegaConf.register_new_resolver("ocrexp_root", lambda: str(paths.project_root()), replace=True)
    OmegaConf.register_new_resolver("ocrexp_data_dir", lambda: str(paths.data_dir()), replace=True)


register()


def _walk(node: Any, prefix: str = ""):
    """Yield (dotted key, value) for every leaf of a config."""
    if isinstance(node, DictConfig):
        for key in node:
            yield from _walk(node._get_node(key), f"{prefix}{key}.")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            yield from _walk(node._get_node(i), f"{prefix}{i}.")
    else:
        yield prefix[:-1], node._value() if hasattr(node, "_value") else node


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}.")


def validate(cfg: DictConfig) -> None:
    """Reject out-of-range values with one sentence naming the key and what is allowed."""
    t = cfg.trainer
    _check(t.epochs > 0, "trainer.epochs", t.epochs, "use a positive number of epochs")
    _check(t.batch_size > 0, "trainer.batch_size", t.batch_size, "use a positive batch size")
    _check(0 <= t.label_smoothing < 1, "trainer.label_smoothing", t.label_smoothing, "use a value in [0, 1)")
    _check(t.loss in LOSSES, "trainer.loss", t.loss, f"choose from {', '.join(LOSSES)}")
    _check(t.verbose in ("auto", 0, 1, 2), "trainer.verbose", t.verbose, "use auto, 0, 1 or 2")
    d = cfg.dataset
    _check(0 < d.validation_split < 1, "dataset.validation_split", d.validation_split, "use a fraction in (0, 1)")
    _check(d.scale > 0, "dataset.scale", d.scale, "use a positive divisor such as 255")
    for key in ("limit_train", "limit_test"):
        v = d[key]
        _check(v is None or v > 0, f"dataset.{key}", v, "use a positive count or null for all images")
    for key, value in _walk(cfg.model, "model."):
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "dropout" or leaf.endswith("_dropout"):
            _check(isinstance(value, (int, float)) and 0 <= value < 1, key, value, "use a rate in [0, 1)")
        elif leaf.endswith(("filters", "units")) and value is not None:
            _check(isinstance(value, int) and value > 0, key, value, "use a positive integer")
    lr = cfg.optimizer.get("lr")
    _check(isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr), "optimizer.lr", lr,
           "use a positive learning rate such as 1e-3")
    metrics = cfg.optimized_metric
    names = list(metrics) if isinstance(metrics, ListConfig) else [metrics]
    for name in names:
        _check(name in METRICS, "optimized_metric", name, f"choose from {', '.join(METRICS)}")


def optimized_metrics(cfg: DictConfig) -> list[str]:
    """The metric names the task returns, in order."""
    m = cfg.optimized_metric
    return list(m) if isinstance(m, ListConfig) else [m]
