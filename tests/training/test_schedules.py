"""WarmupPiecewiseDecay: values, serialization, use in an optimizer."""

import keras
import numpy as np
import pytest

from keras_ssd.training.schedules import WarmupPiecewiseDecay


def lr(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_default_is_the_paper_recipe():
    s = WarmupPiecewiseDecay()
    assert lr(s, 0) == pytest.approx(1e-3)
    assert lr(s, 79999) == pytest.approx(1e-3)
    assert lr(s, 80000) == pytest.approx(1e-4)
    assert lr(s, 99999) == pytest.approx(1e-4)
    assert lr(s, 100000) == pytest.approx(1e-5)
    assert lr(s, 120000) == pytest.approx(1e-5)


def test_linear_warmup_reaches_base_rate():
    s = WarmupPiecewiseDecay(0.01, boundaries=(100,), warmup_steps=10, warmup_factor=0.1)
    assert lr(s, 0) == pytest.approx(0.001)
    assert lr(s, 5) == pytest.approx(0.001 + 0.5 * 0.009)
    assert lr(s, 10) == pytest.approx(0.01)
    assert lr(s, 50) == pytest.approx(0.01)
    assert lr(s, 100) == pytest.approx(0.001)


def test_explicit_factors_override_decay():
    s = WarmupPiecewiseDecay(1.0, boundaries=(2, 4), factors=(1.0, 0.5, 0.2), decay=0.9)
    assert [lr(s, i) for i in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.2, 0.2])
    assert s.stage_factors == [1.0, 0.5, 0.2]


def test_round_trips_through_serialization():
    s = WarmupPiecewiseDecay(2e-3, boundaries=(5, 9), decay=0.5, warmup_steps=3, name="w")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert isinstance(restored, WarmupPiecewiseDecay)
    assert restored.get_config() == s.get_config()
    for step in range(12):
        assert lr(restored, step) == pytest.approx(lr(s, step))


def test_drives_an_optimizer_and_survives_model_save(tmp_path):
    s = WarmupPiecewiseDecay(0.1, boundaries=(3,), decay=0.1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(s), loss="mse")
    x = np.ones((4, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0)  # 4 steps
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, WarmupPiecewiseDecay)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_lr": 0}, "base_lr"),
        ({"boundaries": (10, 5)}, "strictly increasing"),
        ({"boundaries": "ab"}, "boundaries"),
        ({"decay": -1}, "decay"),
        ({"factors": (1, 0.1)}, "len\\(boundaries\\) \\+ 1"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_factor": 0}, "warmup_factor"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WarmupPiecewiseDecay(**kwargs)
