"""A first convolution that whitens image patches instead of learning (``model.whiten=true``).

Its filters are set once, before training, from the training images: the leading eigenvectors of the
covariance of the patches it sees (its kernel size and stride, after any layer before it such as
cropping), each scaled by 1/sqrt(eigenvalue + eps) so that its output has unit variance, and each
twice, with both signs, so that the ReLU after it passes either half. Its bias centres the patches.
The layer is then frozen: backpropagation stops at the second convolution, which saves the first
layer's filter gradient and the gradient of its output, the costliest op of a small CNN's step. The
idea comes from the CIFAR-10 speedruns (hlb-CIFAR10, airbench).
"""

from __future__ import annotations

import numpy as np

from ocrexp.errors import ConfigError

# Training images the patch statistics come from: more than this gave the speedrun no better accuracy
# for several times the time (docs/performance.md).
SAMPLE = 16_000
EPS = 5e-4  # keeps the faint directions (the blank frame's) from being scaled up without bound
_CHUNK = 500


def first_conv(model):
    """The model's first ``Conv2D`` and the layers before it (in order)."""
    import keras

    before = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer, before
        if not isinstance(layer, keras.layers.InputLayer):  # a functional model lists its input first
            before.append(layer)
    raise ConfigError(f"model.whiten=true needs a model that starts with a convolution; {model.name} has none.")


def patch_whitening(images: np.ndarray, kernel_size: tuple[int, int], strides: tuple[int, int],
                    filters: int, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """(kernel of shape (kh, kw, channels, filters), bias of shape (filters,)) whitening the
    ``kernel_size`` patches at ``strides`` of ``images`` (N, H, W, C floats)."""
    (kh, kw), (sh, sw), channels = kernel_size, strides, images.shape[-1]
    size = kh * kw * channels
    if filters % 2:
        raise ConfigError(f"model.whiten=true needs an even number of filters in the first convolution "
                          f"(they come in pairs of opposite sign); it has {filters}.")
    if filters > 2 * size:
        raise ConfigError(f"model.whiten=true gives at most {2 * size} first-layer filters for "
                          f"{kh}x{kw} patches of {channels} channel(s); the model asks for {filters}.")
    total, outer, count = np.zeros(size), np.zeros((size, size)), 0
    for start in range(0, len(images), _CHUNK):  # chunks: every patch at once would be ~150 bytes per pixel
        windows = np.lib.stride_tricks.sliding_window_view(images[start:start + _CHUNK], (kh, kw), axis=(1, 2))
        patches = windows[:, ::sh, ::sw].transpose(0, 1, 2, 4, 5, 3).reshape(-1, size)
        total += patches.sum(0, dtype=np.float64)
        outer += patches.T @ patches  # float32 within a chunk, float64 across chunks
        count += len(patches)
    mean = total / count
    eigenvalues, eigenvectors = np.linalg.eigh(outer / count - np.outer(mean, mean))
    top = np.argsort(eigenvalues)[::-1][:filters // 2]
    scaled = eigenvectors[:, top] / np.sqrt(np.maximum(eigenvalues[top], 0) + eps)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(kh, kw, channels, filters).astype(np.float32), (-(mean @ kernel)).astype(np.float32)


def whiten_first_conv(model, images: np.ndarray, scale: float) -> None:
    """Set ``model``'s first convolution to whiten the patches of ``images`` (the training images, as
    stored: uint8, scaled by ``scale`` here) and freeze it."""
    conv, before = first_conv(model)
    x = images[:SAMPLE].astype(np.float32) / scale
    x = x if x.ndim == 4 else x[..., None]
    for layer in before:  # e.g. the cropping the convolution sees the images through
        x = np.asarray(layer(x))
    kernel, bias = patch_whitening(x, conv.kernel_size, conv.strides, conv.filters)
    conv.kernel.assign(kernel)
    if conv.use_bias:
        conv.bias.assign(bias)
    conv.trainable = False
