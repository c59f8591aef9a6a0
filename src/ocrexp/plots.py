"""Figures logged with runs: learning curves, confusion matrix, misclassified digits."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: Mapping[str, Sequence[float]]):
    """Loss and accuracy per epoch, train against validation."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-o"), ("val_", "--s")):
            values = history.get(prefix + metric)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]):
    """Counts of true (rows) against predicted (columns) classes on the test set."""
    plt = _pyplot()
    k = len(class_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(np.log1p(counts), cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    ax.set_xticks(range(k), class_names, rotation=45 if max(map(len, class_names)) > 2 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"test confusion matrix (accuracy {acc:.4f})")
    fig.tight_layout()
    return fig


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray,
                  class_names: Sequence[str], limit: int = 36):
    """A grid of wrongly classified test images with true and predicted labels."""
    plt = _pyplot()
    wrong = np.flatnonzero(y_true != y_pred)
    wrong = wrong[np.argsort(-confidence[wrong])][:limit]  # most confident mistakes first
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i].squeeze(), cmap="gray_r" if images.shape[-1] == 1 else None)
        ax.set_title(f"true {class_names[y_true[i]]}\npred {class_names[y_pred[i]]} ({confidence[i]:.2f})",
                     fontsize=8)
    fig.suptitle(f"{len(np.flatnonzero(y_true != y_pred))} misclassified test images (most confident first)")
    fig.tight_layout()
    return fig


def augmentation_grid(originals: np.ndarray, augmented: np.ndarray, recipe: str = "augmentation"):
    """Training images (top row) above augmented versions of each (one row per draw).

    ``originals`` is (N, H, W, C) in [0, 1]; ``augmented`` is (rows, N, H, W, C).
    """
    plt = _pyplot()
    rows, n = augmented.shape[0] + 1, originals.shape[0]
    fig, axes = plt.subplots(rows, n, figsize=(n * 1.0, rows * 1.05), squeeze=False)
    gray = originals.shape[-1] == 1
    for col in range(n):
        for row, image in enumerate([originals[col], *augmented[:, col]]):
            ax = axes[row, col]
            ax.imshow(np.clip(image.squeeze(), 0, 1), cmap="gray" if gray else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("original", fontsize=7)
    for row in range(1, rows):
        axes[row, 0].set_ylabel(f"draw {row}", fontsize=7)
    fig.suptitle(f"augmentation '{recipe}': training images as the model sees them")
    fig.tight_layout()
    return fig
