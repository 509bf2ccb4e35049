"""WarmupPiecewiseDecay and WarmupCosineDecay: values, serialization, use in
an optimizer, and files saved while they lived in `keras_ssd.training`."""

import json
import pathlib
import zipfile

import keras
import numpy as np
import pytest

from keras_ssd.schedules import WarmupCosineDecay, WarmupPiecewiseDecay

#: `.keras` files saved by keras-ssd 0.2.0 before the schedules moved from
#: `keras_ssd.training.schedules` to `keras_ssd.schedules`: a Dense model
#: trained 4 steps on ones, with SGD(WarmupPiecewiseDecay(0.1, (3,), 0.1,
#: warmup_steps=2), momentum=0.9) or AdamW(WarmupCosineDecay(0.1, 8,
#: warmup_steps=2, final_factor=0.01), weight_decay=1e-3).
FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


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


# ------------------------------------------------------------ WarmupCosineDecay
def _cosine(**changes):
    # 10 warm-up steps from 0.001, then 100 steps of cosine from 0.01 to 0.001
    kwargs = dict(base_lr=0.01, total_steps=110, warmup_steps=10, warmup_factor=0.1,
                  final_factor=0.1)
    return WarmupCosineDecay(**{**kwargs, **changes})


def test_cosine_warms_up_linearly_then_decays_to_its_floor():
    s = _cosine()
    assert lr(s, 0) == pytest.approx(0.001)           # base * warmup_factor
    assert lr(s, 5) == pytest.approx(0.0055)          # half way up
    assert lr(s, 10) == pytest.approx(0.01)           # end of the warm-up
    assert lr(s, 35) == pytest.approx(0.001 + 0.009 * 0.5 * (1 + np.cos(np.pi / 4)))
    assert lr(s, 60) == pytest.approx((0.01 + 0.001) / 2)  # middle of the decay
    assert lr(s, 110) == pytest.approx(0.001)         # end: base * final_factor
    assert lr(s, 10_000) == pytest.approx(0.001)      # and after it


def test_cosine_never_rises_after_the_warm_up():
    s = _cosine()
    values = np.array([lr(s, step) for step in range(10, 130)])
    assert np.all(np.diff(values) <= 1e-9)
    warm = np.array([lr(s, step) for step in range(0, 11)])
    assert np.all(np.diff(warm) > 0)


def test_cosine_defaults_no_warmup_and_zero_floor():
    s = WarmupCosineDecay(3e-3, total_steps=100)
    assert lr(s, 0) == pytest.approx(3e-3)
    assert lr(s, 50) == pytest.approx(1.5e-3)
    assert lr(s, 100) == pytest.approx(0.0, abs=1e-12)
    # the docstring's example
    assert lr(WarmupCosineDecay(3e-3, total_steps=1000, warmup_steps=50), 525) == \
        pytest.approx(0.0015)


def test_cosine_accepts_a_tensor_step():
    s = _cosine()
    step = keras.Variable(60, dtype="int64", trainable=False)
    assert lr(s, step) == pytest.approx(0.0055)


def test_cosine_length_can_be_changed_after_construction():
    s = _cosine()
    s.total_steps = 60   # decay over 50 steps instead of 100
    assert s.total_steps == 60 and s.get_config()["total_steps"] == 60
    assert lr(s, 35) == pytest.approx(0.0055)
    assert lr(s, 60) == pytest.approx(0.001)
    s.total_steps = 10   # as long as the warm-up: straight to the floor after it
    assert lr(s, 9) == pytest.approx(0.001 + 0.009 * 0.9)
    assert lr(s, 11) == pytest.approx(0.001)
    for bad in (9, 0, -5):
        with pytest.raises(ValueError, match="total_steps must be >= max\\(1, warmup_steps=10\\)"):
            s.total_steps = bad
    assert s.total_steps == 10  # a refused value changes nothing


def test_cosine_round_trips_through_its_config_and_serialization():
    s = _cosine(name="cos")
    assert s.get_config() == {"base_lr": 0.01, "total_steps": 110, "warmup_steps": 10,
                              "warmup_factor": 0.1, "final_factor": 0.1, "name": "cos"}
    for restored in (WarmupCosineDecay.from_config(s.get_config()),
                     keras.saving.deserialize_keras_object(
                         keras.saving.serialize_keras_object(s))):
        assert isinstance(restored, WarmupCosineDecay)
        assert restored.get_config() == s.get_config()
        for step in (0, 7, 10, 33, 60, 109, 200):
            assert lr(restored, step) == pytest.approx(lr(s, step))


