"""Figures logged with runs: learning curves, confusion matrix, misclassified digits."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

# How run figures are written: zlib's fastest level encodes much faster than the default (figures are
# drawn beside training) for somewhat larger files.
SAVE_KWARGS = {"pil_kwargs": {"compress_level": 1}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _margins(fig, left: float, right: float, bottom: float, top: float, **spacing: float) -> None:
    """Margins in inches. Set, not measured: ``tight_layout`` measures every text by drawing the figure
    once more, a third of a figure's time (every run draws three, sweep trials on the training core)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        **spacing)


def _text_width(labels: Sequence[str], points: float = 10.0) -> float:
    """Roughly how wide the longest of ``labels`` is, in inches (DejaVu Sans averages 0.6 em)."""
    return 0.6 * points / 72 * max((len(label) for label in labels), default=0)


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
    _margins(fig, left=0.65, right=0.15, bottom=0.55, top=0.35, wspace=0.22)
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]):
    """Counts of true (rows) against predicted (columns) classes on the test set."""
    plt = _pyplot()
    k = len(class_names)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(np.log1p(counts), cmap="Blues")
    for i, j in zip(*np.nonzero(counts)):  # empty cells stay blank: the few mistakes stand out
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                color="white" if counts[i, j] > counts.max() / 2 else "black")
    rotate = max(map(len, class_names)) > 2
    ax.set_xticks(range(k), class_names, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"test confusion matrix (accuracy {acc:.4f})")
    names = _text_width(class_names)
    _margins(fig, left=0.45 + names, right=0.15, top=0.35,
             bottom=0.5 + (0.71 * names + 0.1 if rotate else 0.15))
    return fig


def montage(tiles: np.ndarray, cols: int, gap: int = 2, fill: float = 1.0) -> np.ndarray:
    """``tiles`` (N, H, W[, C]) laid out ``cols`` to a row with ``gap`` pixels of ``fill`` between them.

    One image in one axes draws and saves many times faster than a subplot per tile.
    """
    n, h, w = tiles.shape[:3]
    rows = max(1, -(-n // cols))
    shape = (rows * (h + gap) - gap, cols * (w + gap) - gap, *tiles.shape[3:])
    sheet = np.full(shape, fill, dtype=np.float32)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = tile
    return sheet


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray,
                  class_names: Sequence[str], limit: int = 36):
    """A grid of wrongly classified test images with true and predicted labels."""
    plt = _pyplot()
    wrong = np.flatnonzero(y_true != y_pred)
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]  # most confident mistakes first
    cols = 6
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, ax = plt.subplots(figsize=(cols * 1.6, rows * 1.8 + 0.4))
    ax.axis("off")
    fig.suptitle(f"{len(np.flatnonzero(y_true != y_pred))} misclassified test images (most confident first)")
    if len(wrong) == 0:
        return fig
    tiles = images[wrong].astype(np.float32)
    tiles = tiles / max(float(tiles.max()), 1e-6)
    gray = tiles.shape[-1] == 1
    h, w = tiles.shape[1:3]
    gap = max(h, w) // 2  # room for the labels under each digit
    ax.imshow(montage(tiles.squeeze(-1) if gray else tiles, cols, gap, fill=0.0 if gray else 1.0),
              cmap="gray_r" if gray else None, vmin=0, vmax=1)
    for k, i in enumerate(wrong):
        r, c = divmod(k, cols)
        ax.text(c * (w + gap) + w / 2, r * (h + gap) + h + 1, f"true {class_names[y_true[i]]}\n"
                f"pred {class_names[y_pred[i]]} ({confidence[i]:.2f})", ha="center", va="top", fontsize=7)
    _margins(fig, left=0.1, right=0.1, bottom=0.05, top=0.45)
    return fig


def augmentation_grid(originals: np.ndarray, augmented: np.ndarray, recipe: str = "augmentation"):
    """Training images (top row) above augmented versions of each (one row per draw).

    ``originals`` is (N, H, W, C) in [0, 1]; ``augmented`` is (rows, N, H, W, C).
    """
    plt = _pyplot()
    rows, n = augmented.shape[0] + 1, originals.shape[0]
    tiles = np.clip(np.concatenate([originals[None], augmented]), 0, 1).reshape(rows * n, *originals.shape[1:])
    gray = originals.shape[-1] == 1
    h = originals.shape[1]
    fig, ax = plt.subplots(figsize=(n * 1.0, rows * 1.05))
    ax.imshow(montage(tiles.squeeze(-1) if gray else tiles, n, fill=1.0), cmap="gray" if gray else None,
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([(h + 2) * row + h / 2 for row in range(rows)],
                  ["original", *(f"draw {row}" for row in range(1, rows))], fontsize=7)
    fig.suptitle(f"augmentation '{recipe}': training images as the model sees them")
    _margins(fig, left=0.2 + _text_width(["original"], 7), right=0.1, bottom=0.1, top=0.4)
    return fig
