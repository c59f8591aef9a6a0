"""``ocrexp-eval``: evaluate a logged model on a dataset's test split, or on generated numbers.

    ocrexp-eval model_uri=runs:/<run_id>/model                # MNIST test set
    ocrexp-eval model_uri=models:/digits/3 dataset=mnist dataset.limit_test=1000
    ocrexp-eval model_uri=models:/digits@champion           # a registered model's alias
    ocrexp-eval model_uri=runs:/<run_id>/model mode=read     # 1,000 generated 4-digit numbers

It records a new MLflow run tagged with (and linking to) the run that produced the model, holding
the test metrics and plots (``ocrexp.report``, as training runs do) and the images it scored as the
run's dataset input (context ``evaluation``).
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ocrexp import config, console
from ocrexp.compat.hydra import help_lists_groups_once
from ocrexp.errors import ConfigError, OcrexpError, exit_with_error, interrupted, raise_terminated
from ocrexp.hydra_errors import one_line_errors
from ocrexp.paths import conf_dir

config.register()  # the resolvers the composition below needs
log = logging.getLogger("ocrexp.evaluate")  # not __name__: `python -m ocrexp.evaluate` runs as __main__


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.model_uri`` on ``cfg.dataset``'s test split and record it as a new run."""
    from ocrexp.data.pipeline import scale_images
    from ocrexp.models.io import load_model, source_run_id
    from ocrexp.report import log_report, test_report
    from ocrexp.tracking import make_tracker, start_store_server, tracking_uri
    from ocrexp.tracking.refs import resolve_model_uri

    if OmegaConf.is_missing(cfg, "model_uri"):
        raise ConfigError("ocrexp-eval needs the model to evaluate: add model_uri=runs:/<run>/model (a run's id, "
                          "id prefix or name, as `ocrexp runs` shows), models:/<name>/<version> or a .keras file.")
    start_store_server(cfg)  # before TensorFlow and MLflow load
    # A prefix or run name may name another run tomorrow: the run records the full id.
    cfg.model_uri = resolve_model_uri(str(cfg.model_uri), tracking_uri(cfg.tracking))
    data = config.instantiate(cfg.dataset.source)
    n = min(cfg.dataset.limit_test or len(data.x_test), len(data.x_test))
    x, y = data.x_test[:n], data.y_test[:n]
    model = load_model(cfg.model_uri, tracking_uri(cfg.tracking))
    if tuple(model.input_shape[1:]) != data.input_shape:
        raise OcrexpError(f"model {cfg.model_uri} expects images of shape {tuple(model.input_shape[1:])} "
                          f"but dataset {data.name} has {data.input_shape}.")
    source = source_run_id(cfg.model_uri, tracking_uri(cfg.tracking))
    tags = {"mlflow.source.name": "ocrexp-eval", "ocrexp.model_uri": cfg.model_uri,
            "ocrexp.dataset": data.name, "ocrexp.dataset.checksum": data.checksum}
    if source:
        tags |= {"ocrexp.source_run_id": source,
                 "mlflow.note.content": f"Evaluation of the model from run [{source}](#/runs/{source})."}
    name = cfg.run_name or f"eval-{data.name}" + (f"-{source[:8]}" if source else "")
    with make_tracker(cfg, name, tags) as tracker:
        if cfg.get("mode", "test") == "read":
            tracker.log_evaluation_dataset(data, data.y_test)  # numbers are composed from all test digits
            return _read_numbers(cfg, model, data, tracker)
        tracker.log_evaluation_dataset(data, y)
        report = test_report(model, scale_images(x, cfg.dataset.scale), y, cfg.batch_size)
        log_report(tracker, report, x, data.class_names, cfg.tracking.log_plots)
    log.info(f"test_accuracy={report['test_accuracy']:.4f} test_loss={report['test_loss']:.4f} "
             f"on {n} {data.name} test images" + _run_link(tracker))
    return report


# --- mode=read: reading whole numbers (the logic lives in ocrexp.reading.benchmark) ---


def _read_numbers(cfg: DictConfig, model, data, tracker) -> dict[str, Any]:
    """Number and digit accuracy on ``cfg.read.count`` numbers composed from the test digits."""
    from ocrexp.data.numbers import NumberStyle
    from ocrexp.reading.benchmark import run_read_benchmark

    read = cfg.read
    length = read.length if isinstance(read.length, int) else tuple(read.length)
    metrics = run_read_benchmark(model, count=read.count, length=length, seed=read.seed,
                                 style=NumberStyle(touching=read.touching, noise=read.noise), digits=data,
                                 pixel_scale=cfg.dataset.scale, batch_size=cfg.batch_size, tracker=tracker)
    log.info(f"read_number_accuracy={metrics['read_number_accuracy']:.4f} "
             f"read_digit_accuracy={metrics['read_digit_accuracy']:.4f} on {read.count} generated numbers"
             + _run_link(tracker))
    return metrics


def _run_link(tracker) -> str:
    return f" | MLflow run {tracker.run_id}: {tracker.link}" if tracker.run_id else ""


@hydra.main(config_path=str(conf_dir()), config_name="eval", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> float:
    try:
        report = evaluate(cfg)
        return report.get("test_accuracy", report.get("read_number_accuracy"))
    except OcrexpError as exc:
        exit_with_error(str(exc))


def main() -> None:
    """Console entry point (``ocrexp-eval``)."""
    from ocrexp.shutdown import exit_process
    from ocrexp.tracking import store_process

    console.quiet_libraries()  # before anything imports TensorFlow or MLflow
    store_process.enable()  # this process is the command's own: a store server may fork from it
    signal.signal(signal.SIGTERM, raise_terminated)  # end the MLflow run as KILLED, like Ctrl-C
    try:
        with one_line_errors(), help_lists_groups_once():
            _hydra_main()
    except KeyboardInterrupt as exc:  # one line, not a traceback
        message, status = interrupted(exc, training=False)
        print(message, file=sys.stderr)
        exit_process(status)
    exit_process(0)  # the evaluation is recorded: skip Python's slow teardown of TensorFlow's modules


if __name__ == "__main__":
    main()