def test_cosine_in_adamw_survives_model_save_and_load(tmp_path):
    from keras_ssd.saving import load_model

    s = WarmupCosineDecay(0.1, total_steps=8, warmup_steps=2, final_factor=0.01)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(s, weight_decay=1e-3), loss="mse")
    x = np.ones((4, 2), "float32")
    model.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0)  # 4 steps
    expected = lr(s, 4)
    assert float(model.optimizer.learning_rate) == pytest.approx(expected)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.AdamW)
    assert isinstance(loaded.optimizer._learning_rate, WarmupCosineDecay)
    assert loaded.optimizer._learning_rate.get_config() == s.get_config()
    assert int(loaded.optimizer.iterations) == 4
    assert float(loaded.optimizer.learning_rate) == pytest.approx(expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_lr": 0}, "base_lr must be positive"),
        ({"base_lr": float("nan")}, "base_lr must be positive"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"warmup_factor": 0}, "warmup_factor must lie in \\(0, 1\\]"),
        ({"warmup_factor": 1.5}, "warmup_factor must lie in \\(0, 1\\]"),
        ({"final_factor": -0.1}, "final_factor must lie in \\[0, 1\\]"),
        ({"final_factor": 2}, "final_factor must lie in \\[0, 1\\]"),
        ({"total_steps": 0, "warmup_steps": 0}, "total_steps must be >= max"),
        ({"total_steps": 5}, "total_steps must be >= max\\(1, warmup_steps=10\\)"),
    ],
)
def test_cosine_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _cosine(**kwargs)


@pytest.mark.parametrize("schedule", [WarmupPiecewiseDecay, WarmupCosineDecay])
@pytest.mark.parametrize("kwargs, problem", [
    ({"base_lr": -1e-3}, "base_lr must be positive, got -0.001"),
    ({"warmup_steps": -2}, "warmup_steps must be >= 0, got -2"),
    ({"warmup_factor": 0.0}, "warmup_factor must lie in (0, 1], got 0.0"),
])
def test_both_schedules_check_the_warm_up_arguments_alike(schedule, kwargs, problem):
    with pytest.raises(ValueError) as error:
        schedule(**kwargs)
    assert str(error.value) == f"{schedule.__name__}: {problem}"


def test_the_schedules_keep_their_registered_names_and_their_training_import():
    import keras_ssd
    import keras_ssd.training
    import keras_ssd.training.schedules as old_home

    for cls in (WarmupPiecewiseDecay, WarmupCosineDecay):
        name = cls.__name__
        assert keras.saving.get_registered_name(cls) == f"keras_ssd>{name}"
        assert keras.saving.get_registered_object(f"keras_ssd>{name}") is cls
        assert getattr(old_home, name) is getattr(keras_ssd.training, name) is cls
        assert getattr(keras_ssd, name) is cls


@pytest.mark.parametrize("file, schedule, optimizer, config", [
    ("piecewise_schedule_0.2.0.keras", WarmupPiecewiseDecay, keras.optimizers.SGD,
     {"base_lr": 0.1, "boundaries": [3], "decay": 0.1, "factors": None, "warmup_steps": 2,
      "warmup_factor": 1 / 3, "name": None}),
    ("cosine_schedule_0.2.0.keras", WarmupCosineDecay, keras.optimizers.AdamW,
     {"base_lr": 0.1, "total_steps": 8, "warmup_steps": 2, "warmup_factor": 0.1,
      "final_factor": 0.01, "name": None}),
])
def test_a_file_saved_before_the_schedules_moved_still_loads(file, schedule, optimizer,
                                                              config):
    from keras_ssd.saving import load_model

    path = FIXTURES / file
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))
    named = saved["compile_config"]["optimizer"]["config"]["learning_rate"]
    assert named["module"] == "keras_ssd.training.schedules"  # the old home
    assert named["registered_name"] == f"keras_ssd>{schedule.__name__}"
    loaded = load_model(path)
    assert type(loaded.optimizer) is optimizer
    assert type(loaded.optimizer._learning_rate) is schedule
    assert loaded.optimizer._learning_rate.get_config() == config
    assert int(loaded.optimizer.iterations) == 4
    assert float(loaded.optimizer.learning_rate) == pytest.approx(lr(schedule(**config), 4))
    # and it trains on from there, the schedule counting on from step 4
    x = np.ones((4, 2), "float32")
    loaded.fit(x, x[:, :1], batch_size=1, epochs=1, verbose=0)
    assert int(loaded.optimizer.iterations) == 8
    assert float(loaded.optimizer.learning_rate) == pytest.approx(lr(schedule(**config), 8))
