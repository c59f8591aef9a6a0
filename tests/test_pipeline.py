"""Validation split, limits and the tf.data stream on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from ocrexp.data.pipeline import EpochStream, make_dataset, split


def test_validation_split_is_deterministic_from_the_seed_and_disjoint(mnist):
    a = split(mnist, 0.2, seed=1, limit_train=5000)
    b = split(mnist, 0.2, seed=1, limit_train=5000)
    c = split(mnist, 0.2, seed=2, limit_train=5000)
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.y_val, c.y_val)
    assert (len(a.x_train), len(a.x_val)) == (4000, 1000)
    train_rows = {r.tobytes() for r in a.x_train.reshape(len(a.x_train), -1)}
    assert not any(r.tobytes() in train_rows for r in a.x_val.reshape(len(a.x_val), -1)[:200])


def test_test_set_is_never_shuffled_or_mixed_in(mnist):
    s = split(mnist, 0.2, seed=3, limit_test=1000)
    assert np.array_equal(s.x_test, mnist.x_test[:1000]) and np.array_equal(s.y_test, mnist.y_test[:1000])
    assert len(s.x_train) + len(s.x_val) == 60000


@pytest.mark.parametrize("training", [True, False], ids=["training stream", "validation dataset"])
def test_streams_are_scaled_one_hot_and_batched(mnist, training):
    s = split(mnist, 0.2, seed=0, limit_train=300)
    common = dict(batch_size=64, num_classes=10, scale=255.0)
    ds = EpochStream(s.x_train, s.y_train, seed=0, **common).dataset if training else \
        make_dataset(s.x_train, s.y_train, **common)
    x, y = next(iter(ds))
    assert x.shape == (64, 28, 28, 1) and x.dtype.name == "float32"
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    assert y.shape == (64, 10) and np.allclose(y.numpy().sum(axis=1), 1)
    assert sum(int(b[0].shape[0]) for b in ds) == len(s.x_train)
    if training:  # Keras knows the epoch's length before the first pass (a progress bar with a total)
        assert int(ds.cardinality()) == -(-len(s.x_train) // 64)


def test_pipelines_run_without_tf_data_autotuning():
    # With autotuning on, dropping an iterator waits out the autotune thread's current sleep (doubling
    # from 10 ms), and Keras drops one every epoch (docs/performance.md).
    x, y = np.zeros((10, 28, 28), np.uint8), np.arange(10) % 10
    stream = EpochStream(x, y, batch_size=4, num_classes=10, scale=255.0, seed=0)
    for ds in (stream.dataset, make_dataset(x, y, batch_size=4, num_classes=10, scale=255.0)):
        assert ds.options().autotune.enabled is False
        assert sum(len(labels) for _, labels in ds) == 10
