"""keras_ssd.accel.runtime: the jit_compile choice per backend/device and the
mixed-precision switch (model output, loss and decoder stay float32)."""

import keras
import numpy as np
import pytest

from keras_ssd.accel import machine, runtime


@pytest.fixture(autouse=True)
def _clean_env_and_policy(monkeypatch):
    monkeypatch.delenv(runtime.JIT_ENV, raising=False)
    monkeypatch.delenv(runtime.DEVICE_ENV, raising=False)
    # The CPU rules follow the machine kind: pin one with native bfloat16 so
    # these tests mean the same on every CPU (test_machine forces the rest).
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx512-bf16")
    previous = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(previous)


# ------------------------------------------------------------- jit_compile
@pytest.mark.parametrize("backend, device, expected", [
    ("tensorflow", "cpu", False),
    ("tensorflow", "gpu", True),
    ("tensorflow", "tpu", True),
    ("tensorflow", "cuda", True),
    ("jax", "cpu", True),
    ("jax", "gpu", True),
    ("torch", "cpu", False),
    ("torch", "gpu", False),
    ("numpy", "cpu", False),
])
def test_default_jit_compile_per_backend_and_device(backend, device, expected):
    assert runtime.default_jit_compile(backend=backend, device=device) is expected


def test_cpu_jit_compile_comes_from_the_machine_kind_table(monkeypatch):
    monkeypatch.setitem(machine.CPU_JIT_COMPILE, "x86-xla-test", True)
    monkeypatch.setenv(machine.KIND_ENV, "x86-xla-test")
    assert runtime.default_jit_compile(backend="tensorflow", device="cpu") is True
    assert runtime.default_jit_compile(backend="torch", device="cpu") is False
    monkeypatch.setenv(machine.KIND_ENV, "x86-unmeasured")
    assert machine.cpu_jit_compile() is machine.DEFAULT_CPU_JIT_COMPILE is False
    assert runtime.default_jit_compile(backend="tensorflow", device="cpu") is False
    monkeypatch.setenv(runtime.JIT_ENV, "true")  # the environment still wins
    assert runtime.default_jit_compile(backend="tensorflow", device="cpu") is True


def test_default_jit_compile_uses_device_env_for_detection(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "gpu")
    assert runtime.default_device() == "gpu"
    assert runtime.default_jit_compile(backend="tensorflow") is True
    monkeypatch.setenv(runtime.DEVICE_ENV, "CPU")
    assert runtime.default_jit_compile(backend="tensorflow") is False


def test_default_device_matches_tensorflow_devices():
    import tensorflow as tf

    device = runtime.default_device("tensorflow")
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    has_tpu = bool(tf.config.list_physical_devices("TPU"))
    assert device == ("tpu" if has_tpu else "gpu" if has_gpu else "cpu")


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("1", True), ("False", False), ("0", False), ("auto", "auto"),
])
def test_jit_env_var_overrides_measured_default(monkeypatch, value, expected):
    monkeypatch.setenv(runtime.JIT_ENV, value)
    assert runtime.default_jit_compile(backend="tensorflow", device="cpu") == expected
    assert runtime.compile_defaults()["jit_compile"] == expected


def test_explicit_jit_argument_beats_env(monkeypatch):
    monkeypatch.setenv(runtime.JIT_ENV, "true")
    assert runtime.resolve_jit_compile(False) is False
    assert runtime.compile_defaults(jit_compile=False)["jit_compile"] is False
    assert runtime.resolve_jit_compile("auto") == "auto"


def test_bad_jit_values_raise_naming_the_source(monkeypatch):
    with pytest.raises(ValueError, match="jit_compile"):
        runtime.resolve_jit_compile("sometimes")
    monkeypatch.setenv(runtime.JIT_ENV, "maybe")
    with pytest.raises(ValueError, match=runtime.JIT_ENV):
        runtime.default_jit_compile()


def test_bad_device_and_backend_raise(monkeypatch):
    with pytest.raises(ValueError, match="device"):
        runtime.default_jit_compile(backend="tensorflow", device="npu")
    with pytest.raises(ValueError, match="backend"):
        runtime.default_jit_compile(backend="caffe")
    monkeypatch.setenv(runtime.DEVICE_ENV, "fpga")
    with pytest.raises(ValueError, match=runtime.DEVICE_ENV):
        runtime.default_device()


def test_compile_defaults_keeps_other_arguments():
    loss = keras.losses.MeanSquaredError()
    kwargs = runtime.compile_defaults(optimizer="sgd", loss=loss, jit_compile=True)
    assert kwargs == {"optimizer": "sgd", "loss": loss, "jit_compile": True}


