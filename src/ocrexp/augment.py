"""Training-time augmentation built from ``conf/augmentation/*.yaml``.

A recipe is a list of Keras preprocessing layers (each a ``_target_`` config) applied to float
batches scaled to [0, 1]. The train loop puts the recipe in front of the model inside the training
graph (``ocrexp.fitting``), so it runs on the GPU when there is one and acts only in training steps:
validation, test and the logged model never see it. Every random layer gets a seed derived from the
run's ``seed``, so a run's augmented stream is reproducible.

Besides Keras' own layers, recipes can use two of ours (below): ``RandomAffine``, ImageDataGenerator's
rotation/shift/zoom/shear in its own units with a single interpolation, and ``ElasticDistortion``
(Keras' ``RandomElasticTransform`` draws the same noise for both axes and loops over the batch).
``RandomAffine`` is written in ``keras.ops``, so it runs on any Keras backend; ``ElasticDistortion``
needs TensorFlow and imports it when it runs.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import keras
import numpy as np


def build(layers: Sequence[Any] = (), seed: int | None = None, name: str = "augmentation"):
    """A ``keras.Sequential`` of the configured layers, or None when the recipe is empty.

    Layers that accept a ``seed`` get ``seed + position`` unless the config sets one. The layers
    compute in float32 even under a mixed-precision policy (the model casts after them).
    """
    if not layers:
        return None
    import inspect

    from hydra.utils import instantiate

    built = []
    for i, spec in enumerate(layers):
        kwargs: dict[str, Any] = {"dtype": "float32"}
        target = spec.get("_target_", "") if hasattr(spec, "get") else ""
        if seed is not None and "seed" not in spec:
            cls = _resolve(target)
            if cls is not None and "seed" in inspect.signature(cls).parameters:
                kwargs["seed"] = seed + i
        built.append(instantiate(spec, _convert_="all", **kwargs))  # plain lists for Keras
    return keras.Sequential(built, name=name)


def _resolve(target: str):
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception:  # functions, or a bad path that instantiate() will report clearly
        return None


def preview(recipe, images: np.ndarray, seed: int, rows: int = 3) -> np.ndarray:
    """``rows`` augmented versions of float ``images`` (N, H, W, C): an array (rows, N, H, W, C).

    ``recipe`` is the augmentation config; a fresh instance is built so that drawing the preview
    does not advance the training stream's random state.
    """
    from ocrexp.config import instantiate

    augmentation = instantiate(recipe, seed=seed)
    if augmentation is None:
        return np.repeat(images[None], rows, axis=0)
    return np.stack([np.asarray(augmentation(images, training=True)) for _ in range(rows)])


def _range(value, centre: float = 0.0) -> tuple[float, float]:
    """``x`` -> ``(centre - x, centre + x)``; a pair is taken as given (ImageDataGenerator's convention)."""
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[1])
    return centre - float(value), centre + float(value)


@keras.saving.register_keras_serializable(package="ocrexp")
class RandomAffine(keras.layers.Layer):
    """ImageDataGenerator's random affine transform, as one resampling of the batch.

    Parameters mean what ``ImageDataGenerator`` means by them: ``rotation_range`` in degrees (uniform
    in ±range), ``width_shift_range``/``height_shift_range`` as fractions of the width/height,
    ``zoom_range`` z giving independent horizontal and vertical zooms in [1 - z, 1 + z] (or a pair
    [lo, hi]; above 1 zooms out), ``shear_range`` in degrees. Rotation, shear, zoom and shift are
    composed about the image centre and applied with one bilinear interpolation (stacking Keras'
    RandomRotation, RandomTranslation and RandomZoom interpolates three times and blurs the digits).
    Uncovered pixels read ``fill_value``. Only active when ``training``.
    """

    def __init__(self, rotation_range: float = 0.0, width_shift_range: float = 0.0, height_shift_range: float = 0.0,
                 zoom_range: Any = 0.0, shear_range: float = 0.0, fill_value: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation_range, self.shear_range = float(rotation_range), float(shear_range)
        self.width_shift_range, self.height_shift_range = float(width_shift_range), float(height_shift_range)
        self.zoom_range = list(_range(zoom_range, 1.0))
        self.fill_value, self.seed = float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n, bounds: tuple[float, float]):
        return keras.random.uniform((n,), bounds[0], bounds[1], seed=self.seed_generator)

    def call(self, images, training=True):
        if not training:
            return images
        ops = keras.ops  # backend-neutral: the same layer trains under TensorFlow, JAX or PyTorch
        images = ops.convert_to_tensor(images)
        n = ops.shape(images)[0]
        h, w = float(images.shape[1]), float(images.shape[2])
        theta = self._uniform(n, _range(self.rotation_range)) * (math.pi / 180)
        shear = self._uniform(n, _range(self.shear_range)) * (math.pi / 180)
        tx = self._uniform(n, _range(self.width_shift_range)) * w
        ty = self._uniform(n, _range(self.height_shift_range)) * h
        zx, zy = self._uniform(n, tuple(self.zoom_range)), self._uniform(n, tuple(self.zoom_range))
        # Output pixel p reads input pixel M (p - c) + c + t, with M = rotation . shear . zoom.
        cos, sin = ops.cos(theta), ops.sin(theta)
        m00, m01 = cos * zx, (-sin * ops.cos(shear) - cos * ops.sin(shear)) * zy
        m10, m11 = sin * zx, (cos * ops.cos(shear) - sin * ops.sin(shear)) * zy
        cx, cy = (w - 1) / 2, (h - 1) / 2
        ox = cx - m00 * cx - m01 * cy + tx
        oy = cy - m10 * cx - m11 * cy + ty
        zeros = ops.zeros_like(theta)
        transforms = ops.stack([m00, m01, ox, m10, m11, oy, zeros, zeros], axis=1)
        out = ops.image.affine_transform(ops.cast(images, "float32"), transforms, interpolation="bilinear",
                                         fill_mode="constant", fill_value=self.fill_value)
        return ops.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rotation_range": self.rotation_range, "shear_range": self.shear_range,
                "width_shift_range": self.width_shift_range, "height_shift_range": self.height_shift_range,
                "zoom_range": self.zoom_range, "fill_value": self.fill_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package="ocrexp")
