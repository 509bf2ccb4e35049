"""keras_ssd.accel.prepare_for_inference: speed-ups applied to a view of a
model that shares its layers, never to the model itself."""

import gc
import json
import weakref
import zipfile

import h5py
import numpy as np
import pytest

import keras

from keras_ssd.accel import prepare_for_inference, winograd_tiles
from keras_ssd.accel import runtime
from keras_ssd.accel.apply import WinogradView
from keras_ssd.accel.winograd_conv import WinogradConv2D

pytestmark = pytest.mark.backend

on_tf = keras.backend.backend() == "tensorflow"
requires_tf = pytest.mark.skipif(not on_tf, reason="the Winograd path is TensorFlow-only")


@pytest.fixture(autouse=True)
def _on_cpu(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    monkeypatch.delenv(runtime.JIT_ENV, raising=False)
    # The measured table's tiles on every machine (test_machine: the others).
    monkeypatch.setenv("KERAS_SSD_WINOGRAD", "table")


def _conv_model(seed=0, name="convs"):
    """Input 24x24x256 -> 3x3 conv (128, F(2x2) by `auto_tile`) -> 1x1 conv."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((24, 24, 256), name="x")
    x = keras.layers.Conv2D(128, 3, padding="same", activation="relu", name="c3")(inputs)
    x = keras.layers.Conv2D(8, 1, name="c1")(x)
    return keras.Model(inputs, x, name=name)


def _x(n=2, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 24, 24, 256)).astype("float32")


def _close(a, b):
    a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1e-4 * max(np.abs(b).max(), 1e-6)


def test_the_view_equals_the_model_and_leaves_it_untouched():
    model = _conv_model()
    x = _x()
    expected = model.predict_on_batch(x)
    layers, jit, function = list(model.layers), model.jit_compile, model.predict_function
    fast = prepare_for_inference(model)
    assert fast is not model
    _close(fast.predict_on_batch(x), expected)
    _close(fast.predict_on_batch(x[:1]), expected[:1])
    _close(fast.predict(x, batch_size=1), expected)  # the array fast path, as SSD.predict
    assert model.layers == layers
    assert all(type(layer) in (keras.layers.InputLayer, keras.layers.Conv2D)
               for layer in model.layers)
    assert model.jit_compile == jit and model.predict_function is function
    assert fast.jit_compile is runtime.default_jit_compile()
    if on_tf:
        assert winograd_tiles(fast) == {"c3": 2}
        assert isinstance(fast.get_layer("c3"), WinogradView)
    else:
        assert winograd_tiles(fast) == {}


def test_the_view_shares_the_weights_and_is_cached():
    model = _conv_model()
    fast = prepare_for_inference(model)
    assert prepare_for_inference(model) is fast
    ids = {id(v) for v in model.weights}
    assert {id(v) for v in fast.weights} == ids and len(fast.weights) == len(model.weights)
    # Changing the model's weights (as training does) shows in the view.
    kernel = model.get_layer("c3").kernel
    kernel.assign(np.asarray(kernel) * -1.0)
    x = _x(1)
    _close(fast.predict_on_batch(x), model.predict_on_batch(x))
    # Other settings: other views of the same model (the same view where
    # the Winograd path does not apply anyway).
    plain = prepare_for_inference(model, winograd=False)
    assert (plain is not fast) == on_tf and winograd_tiles(plain) == {}
    assert prepare_for_inference(model, jit_compile=True).jit_compile is True


def test_views_do_not_keep_the_model_alive():
    model = _conv_model()
    prepare_for_inference(model).predict_on_batch(_x(1))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@requires_tf
def test_nested_models_are_rebuilt_too():
    inner = _conv_model(name="inner")
    inputs = keras.Input((24, 24, 256))
    outer = keras.Model(inputs, keras.layers.Flatten(name="flat")(inner(inputs)),
                        name="outer")
    x = _x()
    fast = prepare_for_inference(outer)
    assert winograd_tiles(fast) == {"c3": 2}
    assert winograd_tiles(outer) == {} and winograd_tiles(inner) == {}
    assert fast.get_layer("flat") is outer.get_layer("flat")
    _close(fast.predict_on_batch(x), outer.predict_on_batch(x))


def test_where_the_rule_says_no_the_convolutions_stay_direct(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "gpu")
    model = _conv_model()
    fast = prepare_for_inference(model)
    assert winograd_tiles(fast) == {}
    assert fast.jit_compile is runtime.default_jit_compile()
    bf16 = keras.Sequential([keras.Input((24, 24, 256)),
                             keras.layers.Conv2D(128, 3, padding="same",
                                                 dtype="mixed_bfloat16")])
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    assert winograd_tiles(prepare_for_inference(bf16)) == {}


def test_a_subclassed_model_gets_the_runtime_defaults_only():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv = keras.layers.Conv2D(128, 3, padding="same")

        def call(self, x):
            return self.conv(x)

    model = Net()
    x = _x(1)
    expected = model.predict_on_batch(x)
    fast = prepare_for_inference(model)
    _close(fast.predict_on_batch(x), expected)
    assert {id(v) for v in fast.weights} == {id(v) for v in model.weights}
    assert fast.jit_compile is runtime.default_jit_compile()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="expects a keras.Model, got Conv2D"):
        prepare_for_inference(keras.layers.Conv2D(4, 3))
    with pytest.raises(TypeError, match="winograd must be True or False"):
        prepare_for_inference(_conv_model(), winograd="yes")
    with pytest.raises(ValueError, match="jit_compile must be true/false/auto"):
        prepare_for_inference(_conv_model(), jit_compile="fast")


def _stored_names(path):
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
        with archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as h5:
            groups = []
            h5.visit(groups.append)
    return config, groups


def test_saving_a_prepared_model_stores_plain_layers(tmp_path):
    model = _conv_model()
    fast = prepare_for_inference(model)
    fast.predict_on_batch(_x(1))
    path = tmp_path / "m.keras"
    model.save(path)
    config, groups = _stored_names(path)
    assert "Winograd" not in config and "keras_ssd" not in json.loads(config)["class_name"]
    assert not any("winograd" in g for g in groups)
    loaded = keras.saving.load_model(path)
    _close(loaded.predict_on_batch(_x(1)), model.predict_on_batch(_x(1)))
    with pytest.raises(TypeError, match="save the model you prepared"):
        fast.save(tmp_path / "view.keras")


def test_ssd300_is_plain_and_its_view_matches_it(tmp_path):
    from keras_ssd.models import SSD300

    model = SSD300(num_classes=3)
    assert not any(isinstance(layer, WinogradConv2D) for layer in model.layers)
    assert sum(type(layer) is keras.layers.Conv2D for layer in model.layers) > 20
    jit = model.jit_compile
    fast = prepare_for_inference(model)
    assert fast.config == model.config and fast.class_names == model.class_names
    x = np.random.default_rng(0).uniform(0, 255, (1, 300, 300, 3)).astype("float32")
    _close(fast(x), model(x))  # the raw heads
    detections = fast.predict_on_batch(x)  # decoded, as the model's own predict
    assert detections["boxes"].shape == (1, 200, 4)
    assert model.jit_compile == jit
    path = tmp_path / "ssd300.keras"
    model.save(path)
    config, groups = _stored_names(path)
    assert "Winograd" not in config and not any("winograd" in g for g in groups)