def _small_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    outputs = keras.layers.Activation("linear", dtype="float32")(x)
    return keras.Model(inputs, outputs)


def _cpu_default():
    """The pinned CPU choice for the backend the suite runs on."""
    return {"tensorflow": False, "jax": True, "torch": False}.get(keras.backend.backend(), False)


def test_compiled_model_gets_the_cpu_default(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    model = _small_model()
    model.compile(optimizer="sgd", loss="mse", **runtime.compile_defaults())
    assert model.jit_compile is _cpu_default()
    model.fit(np.zeros((2, 8, 8, 3), "float32"), np.zeros((2, 8, 8, 4), "float32"),
              epochs=1, verbose=0)


def test_apply_runtime_defaults_sets_predict_path_and_drops_traced_functions(monkeypatch):
    monkeypatch.setenv(runtime.DEVICE_ENV, "cpu")
    model = _small_model()
    x = np.ones((1, 8, 8, 3), "float32")
    default = _cpu_default()
    model.jit_compile = not default
    model.predict(x, verbose=0)
    assert model.predict_function is not None
    assert runtime.apply_runtime_defaults(model) is model
    assert model.jit_compile is default
    assert model.predict_function is None
    np.testing.assert_allclose(model.predict(x, verbose=0), model(x), rtol=1e-5, atol=1e-5)
    runtime.apply_runtime_defaults(model, jit_compile=not default)
    assert model.jit_compile is (not default)


def test_apply_runtime_defaults_auto_leaves_model_alone():
    model = _small_model()
    model.jit_compile = True
    runtime.apply_runtime_defaults(model, jit_compile="auto")
    assert model.jit_compile is True


# --------------------------------------------------------- mixed precision
@pytest.mark.parametrize("device, policy", [
    ("cpu", "mixed_bfloat16"), ("gpu", "mixed_float16"), ("tpu", "mixed_bfloat16"),
])
def test_mixed_precision_policy_per_device(device, policy):
    assert runtime.mixed_precision_policy(device) == policy


def test_set_mixed_precision_switches_global_policy():
    assert runtime.set_mixed_precision(True, device="cpu") == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert runtime.mixed_precision_enabled()
    assert runtime.set_mixed_precision(True, device="gpu") == "mixed_float16"
    assert keras.config.dtype_policy().compute_dtype == "float16"
    assert runtime.set_mixed_precision(False) == "float32"
    assert keras.config.dtype_policy().name == "float32"
    assert not runtime.mixed_precision_enabled()


def test_set_mixed_precision_rejects_non_bool():
    with pytest.raises(ValueError, match="enabled"):
        runtime.set_mixed_precision("yes")
    with pytest.raises(ValueError, match="force"):
        runtime.set_mixed_precision(True, force="yes")


@pytest.mark.parametrize("kind, policy", [
    ("x86-avx512-bf16-amx", "mixed_bfloat16"),
    ("x86-avx512-bf16", "mixed_bfloat16"),
    ("x86-avx512", "float32"),
    ("x86-avx2", "float32"),
    ("other", "float32"),
])
def test_cpu_mixed_precision_is_bfloat16_only_where_native(monkeypatch, kind, policy):
    monkeypatch.setenv(machine.KIND_ENV, kind)
    assert runtime.mixed_precision_policy("cpu") == policy
    assert runtime.mixed_precision_policy("cpu", force=True) == "mixed_bfloat16"
    # Accelerators keep their own choice whatever the host CPU.
    assert runtime.mixed_precision_policy("gpu") == "mixed_float16"
    assert runtime.mixed_precision_policy("tpu") == "mixed_bfloat16"


def test_set_mixed_precision_keeps_float32_and_says_why_without_native_bf16(monkeypatch):
    import warnings

    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    keras.config.set_dtype_policy("float32")
    with pytest.warns(RuntimeWarning, match="x86-avx2.*no native bfloat16.*force=True"):
        assert runtime.set_mixed_precision(True, device="cpu") == "float32"
    assert keras.config.dtype_policy().name == "float32"
    assert not runtime.mixed_precision_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forced, disabled or on GPU: no warning
        assert runtime.set_mixed_precision(True, device="cpu", force=True) == "mixed_bfloat16"
        assert runtime.set_mixed_precision(False, device="cpu") == "float32"
        assert runtime.set_mixed_precision(True, device="gpu") == "mixed_float16"


@pytest.fixture(scope="module")
def tiny_models():
    """The same tiny SSD built in float32 and under mixed_bfloat16."""
    from keras_ssd.models import SSDTiny

    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("float32")
        model32 = SSDTiny(num_classes=3)
        runtime.set_mixed_precision(True, device="cpu", force=True)  # any CPU
        model16 = SSDTiny(num_classes=3)
    finally:
        keras.config.set_dtype_policy(previous)
    model16.set_weights(model32.get_weights())
    return model32, model16


def test_mixed_precision_model_computes_bf16_outputs_float32(tiny_models):
    model32, model16 = tiny_models
    convs = [l for l in model16.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
    assert all(w.dtype == "float32" for w in model16.weights)
    size = model16.config.image_size
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    out16 = model16(x)
    assert keras.backend.standardize_dtype(out16.dtype) == "float32"
    out32 = np.asarray(model32(x))
    out16 = np.asarray(out16)
    # bfloat16 keeps ~3 significant digits: same numbers to within a few %.
    scale = np.abs(out32).max()
    assert np.abs(out16 - out32).max() < 0.05 * scale
    assert not np.allclose(out16, out32, rtol=0, atol=1e-7)  # really ran in bf16


def test_loss_and_decoder_stay_float32_under_mixed_precision(tiny_models):
    from keras_ssd.targets import TargetEncoder
    from keras_ssd.layers.decode_detections import DecodeDetections
    from keras_ssd.losses import SSDLoss

    _, model16 = tiny_models
    config = model16.config
    previous = keras.config.dtype_policy()
    try:
        runtime.set_mixed_precision(True, device="cpu", force=True)
        loss_fn = SSDLoss()
        decoder = DecodeDetections(config)
    finally:
        keras.config.set_dtype_policy(previous)
    size = config.image_size
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    pred = model16(x)
    encoder = TargetEncoder.from_config(config)
    y = np.stack([encoder(np.array([[0.1, 0.1, 0.6, 0.7]], "float32"), np.array([1]))] * 2)
    pred_bf16 = keras.ops.cast(pred, "bfloat16")
    loss = loss_fn(y, pred_bf16)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    assert np.isfinite(float(loss))
    out = decoder(pred_bf16)
    assert keras.backend.standardize_dtype(out["boxes"].dtype) == "float32"
    assert keras.backend.standardize_dtype(out["scores"].dtype) == "float32"


def test_mixed_precision_copy_runs_the_same_weights_in_bf16(tiny_models):
    model32, _ = tiny_models
    copy = runtime.mixed_precision_copy(model32, device="cpu")
    assert type(copy) is type(model32)
    assert copy.config == model32.config
    convs = [l for l in copy.layers if isinstance(l, keras.layers.Conv2D)]
    assert all(l.compute_dtype == "bfloat16" for l in convs)
    assert keras.config.dtype_policy().name == "float32"  # global policy restored
    for a, b in zip(copy.get_weights(), model32.get_weights()):
        np.testing.assert_array_equal(a, b)
    back = runtime.mixed_precision_copy(copy, enabled=False)
    assert all(l.compute_dtype == "float32" for l in back.layers
               if isinstance(l, keras.layers.Conv2D))


def test_mixed_precision_copy_follows_the_cpu_rule(tiny_models, monkeypatch):
    model32, _ = tiny_models
    monkeypatch.setenv(machine.KIND_ENV, "x86-avx2")
    with pytest.warns(RuntimeWarning, match="mixed_precision_copy: keeping float32"):
        plain = runtime.mixed_precision_copy(model32, device="cpu")
    assert all(l.compute_dtype == "float32" for l in plain.layers
               if isinstance(l, keras.layers.Conv2D))
    forced = runtime.mixed_precision_copy(model32, device="cpu", force=True)
    assert all(l.compute_dtype == "bfloat16" for l in forced.layers
               if isinstance(l, keras.layers.Conv2D))


def test_mixed_precision_copy_rejects_models_pinning_layer_dtypes():
    with pytest.raises(ValueError, match="did not rebuild"):
        runtime.mixed_precision_copy(_small_model(), device="cpu")


def test_predict_arrays_matches_predict_over_uneven_batches():
    model = _small_model()
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    expected = model.predict(x, batch_size=2, verbose=0)
    got = runtime.predict_arrays(model, x, batch_size=2)
    assert isinstance(got, np.ndarray) and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(runtime.predict_arrays(model, x[:1]), expected[:1],
                               rtol=1e-5, atol=1e-5)


def test_predict_arrays_keeps_dict_outputs_and_rejects_bad_input():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, {"a": keras.layers.Dense(2)(inputs),
                                 "b": keras.layers.Dense(1)(inputs)})
    x = np.ones((3, 3), "float32")
    out = runtime.predict_arrays(model, x, batch_size=2)
    assert set(out) == {"a", "b"} and out["a"].shape == (3, 2) and out["b"].shape == (3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        runtime.predict_arrays(model, x, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        runtime.predict_arrays(model, x[:0])
