"""How well a digit model reads whole numbers: accuracy on numbers composed from MNIST test digits.

    metrics = run_read_benchmark(keras_model, count=1000, length=4, seed=0)   # logs to MLflow
    # {"read_number_accuracy": 0.97, "read_digit_accuracy": 0.993, ...}

*Number accuracy* is the fraction of images read exactly. *Digit accuracy* is one minus the
digit error rate: the edit distance between the reading and the truth (a dropped, extra or wrong
digit each cost one), summed over all images, over the number of true digits. An image that
could not be read costs all its digits. *Length accuracy* (right number of digits) isolates
segmentation from classification.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ocrexp.data.numbers import NumberImages, NumberStyle, generate_numbers
from ocrexp.reading.errors import ImageError
from ocrexp.reading.reader import NumberReader

MISREAD_EXAMPLES = 24


@dataclass
class ReadReport:
    """Metrics plus what was read for each image ('' where the image failed)."""

    metrics: dict[str, float]
    predicted: list[str]
    truth: list[str]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions and substitutions each cost one)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def score_readings(predicted: Sequence[str | None], truth: Sequence[str]) -> dict[str, float]:
    """Number, digit and length accuracy of ``predicted`` (``None``: the image failed) against ``truth``."""
    if len(predicted) != len(truth) or not truth:
        raise ValueError(f"{len(predicted)} readings for {len(truth)} true numbers")
    errors = sum(len(t) if p is None else min(edit_distance(p, t), len(t)) for p, t in zip(predicted, truth))
    digits = sum(len(t) for t in truth)
    return {
        "number_accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
        "digit_accuracy": 1.0 - errors / digits,
        "length_accuracy": float(np.mean([p is not None and len(p) == len(t) for p, t in zip(predicted, truth)])),
        "failed": float(sum(p is None for p in predicted)),
    }


def evaluate_reading(reader: NumberReader, numbers: NumberImages) -> ReadReport:
    """Read every image of ``numbers`` (in memory, no files) and score it."""
    start = time.perf_counter()
    results = reader.read(numbers.images)
    seconds = time.perf_counter() - start
    predicted = [None if isinstance(r, ImageError) else r.number for r in results]
    metrics = score_readings(predicted, numbers.labels)
    metrics["ms_per_image"] = 1000.0 * seconds / len(numbers)
    return ReadReport(metrics, [p or "" for p in predicted], list(numbers.labels))


def run_read_benchmark(model, *, count: int = 1000, length: int | tuple[int, int] = 4, seed: int = 0,
                       style: NumberStyle | None = None, digits=None, pixel_scale: float = 255.0,
                       batch_size: int = 256, tracker: Any = None, prefix: str = "read_") -> dict[str, float]:
    """Generate ``count`` numbers from MNIST test digits, read them with ``model``, log and return metrics.

    ``digits`` is a :class:`~ocrexp.data.base.DigitData` (default: MNIST). Metrics, the generator's
    settings and a grid of misread numbers go to ``tracker`` (anything with ``log_metrics``,
    ``log_dict`` and ``log_figure``: ``ocrexp.tracking``'s run tracker, or the ``mlflow`` module),
    else to the active MLflow run if there is one.
    """
    if digits is None:
        from ocrexp.data import mnist

        digits = mnist.load()
    style = style or NumberStyle()
    numbers = generate_numbers(digits.x_test, digits.y_test, count, seed=seed, style=style, length=length,
                               class_names=list(digits.class_names))
    reader = NumberReader(model, class_names=digits.class_names, pixel_scale=pixel_scale, batch_size=batch_size)
    report = evaluate_reading(reader, numbers)
    metrics = {prefix + k: v for k, v in report.metrics.items()}
    sink = tracker if tracker is not None else _active_mlflow_run()
    if sink is not None:
        sink.log_metrics(metrics)
        settings = {"count": count, "length": length, "seed": seed, "dataset": digits.name,
                    "dataset_checksum": digits.checksum, "style": style.__dict__}
        sink.log_dict({"settings": settings, "metrics": metrics, "misread": _misreads(report)},
                      f"{prefix.rstrip('_')}/benchmark.json")
        figure = misread_figure(numbers, report)
        if figure is not None:
            sink.log_figure(figure, f"{prefix.rstrip('_')}/misread.png")
            import matplotlib.pyplot as plt

            plt.close(figure)
    return metrics


def misread_figure(numbers: NumberImages, report: ReadReport, limit: int = MISREAD_EXAMPLES):
    """A grid of misread number images titled ``true -> read`` (None when all were read)."""
    wrong = [i for i, (p, t) in enumerate(zip(report.predicted, report.truth)) if p != t][:limit]
    if not wrong:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 1.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(numbers.images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{report.truth[i]} -> {report.predicted[i] or '(failed)'}", fontsize=9)
    fig.tight_layout()
    return fig


def _misreads(report: ReadReport) -> list[dict[str, Any]]:
    return [{"index": i, "truth": t, "read": p} for i, (p, t) in enumerate(zip(report.predicted, report.truth)) if p != t]


def _active_mlflow_run():
    import sys

    mlflow = sys.modules.get("mlflow")  # no run can be active if MLflow was never imported
    return mlflow if mlflow is not None and mlflow.active_run() is not None else None
