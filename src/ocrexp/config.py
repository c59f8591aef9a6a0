"""The config schema and resolvers (``register()`` puts them in Hydra), and range checks.

Importing this module is cheap (no TensorFlow, no MLflow): the entry points call ``register()``
before Hydra composes, so that type errors and out-of-range values are reported before anything
heavy starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Iterator, NamedTuple, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

from ocrexp import paths
from ocrexp.errors import ConfigError, OcrexpError

LOSSES = {"categorical_crossentropy": "CategoricalCrossentropy",
          "categorical_focal_crossentropy": "CategoricalFocalCrossentropy"}
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "params")
# What early stopping, reduce-on-plateau and best-epoch selection may watch.
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")
# models.cnn.tutorial_cnn's first blocks: the tutorial's Conv-MaxPool, or one strided Conv. Kept here,
# with the other accepted values, so that checking a config needs none of the model code.
STEMS = ("pool", "strided")


def monitor_mode(monitor: str) -> str:
    """Whether higher (``"max"``: accuracies) or lower (``"min"``: losses) values of a metric are better."""
    return "max" if "acc" in monitor else "min"


class Resume(Enum):
    auto = "auto"
    never = "never"


class Device(Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


@dataclass
class PathsConf:
    root_dir: str = "${ocrexp_root:}"
    data_dir: str = "${ocrexp_data_dir:}"
    checkpoint_dir: str = "${paths.root_dir}/checkpoints"


@dataclass
class DatasetConf:
    name: str = "???"
    source: Any = "???"
    validation_split: float = 0.2
    scale: float = 255.0
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None


@dataclass
class EarlyStoppingConf:
    patience: Optional[int] = None
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass
class CheckpointConf:
    monitor: Optional[str] = None


@dataclass
class TrainerConf:
    epochs: int = 10
    batch_size: int = 64
    device: Device = Device.auto
    mixed_precision: Any = False  # true, false or auto (validate)
    deterministic: bool = False
    jit_compile: bool = False
    loss: str = "categorical_crossentropy"
    label_smoothing: float = 0.0
    early_stopping: EarlyStoppingConf = field(default_factory=EarlyStoppingConf)
    checkpoint: CheckpointConf = field(default_factory=CheckpointConf)
    verbose: Any = "auto"
    steps_per_execution: int = 16
    eval_batch_size: int = 1024
    strategy: Optional[str] = None
    cpu_replicas: Optional[int] = None
    resume: Resume = Resume.auto
    keep_checkpoint: bool = False


@dataclass
class TrackingConf:
    enabled: bool = True
    uri: Optional[str] = None
    experiment_name: str = "ocrexp"
    log_model: bool = True
    log_plots: bool = True
    register_as: Optional[str] = None


@dataclass
class OcrexpConf:
    paths: PathsConf = field(default_factory=PathsConf)
    dataset: DatasetConf = field(default_factory=DatasetConf)
    model: Any = "???"
    augmentation: Any = "???"
    optimizer: Any = "???"
    schedule: Any = "???"
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


def compose(*overrides: str, hydra: bool = False) -> DictConfig:
    """The config ``ocrexp-train`` composes from these overrides (with ``hydra``: its ``hydra`` node too),
    for scripts and tests that build parts of a run without the command line."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=hydra)


class _Leaf(NamedTuple):
    """One value of a config: its dotted key, the name of the setting it belongs to, and whether
    it is an item of that setting (in a list, or under a numeric dict key) or the setting itself."""

    key: str
    name: str
    value: Any
    item: bool