class ElasticDistortion(keras.layers.Layer):
    """Elastic distortion (Simard, Steinkraus & Platt, 2003), batched, on channels-last images.

    Every pixel gets a random displacement, uniform in [-1, 1] per axis; the field is smoothed with a
    Gaussian of standard deviation ``sigma`` pixels and scaled by ``alpha``; the image is resampled
    bilinearly at the displaced positions, reading ``fill_value`` outside it. ``rate`` is the fraction
    of images distorted. Only active when ``training``.
    """

    def __init__(self, alpha: float = 34.0, sigma: float = 4.0, rate: float = 1.0, fill_value: float = 0.0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.rate = float(alpha), float(sigma), float(rate)
        self.fill_value, self.seed = float(fill_value), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = max(1, int(math.ceil(2 * self.sigma)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        self._taps = (taps / taps.sum()).astype(np.float32)

    def call(self, images, training=True):
        if not training:
            return images
        import tensorflow as tf

        images = tf.convert_to_tensor(images)
        b, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
        field = keras.random.uniform(tf.stack([b, h, w, 2]), -1.0, 1.0, seed=self.seed_generator)
        taps = tf.constant(self._taps)
        along_x = tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, 2, 1])
        along_y = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, 2, 1])
        field = tf.nn.depthwise_conv2d(field, along_x, [1, 1, 1, 1], "SAME")
        field = tf.nn.depthwise_conv2d(field, along_y, [1, 1, 1, 1], "SAME") * self.alpha
        if self.rate < 1.0:
            chosen = keras.random.uniform(tf.reshape(b, [1]), seed=self.seed_generator) < self.rate
            field = field * tf.cast(chosen, field.dtype)[:, None, None, None]
        rows, cols = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
        out = _bilinear(tf.cast(images, tf.float32), rows + field[..., 0], cols + field[..., 1], self.fill_value)
        return tf.cast(out, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "rate": self.rate,
                "fill_value": self.fill_value, "seed": self.seed}


def _bilinear(images, y, x, fill_value: float):
    """Sample ``images`` (B, H, W, C) at float positions ``y``, ``x`` (B, H, W)."""
    import tensorflow as tf

    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    # One ring of fill_value around the image: neighbours outside it read the fill.
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=fill_value)
    flat = tf.reshape(padded, tf.stack([b, -1, c]))
    y = tf.clip_by_value(y, -1.0, tf.cast(h, tf.float32))
    x = tf.clip_by_value(x, -1.0, tf.cast(w, tf.float32))
    y0, x0 = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32) + 1, tf.cast(x0, tf.int32) + 1
    y1, x1 = tf.minimum(y0 + 1, h + 1), tf.minimum(x0 + 1, w + 1)

    def at(yi, xi):
        index = tf.reshape(yi * (w + 2) + xi, tf.stack([b, -1]))
        return tf.reshape(tf.gather(flat, index, batch_dims=1), shape)

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy
