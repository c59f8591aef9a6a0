"""``ocrexp-train``: compose a config, build data and model, fit, evaluate, record, return the metric.

    ocrexp-train                                   # the seed tutorial on MNIST
    ocrexp-train trainer.epochs=3 optimizer.lr=1e-3 seed=7
    ocrexp-train experiment=seed_tutorial debug=fast
    ocrexp-train -m trainer.batch_size=64,128

Everything heavy (TensorFlow, MLflow) is imported inside ``train`` so that ``--help``, ``--cfg``
and config errors answer at once.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, Mapping

import hydra
from omegaconf import DictConfig

from ocrexp import config
from ocrexp.cli_errors import exit_with_error, one_line_errors
from ocrexp.errors import OcrexpError
from ocrexp.paths import conf_dir


@dataclass
class RunResult:
    """What one training run produced (``train`` returns only the optimised value)."""

    run_id: str | None
    history: dict[str, list[float]]
    report: dict[str, Any]
    n_params: int


def run_experiment(cfg: DictConfig, tags: Mapping[str, str] | None = None) -> RunResult:
    """Run one experiment described by ``cfg``: data, model, fit, test, record."""
    config.validate(cfg)
    from ocrexp import runtime
    from ocrexp.data.pipeline import split
    from ocrexp.models import build_model
    from ocrexp.tracking import make_tracker
    from ocrexp.tracking_store import tracking_uri

    device = runtime.configure(cfg.trainer, cfg.seed)
    data = config.instantiate(cfg.dataset.source)
    splits = split(data, cfg.dataset.validation_split, cfg.seed, cfg.dataset.limit_train, cfg.dataset.limit_test)
    model, provenance = build_model(cfg.model, data.input_shape, data.num_classes, tracking_uri(cfg.tracking))

    with make_tracker(cfg, run_name(cfg), tags) as tracker:
        tracker.set_tags({"ocrexp.device": device, **provenance})
        tracker.log_dataset(data, splits)
        tracker.log_metrics({"params": model.count_params()})
        history = fit(cfg, model, splits, data.num_classes, tracker)
        report = evaluate_and_log(cfg, model, splits, data.class_names, history, tracker)
    print_summary(report, tracker)
    return RunResult(tracker.run_id, history, report, model.count_params())


def train(cfg: DictConfig, tags: Mapping[str, str] | None = None) -> float | list[float]:
    """Run one experiment and return ``cfg.optimized_metric``'s value(s) for a sweeper."""
    result = run_experiment(cfg, tags)
    return select_metrics(cfg, result.history, result.report, result.n_params)


def fit(cfg: DictConfig, model, splits, num_classes: int, tracker) -> dict[str, list[float]]:
    """Train ``model`` (all phases, see ``ocrexp.fitting``) and return the per-epoch history."""
    from ocrexp import fitting

    return fitting.fit(cfg, model, splits, num_classes, tracker)


def evaluate_and_log(cfg: DictConfig, model, splits, class_names, history, tracker) -> dict[str, Any]:
    """Final test evaluation, plots and the model artifact."""
    from ocrexp.data.pipeline import scale_images
    from ocrexp.evaluate import log_report, test_report

    report = test_report(model, scale_images(splits.x_test, cfg.dataset.scale), splits.y_test, cfg.trainer.batch_size)
    log_report(tracker, report, splits.x_test, class_names, cfg.tracking.log_plots)
    if cfg.tracking.log_plots:
        from ocrexp import plots

        tracker.log_figure(plots.learning_curves(history), "plots/learning_curves.png")
    if cfg.tracking.log_model:
        tracker.log_model(model, scale_images(splits.x_test[:4], cfg.dataset.scale),
                          class_names=list(class_names), pixel_scale=cfg.dataset.scale)
    return report


def select_metrics(cfg: DictConfig, history, report, n_params: int) -> float | list[float]:
    """The value(s) a sweeper optimises: best-over-epochs for validation metrics."""
    available = {
        "val_accuracy": max(history.get("val_accuracy", [float("nan")])),
        "val_loss": min(history.get("val_loss", [float("nan")])),
        "test_accuracy": report["test_accuracy"],
        "test_loss": report["test_loss"],
        "params": float(n_params),
    }
    values = [float(available[name]) for name in config.optimized_metrics(cfg)]
    return values if len(values) > 1 else values[0]


def run_name(cfg: DictConfig) -> str:
    """``run_name`` if set, else ``<model>-<dataset>`` plus the augmentation when there is one."""
    if cfg.get("run_name"):
        return str(cfg.run_name)
    parts = [cfg.model.get("name", "model"), cfg.dataset.name]
    if cfg.augmentation.get("name", "none") != "none":
        parts.append(cfg.augmentation.name)
    return "-".join(str(p) for p in parts)


def print_summary(report: Mapping[str, Any], tracker) -> None:
    line = f"test_accuracy={report['test_accuracy']:.4f} test_loss={report['test_loss']:.4f}"
    if tracker.run_id:
        line += f" | MLflow run {tracker.run_id} in {tracker.uri} (browse: ocrexp ui)"
    print(line, flush=True)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float | list[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return train(cfg)
    except OcrexpError as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failure and goes on
        exit_with_error(str(exc))


def main() -> None:
    """Console entry point (``ocrexp-train``)."""
    signal.signal(signal.SIGTERM, _terminate)  # end the MLflow run as KILLED, like Ctrl-C
    with one_line_errors():
        _hydra_main()


if __name__ == "__main__":
    main()
