"""Optimizers, learning-rate schedules, early stopping and best-epoch selection."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ocrexp import config
from ocrexp.config import compose
from ocrexp.errors import ConfigError
from tests.training import fit, traced_functions, val_metrics


@pytest.mark.parametrize("name, cls, settings", [
    ("adam", keras.optimizers.Adam, {}),
    ("sgd", keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adamw", keras.optimizers.AdamW, {"weight_decay": 1e-4}),
    ("rmsprop", keras.optimizers.RMSprop, {"rho": 0.9}),
])
def test_each_optimizer_config_builds_its_keras_optimizer_with_its_settings(name, cls, settings):
    cfg = compose(f"optimizer={name}")
    optimizer = config.instantiate(cfg.optimizer, steps_per_epoch=10, epochs=2)
    assert type(optimizer) is cls
    assert float(optimizer.learning_rate) == pytest.approx(cfg.optimizer.lr)
    for key, value in settings.items():
        assert getattr(optimizer, key) == pytest.approx(value), key


def lr_curve(schedule: str, *overrides: str, lr: float = 1e-3, steps: int = 10, epochs: int = 10):
    """The learning rate at every step of a phase, and the schedule's callbacks."""
    cfg = compose(f"schedule={schedule}", *overrides)
    plan = config.instantiate(cfg.schedule, lr=lr, steps_per_epoch=steps, epochs=epochs)
    rate = plan.learning_rate
    values = [float(rate(s)) if callable(rate) else float(rate) for s in range(steps * epochs + 1)]
    return np.array(values), plan.callbacks


def test_constant_schedule_keeps_the_base_rate():
    curve, callbacks = lr_curve("constant")
    assert np.allclose(curve, 1e-3) and callbacks == []


def test_cosine_decays_from_the_base_rate_to_its_final_fraction():
    curve, _ = lr_curve("cosine", "schedule.final_lr_fraction=0.1")
    assert curve[0] == pytest.approx(1e-3) and curve[-1] == pytest.approx(1e-4, rel=1e-3)
    assert curve[50] == pytest.approx(1e-4 + 0.9e-3 * 0.5, rel=1e-3)  # half-way down the cosine
    assert np.all(np.diff(curve) <= 1e-12)


def test_warmup_cosine_rises_linearly_then_decays():
    curve, _ = lr_curve("warmup_cosine", "schedule.warmup_epochs=2")
    assert curve[0] == pytest.approx(0.0) and curve[10] == pytest.approx(5e-4, rel=1e-3)
    assert curve[20] == pytest.approx(1e-3, rel=1e-3) and curve.argmax() == 20
    assert np.all(np.diff(curve[20:]) <= 1e-12) and curve[-1] == pytest.approx(0.0, abs=1e-9)


def test_one_cycle_ramps_to_its_peak_and_anneals_far_below_the_start():
    curve, _ = lr_curve("one_cycle")
    assert curve[0] == pytest.approx(1e-3 / 25, rel=1e-3)
    assert curve.argmax() == 30 and curve.max() == pytest.approx(1e-3, rel=1e-3)
    assert curve[-1] == pytest.approx(1e-3 / 1e4, rel=1e-2)
    assert np.all(np.diff(curve[:31]) >= -1e-12) and np.all(np.diff(curve[30:]) <= 1e-12)


def test_plateau_multiplies_the_rate_after_patience_epochs_without_improvement():
    curve, (callback,) = lr_curve("plateau", "schedule.patience=1", "schedule.factor=0.5")
    assert np.allclose(curve, 1e-3)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, val_loss in enumerate([1.0, 0.5, 0.6, 0.7]):  # improves, then stalls for 2 epochs
        callback.on_epoch_end(epoch, {"val_loss": val_loss})
    assert float(model.optimizer.learning_rate) == pytest.approx(2.5e-4)


@pytest.mark.parametrize("override", ["optimizer=sgd optimizer.momentum=1.0", "optimizer=adamw optimizer.weight_decay=-1",
                                      "schedule=one_cycle schedule.warmup_fraction=0", "schedule=plateau schedule.factor=1.5",
                                      "schedule=plateau schedule.monitor=val_f1", "trainer.early_stopping.patience=-1",
                                      "trainer.checkpoint.monitor=accuracy", "optimizer.name=lbfgs"])
def test_out_of_range_training_options_name_the_key(override):
    key = override.split()[-1].split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config.validate(compose(*override.split()))


@pytest.mark.slow
def test_best_checkpoint_restores_the_weights_of_the_best_validation_epoch():
    fitted = fit("trainer.epochs=3", "trainer.checkpoint.monitor=val_loss", "optimizer.lr=0.01")
    history = fitted.history["val_loss"]
    best = int(np.argmin(history))
    assert val_metrics(fitted)["loss"] == pytest.approx(history[best], rel=1e-4)


@pytest.mark.slow
def test_early_stopping_stops_and_goes_back_to_the_best_epoch():
    # Improving by 10 nats is impossible: the run stops after the second epoch, back at the first.
    fitted = fit("trainer.epochs=5", "trainer.early_stopping.patience=0", "trainer.early_stopping.min_delta=10")
    assert len(fitted.history["loss"]) == 2
    assert val_metrics(fitted)["loss"] == pytest.approx(fitted.history["val_loss"][0], rel=1e-4)


def test_label_smoothing_and_a_fresh_optimizer_reach_the_compiled_model():
    from ocrexp import fitting
    from ocrexp.callbacks import current_lr

    cfg = compose("trainer.label_smoothing=0.1", "optimizer=sgd", "schedule=cosine")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    trainee = fitting.training_model(model)
    plan = config.instantiate(cfg.schedule, lr=0.01, steps_per_epoch=5, epochs=2)
    fitting.compile_trainee(trainee, cfg, plan.learning_rate, 5, 2)
    assert trainee.loss.label_smoothing == pytest.approx(0.1)
    assert isinstance(trainee.optimizer, keras.optimizers.SGD)
    assert current_lr(trainee.optimizer) == pytest.approx(0.01)  # cosine at step 0
    assert not model.compiled  # the model that gets logged carries no optimizer state


def test_a_fit_traces_its_train_step_once_since_its_variables_exist_before_it():
    """A ``tf.function`` whose first trace creates variables (the optimizer's, the metrics') is traced
    again; ``ocrexp.compat.keras.build_before_fit`` creates them first, so the train function is traced once."""
    with traced_functions() as traced:
        fitted = fit("trainer.epochs=1", "dataset.limit_train=400", "trainer.verbose=0")
    assert fitted.history["loss"]
    # The train step and the validation step, once each (the train step was traced twice before).
    assert traced.count("one_step_on_data") == 2, traced
