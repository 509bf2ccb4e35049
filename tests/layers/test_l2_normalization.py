import numpy as np
import pytest

import keras

from keras_ssd.layers.l2_normalization import L2Normalization


def _reference(x, gamma, axis=-1):
    norm = np.sqrt(np.sum(x.astype(np.float64) ** 2, axis=axis, keepdims=True))
    shape = [1] * x.ndim
    shape[axis] = -1
    return x / norm * np.reshape(gamma, shape)


def test_output_is_unit_norm_times_scale_initialised_to_20():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 8)).astype("float32")
    layer = L2Normalization()
    y = np.asarray(layer(x))
    np.testing.assert_allclose(np.asarray(layer.gamma), np.full(8, 20.0))
    np.testing.assert_allclose(y, _reference(x, np.full(8, 20.0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 20.0, rtol=1e-5)


def test_scale_is_per_channel_and_used():
    x = np.ones((1, 1, 1, 4), "float32")  # norm 2
    layer = L2Normalization(scale_init=3.0)
    layer.build(x.shape)
    layer.gamma.assign(np.array([1.0, 2.0, 3.0, 4.0], "float32"))
    np.testing.assert_allclose(np.asarray(layer(x))[0, 0, 0], [0.5, 1.0, 1.5, 2.0])


def test_axis_one_normalises_channels_first_layout():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 5, 3, 3)).astype("float32")
    layer = L2Normalization(scale_init=2.0, axis=1)
    y = np.asarray(layer(x))
    assert layer.gamma.shape == (5,)
    np.testing.assert_allclose(y, _reference(x, np.full(5, 2.0), axis=1), rtol=1e-5, atol=1e-6)


def test_zero_vector_gives_zero_not_nan():
    y = np.asarray(L2Normalization()(np.zeros((1, 2, 2, 3), "float32")))
    assert np.all(np.isfinite(y)) and np.all(y == 0)


def test_norm_is_computed_in_float32_under_float16_policy():
    # 512 channels of 300: the sum of squares (4.6e7) overflows float16.
    x = np.full((1, 2, 2, 512), 300.0, "float32")
    layer = L2Normalization(dtype="mixed_float16")
    y = np.asarray(layer(x)).astype("float32")
    assert y.dtype == np.float32 and str(layer.compute_dtype) == "float16"
    np.testing.assert_allclose(y, 20.0 / np.sqrt(512.0), rtol=2e-3)


def test_scale_is_trainable_and_receives_gradients():
    import tensorflow as tf

    layer = L2Normalization()
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 4, 4, 6)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x))
    (grad,) = tape.gradient(loss, [layer.gamma.value])
    assert [w.name for w in layer.trainable_weights] == ["gamma"]
    # d/dgamma_c sum(gamma_c * xhat_c) = sum over positions of xhat_c
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=-1, keepdims=True)
    np.testing.assert_allclose(grad.numpy(), xn.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_keras_file(config_round_trip, keras_round_trip):
    clone = config_round_trip(L2Normalization(scale_init=10.0, axis=-1, epsilon=1e-6))
    assert (clone.scale_init, clone.epsilon, clone.axis) == (10.0, 1e-6, -1)

    inputs = keras.Input((3, 3, 4))
    model = keras.Model(inputs, L2Normalization(scale_init=5.0, name="norm")(inputs))
    model.get_layer("norm").gamma.assign(np.array([1.0, 2.0, 3.0, 4.0], "float32"))
    x = np.random.default_rng(3).normal(size=(1, 3, 3, 4)).astype("float32")
    loaded = keras_round_trip(model, x)
    assert isinstance(loaded.get_layer("norm"), L2Normalization)


def test_compute_output_shape_is_identity():
    assert L2Normalization().compute_output_shape((None, 38, 38, 512)) == (None, 38, 38, 512)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"axis": 0}, "axis"),
        ({"axis": 7}, "axis"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"scale_init": "big"}, "scale_init"),
        ({"axis": 1.5}, "axis"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L2Normalization(**kwargs)(np.ones((1, 2, 2, 3), "float32"))
