"""The test report of a trained model: metrics, per-image predictions and the plots made of them.

Training runs (``ocrexp.train``) and ``ocrexp-eval`` (``ocrexp.evaluate``) both build and log it here.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import numpy as np


def test_report(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """Accuracy, cross-entropy and per-image predictions of ``model`` on scaled images ``x``."""
    outputs = predict(model, x, batch_size)
    probs = np.asarray(outputs, dtype=np.float64)
    y_pred = probs.argmax(axis=1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)
    return {
        "test_accuracy": float(np.mean(y_pred == y)),
        "test_loss": float(-np.mean(np.log(p_true))),
        "y_true": y,
        "y_pred": y_pred,
        "confidence": probs.max(axis=1),
        "outputs": outputs,  # as the model gave them (dtype included): its logged signature's example
    }


def predict(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``model``'s outputs for ``x``, batch by batch, as ``model.predict`` gives them. A float32 model
    is called eagerly (bitwise the same outputs): ``predict`` first traces a function for each new
    model, to use it once, in every run and sweep trial. Mixed precision keeps ``predict``:
    its graph fuses ops that eager calls round to 16 bits one by one, and predictions would change."""
    if len(x) == 0 or not _float32(model):
        return model.predict(x, batch_size=batch_size, verbose=0)
    return np.concatenate([np.asarray(model(x[i:i + batch_size], training=False))
                           for i in range(0, len(x), batch_size)])


def _float32(layer) -> bool:
    """Whether ``layer`` and every layer in it compute in float32 (a model loaded from a file keeps its
    layers' mixed policies under a float32 global policy, so the model's own policy does not say)."""
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "compute_dtype", "float32") != "float32":
        return False
    return all(_float32(inner) for inner in getattr(layer, "layers", ()))


def log_report(tracker, report: Mapping[str, Any], images: np.ndarray, class_names, plots_too: bool) -> None:
    """Test metrics and, optionally, the confusion matrix and misclassified-digit grid."""
    tracker.log_metrics({"test_accuracy": report["test_accuracy"], "test_loss": report["test_loss"]})
    if plots_too:
        from ocrexp import plots

        y, y_pred = report["y_true"], report["y_pred"]
        names = list(class_names)
        tracker.log_figure(partial(plots.confusion_matrix, y, y_pred, names), "plots/confusion_matrix.png")
        wrong = np.flatnonzero(y != y_pred)  # the grid shows the misclassified digits only
        tracker.log_figure(partial(plots.misclassified, images[wrong], y[wrong], y_pred[wrong],
                                   report["confidence"][wrong], names), "plots/misclassified.png")
