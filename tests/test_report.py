"""The test report's predictions and the figures made of them."""

from __future__ import annotations

import numpy as np
import pytest

from ocrexp import plots
from ocrexp import report as reports

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def _model(policy: str = "float32"):
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu", dtype=policy),
                             keras.layers.Flatten(dtype=policy), keras.layers.Dense(10, activation="softmax")])


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_predictions_are_those_of_keras_predict_bitwise_in_batches_with_a_remainder(policy):
    model = _model(policy)
    x = np.random.default_rng(0).random((23, 28, 28, 1), dtype=np.float32)
    expected = model.predict(x, batch_size=5, verbose=0)
    got = reports.predict(model, x, batch_size=5)
    assert got.dtype == expected.dtype and got.shape == (23, 10)
    np.testing.assert_array_equal(got, expected)


def test_a_mixed_precision_model_loaded_under_a_float32_policy_is_still_predicted_as_keras_does(tmp_path):
    import keras

    model = _model("mixed_bfloat16")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")  # the global policy here is float32
    x = np.random.default_rng(2).random((9, 28, 28, 1), dtype=np.float32)
    assert loaded.layers[0].dtype_policy.compute_dtype == "bfloat16"
    assert not reports._float32(loaded) and reports._float32(_model())
    np.testing.assert_array_equal(reports.predict(loaded, x, 4), loaded.predict(x, batch_size=4, verbose=0))


def test_the_report_scores_the_predictions():
    model = _model()
    x = np.random.default_rng(1).random((12, 28, 28, 1), dtype=np.float32)
    probs = model.predict(x, verbose=0).astype(np.float64)
    y = np.arange(12) % 10
    report = reports.test_report(model, x, y, batch_size=4)
    assert report["test_accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    assert report["test_loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(12), y])))
    np.testing.assert_array_equal(report["y_pred"], probs.argmax(1))


def _sticks_out(fig) -> bool:
    """Whether anything drawn on ``fig`` reaches past its edges (the margins are set, not measured)."""
    import matplotlib.transforms as transforms

    fig.canvas.draw()
    drawn = fig.get_tightbbox(fig.canvas.get_renderer())  # inches, around every artist drawn
    page = transforms.Bbox.from_bounds(0, 0, *fig.get_size_inches())
    return not (page.x0 - 0.01 <= drawn.x0 and drawn.x1 <= page.x1 + 0.01
                and page.y0 - 0.01 <= drawn.y0 and drawn.y1 <= page.y1 + 0.01)


@pytest.mark.parametrize("names", [[str(i) for i in range(10)], FASHION], ids=["digits", "fashion"])
def test_every_label_of_every_figure_lies_inside_it(names):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.2, rng.integers(0, 10, 500), y)
    images = rng.integers(0, 255, (500, 28, 28, 1)).astype(np.uint8)
    figures = {
        "confusion": plots.confusion_matrix(y, y_pred, names),
        "misclassified": plots.misclassified(images, y, y_pred, rng.random(500), names),
        "curves": plots.learning_curves({"loss": [2.5, 0.51, 0.0123], "val_loss": [1.0, 0.6, 0.4],
                                         "accuracy": [0.5, 0.8, 0.99], "val_accuracy": [0.5, 0.7, 0.985]}),
        "augmentation": plots.augmentation_grid(rng.random((12, 28, 28, 1)), rng.random((4, 12, 28, 28, 1))),
    }
    try:
        assert [name for name, fig in figures.items() if _sticks_out(fig)] == []
    finally:
        for fig in figures.values():
            plt.close(fig)


def test_the_confusion_matrix_writes_every_count_but_leaves_empty_cells_blank():
    import matplotlib.pyplot as plt

    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 2, 2, 2, 0])
    fig = plots.confusion_matrix(y, y_pred, ["a", "b", "c"])
    try:
        cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
                 for t in fig.axes[0].texts}
    finally:
        plt.close(fig)
    assert cells == {(0, 0): "2", (0, 1): "1", (1, 1): "2", (2, 2): "3", (2, 0): "1"}