def _walk(node: Any, prefix: str = "", name: str = "", item: bool = False) -> Iterator[_Leaf]:
    """Yield every leaf of a config. Items belong to their setting: the items of ``model.filters``
    are named ``filters`` (not ``0``, ``1``...), so a rule keyed on a setting's name checks each
    of them. A dict's values are named by their keys, unless the keys are numbers (``{5: 0.1}``).
    Values are as written: interpolations are not resolved, a missing value is ``"???"``."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            index = isinstance(key, int)
            yield from _walk(value, f"{prefix}{key}.", name if index else str(key), item or index)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{prefix}{i}.", name, True)
    else:
        yield _Leaf(prefix[:-1], name, node, item)


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
    _check(isinstance(t.mixed_precision, bool) or t.mixed_precision == "auto", "trainer.mixed_precision",
           t.mixed_precision, "use true, false or auto")
    _check(t.steps_per_execution > 0, "trainer.steps_per_execution", t.steps_per_execution,
           "use a positive number of steps")
    _check(t.eval_batch_size > 0, "trainer.eval_batch_size", t.eval_batch_size, "use a positive batch size")
    _check(t.strategy in (None, "mirrored"), "trainer.strategy", t.strategy,
           "use mirrored (data-parallel over the visible GPUs) or null (one device)")
    _check(t.cpu_replicas is None or (_count(t.cpu_replicas) and t.strategy == "mirrored"), "trainer.cpu_replicas",
           t.cpu_replicas, "use a positive number of CPU devices together with trainer.strategy=mirrored, or null")
    d = cfg.dataset
    _check(0 < d.validation_split < 1, "dataset.validation_split", d.validation_split, "use a fraction in (0, 1)")
    _check(d.scale > 0, "dataset.scale", d.scale, "use a positive divisor such as 255")
    for key in ("limit_train", "limit_test"):
        v = d[key]
        _check(v is None or v > 0, f"dataset.{key}", v, "use a positive count or null for all images")
    for key, setting, value, item in _walk(cfg.model, "model."):
        if setting == "dropout" or setting.endswith("_dropout"):
            _check(_number(value) and 0 <= value < 1, key, value, "use a rate in [0, 1)")
        elif setting.endswith(("filters", "units")) and (item or value is not None):  # null: no such layer
            _check(_count(value), key, value, "use a positive integer")
        elif setting == "stem":
            _check(value in STEMS, key, value, "choose " + " or ".join(STEMS))
        elif setting == "crop":
            _check(type(value) is int and value >= 0, key, value, "use 0 or a positive number of pixels")
    lr = cfg.optimizer.get("lr")
    _check(_positive(lr), "optimizer.lr", lr, "use a positive learning rate such as 1e-3")
    _validate_training(cfg)
    metrics = cfg.optimized_metric
    names = list(metrics) if isinstance(metrics, ListConfig) else [metrics]
    for name in names:
        _check(name in METRICS, "optimized_metric", name, f"choose from {', '.join(METRICS)}")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# Range rules for optimizer and schedule settings, by setting name: (test, what is allowed). A
# list-valued setting has each of its items checked.
_RANGES = {
    "momentum": (lambda v: _number(v) and 0 <= v < 1, "use a value in [0, 1)"),
    "rho": (lambda v: _number(v) and 0 < v < 1, "use a value in (0, 1)"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "use a non-negative decay such as 1e-4"),
    "nesterov": (lambda v: isinstance(v, bool), "use true or false"),
    "final_lr_fraction": (lambda v: _number(v) and 0 <= v <= 1, "use a fraction in [0, 1]"),
    "warmup_epochs": (lambda v: _number(v) and v >= 0, "use a non-negative number of epochs"),
    "warmup_fraction": (lambda v: _number(v) and 0 < v < 1, "use a fraction in (0, 1)"),
    "initial_div": (lambda v: _number(v) and v >= 1, "use a divisor of at least 1"),
    "final_div": (lambda v: _number(v) and v >= 1, "use a divisor of at least 1"),
    "factor": (lambda v: _number(v) and 0 < v < 1, "use a multiplier in (0, 1)"),
    "patience": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "use a whole number of epochs"),
    "min_lr": (lambda v: _number(v) and v >= 0, "use a non-negative learning rate"),
    "monitor": (lambda v: v in MONITORS, f"choose from {', '.join(MONITORS)}"),
}


def _validate_training(cfg: DictConfig) -> None:
    """Optimizer, schedule, early stopping, best-epoch selection, model transfer options, augmentation."""
    from ocrexp.optim import OPTIMIZERS  # light: no TensorFlow at import

    name = cfg.optimizer.get("name")
    _check(name in OPTIMIZERS, "optimizer.name", name, f"choose from {', '.join(OPTIMIZERS)}")
    for group in ("optimizer", "schedule"):
        for key, setting, value, _ in _walk(cfg[group], f"{group}."):
            rule = _RANGES.get(setting)
            if rule is not None:
                _check(rule[0](value), key, value, rule[1])
    es = cfg.trainer.early_stopping
    _check(es.patience is None or es.patience >= 0, "trainer.early_stopping.patience", es.patience,
           "use a whole number of epochs, or null to never stop early")
    _check(es.monitor in MONITORS, "trainer.early_stopping.monitor", es.monitor, f"choose from {', '.join(MONITORS)}")
    _check(es.min_delta >= 0, "trainer.early_stopping.min_delta", es.min_delta, "use a non-negative change")
    monitor = cfg.trainer.checkpoint.monitor
    _check(monitor in (None, "val_accuracy", "val_loss"), "trainer.checkpoint.monitor", monitor,
           "choose val_accuracy, val_loss or null (keep the last epoch)")
    _validate_model(cfg.model)
    layers = cfg.augmentation.get("layers")
    _check(isinstance(layers, ListConfig) and all(isinstance(x, DictConfig) and "_target_" in x for x in layers),
           "augmentation.layers", layers, "use a list of layer configs, each with a _target_")


def _validate_model(model: DictConfig) -> None:
    """The keys every model shares (init_from, freeze_features, fine_tune) and VGG16's weights."""
    uri = model.get("init_from")
    is_file = isinstance(uri, str) and not uri.startswith(("runs:/", "models:/"))
    if is_file and uri.endswith((".keras", ".h5")) and not os.path.isfile(uri):
        raise ConfigError(f"model.init_from={uri!r} does not exist: write it from a run with "
                          f"'ocrexp export RUN_ID {uri}', or pass model.init_from=runs:/<run_id>/model.")
    _check(uri is None or (isinstance(uri, str) and (not is_file or uri.endswith((".keras", ".h5")))),
           "model.init_from", uri, "use runs:/<run_id>/model, models:/<name>/<version>, a .keras or .h5 file, or null")
    freeze = model.get("freeze_features", False)
    _check(isinstance(freeze, bool), "model.freeze_features", freeze, "use true or false")
    whiten = model.get("whiten", False)
    _check(isinstance(whiten, bool), "model.whiten", whiten, "use true or false")
    if whiten and uri:
        raise ConfigError("model.whiten=true sets up a freshly built model's first layer; drop it or model.init_from.")
    first = model.get("conv1_filters")
    if whiten and isinstance(first, int) and first % 2:  # the builder-independent check is in models.whitening
        raise ConfigError(f"model.whiten=true needs an even number of filters in the first convolution "
                          f"(they come in pairs of opposite sign); model.conv1_filters is {first}.")
    if "weights" in model:
        w = model.weights
        _check(w is None or w == "imagenet" or (isinstance(w, str) and os.path.isfile(os.path.expanduser(w))),
               "model.weights", w, "use imagenet, null, or the path of an existing weights file")
    fine_tune = model.get("fine_tune")
    if fine_tune is None:
        return
    _check(isinstance(fine_tune, DictConfig) and set(fine_tune) <= {"unfreeze_from", "epochs", "lr"}
           and "epochs" in fine_tune and "lr" in fine_tune, "model.fine_tune", fine_tune,
           "use null or {unfreeze_from: <layer name or prefix, null for all>, epochs: N, lr: X}")
    epochs = fine_tune.epochs
    _check(isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0, "model.fine_tune.epochs",
           epochs, "use a positive number of epochs")
    _check(_positive(fine_tune.lr), "model.fine_tune.lr", fine_tune.lr, "use a positive learning rate such as 1e-5")
    start = fine_tune.get("unfreeze_from")
    _check(start is None or isinstance(start, str), "model.fine_tune.unfreeze_from", start,
           "use a layer name (or name prefix such as block5), or null to unfreeze every layer")


def instantiate(node: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, except that an ``OcrexpError`` raised while building comes out as
    itself: Hydra wraps every error in an ``InstantiationException``, hiding the one-sentence message."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, OcrexpError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def optimized_metrics(cfg: DictConfig) -> list[str]:
    """The metric names the task returns, in order."""
    m = cfg.optimized_metric
    return list(m) if isinstance(m, ListConfig) else [m]


def plain(value: Any) -> Any:
    """``value`` as plain Python that ``json`` can write: OmegaConf containers resolved, mappings as
    dicts with string keys, tuples as lists, numpy scalars as Python numbers, times in ISO 8601.
    Infinities and NaN stay floats (Python's ``json`` reads them back); anything else is returned as is."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if hasattr(value, "item"):  # numpy scalars and 0-d arrays
        return value.item()
    return value
