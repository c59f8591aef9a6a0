"""From a loaded dataset to batched ``tf.data`` streams: subset, validation split, scaling.

The validation split is drawn from the training images with a permutation seeded by ``seed``,
so it is the same in every run with the same seed, and the test set is never touched until
the final evaluation. Images stay uint8 in the cache; scaling and one-hot encoding happen per
batch (vectorised); augmentation lives in the model graph (ocrexp.augment), not here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocrexp.data.base import DigitData


@dataclass(frozen=True)
class Splits:
    """uint8 images and int labels for train/val/test, after limits and the validation split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def split(data: DigitData, validation_split: float, seed: int,
          limit_train: int | None = None, limit_test: int | None = None) -> Splits:
    """Apply the image limits and hold out ``validation_split`` of the training images."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.x_train))
    if limit_train:
        order = order[:limit_train]
    n_val = int(round(len(order) * validation_split))
    if n_val < 1 or n_val >= len(order):
        from ocrexp.errors import ConfigError

        raise ConfigError(
            f"dataset.validation_split={validation_split} leaves {len(order) - n_val} training and "
            f"{n_val} validation images out of {len(order)}; both need at least one."
        )
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    n_test = min(limit_test or len(data.x_test), len(data.x_test))
    return Splits(
        data.x_train[train_idx], data.y_train[train_idx],
        data.x_train[val_idx], data.y_train[val_idx],
        data.x_test[:n_test], data.y_test[:n_test],
    )


class EpochStream:
    """The training batches, in a fresh order each epoch that depends on ``(seed, epoch)`` alone, so
    that a run resumed at epoch e sees exactly the batches an uninterrupted run sees from epoch e:
    the data order has no state to checkpoint. ``begin(epoch)`` (a Keras ``on_epoch_begin`` hook)
    says which epoch the next pass over ``dataset`` is; Keras starts one pass per epoch, after that
    hook. The images stay one uint8 tensor and each batch is gathered from it by index (no per-image
    shuffle buffer)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, num_classes: int, scale: float,
                 seed: int, first_epoch: int = 0):
        import tensorflow as tf

        self.epoch = first_epoch
        images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
        n = len(x)
        plain = tf.autograph.experimental.do_not_convert  # straight-line functions: skip AutoGraph's conversion

        @plain
        def batches(epoch):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int32), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        @plain
        def gather(index):
            batch = tf.cast(tf.gather(images, index), tf.float32) / scale
            return batch, tf.one_hot(tf.gather(labels, index), num_classes)

        # A fixed seed would make every pass alike; the epoch is read when a pass starts.
        current = tf.data.Dataset.from_generator(lambda: iter([self.epoch]),
                                                 output_signature=tf.TensorSpec((), tf.int64))
        passes = current.flat_map(batches).apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
        self.dataset = without_autotune(passes.map(gather, num_parallel_calls=2).prefetch(2))

    def begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch


def make_dataset(x: np.ndarray, y: np.ndarray, *, batch_size: int, num_classes: int, scale: float):
    """A cached, batched, scaled and prefetched ``tf.data.Dataset`` in the images' order (validation)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).cache().batch(batch_size)

    @tf.autograph.experimental.do_not_convert
    def prepare(images, labels):
        images = tf.cast(images, tf.float32) / scale
        return images, tf.one_hot(labels, num_classes)

    return without_autotune(ds.map(prepare, num_parallel_calls=2).prefetch(2))


def without_autotune(ds):
    """``ds`` with tf.data's autotuning off. With it on, dropping an iterator waits out the autotune
    thread's current sleep (doubling from 10 ms), and Keras drops one every epoch and validation pass,
    so every epoch ended on a wait (docs/performance.md). These pipelines are a gather and a cast per
    batch; fixed small buffers keep the model's cores busy."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def scale_images(x: np.ndarray, scale: float) -> np.ndarray:
    """The model's input form of uint8 images (used for predictions, plots and signatures)."""
    return x.astype(np.float32) / np.float32(scale)
