import numpy as np
import pytest

import keras
from keras import ops

from keras_ssd.accel import winograd
from keras_ssd.accel import winograd_conv
from keras_ssd.accel.winograd_conv import WinogradConv2D
from keras_ssd.accel.winograd_conv import auto_tile

pytestmark = pytest.mark.backend


@pytest.fixture(autouse=True)
def _the_measured_table(monkeypatch):
    """The tiles pinned here are the measured table's; test_machine covers
    the other rules (measuring, off) and the machine kinds."""
    monkeypatch.setenv(winograd_conv.WINOGRAD_ENV, "table")

requires_tf = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                 reason="the Winograd path is TensorFlow-only")


def _direct(x, kernel):
    """3x3 'same' convolution in float64 numpy (cross-correlation, as Keras)."""
    x = x.astype(np.float64)
    k = kernel.astype(np.float64)
    b, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, h, w, k.shape[-1]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("bhwc,ck->bhwk", xp[:, i:i + h, j:j + w], k[i, j])
    return out


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_compute_a_one_dimensional_correlation_exactly(m):
    # F(m, 3): A^T [(G g) * (B^T d)] is the correlation of the m + 2 inputs
    # d with the 3 taps g; in float64 it must hold to rounding.
    bt, g, at = (t.astype(np.float64) for t in winograd.TRANSFORMS[m])
    rng = np.random.default_rng(m)
    for _ in range(5):
        d = rng.normal(size=m + 2)
        taps = rng.normal(size=3)
        expected = np.array([d[i:i + 3] @ taps for i in range(m)])
        np.testing.assert_allclose(at @ ((g @ taps) * (bt @ d)), expected, atol=1e-12)


@pytest.mark.parametrize("m, tolerance", [(2, 1e-5), (4, 1e-4)])
@pytest.mark.parametrize("size", [(8, 8), (7, 10), (13, 5)])
def test_winograd_conv3x3_equals_direct_convolution(m, tolerance, size):
    rng = np.random.default_rng(sum(size) + m)
    x = rng.normal(size=(2,) + size + (6,)).astype("float32")
    kernel = rng.normal(size=(3, 3, 6, 5)).astype("float32")
    y = np.asarray(winograd.winograd_conv3x3(ops.convert_to_tensor(x),
                                             ops.convert_to_tensor(kernel), m))
    expected = _direct(x, kernel)
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() <= tolerance * np.abs(expected).max()


def test_winograd_conv3x3_rejects_bad_tiles_and_kernels():
    x = ops.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="tile must be one of"):
        winograd.winograd_conv3x3(x, ops.zeros((3, 3, 4, 2)), 3)
    with pytest.raises(ValueError, match="3x3 kernel"):
        winograd.winograd_conv3x3(x, ops.zeros((5, 5, 4, 2)), 2)
    with pytest.raises(ValueError, match="4 channels, kernel expects 3"):
        winograd.winograd_conv3x3(x, ops.zeros((3, 3, 3, 2)), 2)


def test_auto_tile_follows_the_measured_layer_table():
    # (H, C_in, C_out) of SSD300's VGG16 3x3 convolutions -> tile.
    table = {
        "conv1_2": ((300, 64, 64), 0),
        "conv2_1": ((150, 64, 128), 0),
        "conv2_2": ((150, 128, 128), 4),
        "conv3_1": ((75, 128, 256), 4),
        "conv3_3": ((75, 256, 256), 4),
        "conv4_1": ((38, 256, 512), 2),
        "conv4_3": ((38, 512, 512), 2),
        "conv5_1": ((19, 512, 512), 0),
        "conv4_3 head": ((38, 512, 100), 0),
        # SSD512's larger maps
        "SSD512 conv2_2": ((256, 128, 128), 4),
        "SSD512 conv4_2": ((64, 512, 512), 4),
        "SSD512 conv5_1": ((32, 512, 512), 2),
    }
    for name, ((h, cin, cout), tile) in table.items():
        assert winograd_conv.table_tile(h, h, cin, cout) == tile, name
        assert auto_tile(h, h, cin, cout) == tile, name


def _pair(filters=16, channels=8, size=(12, 12), **kwargs):
    """A WinogradConv2D and a plain Conv2D with the same weights."""
    layer = WinogradConv2D(filters, 3, padding="same", activation="relu", **kwargs)
    plain = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")
    shape = (None,) + size + (channels,)
    layer.build(shape)
    plain.build(shape)
    rng = np.random.default_rng(0)
    plain.set_weights([rng.normal(0, 0.2, w.shape).astype("float32")
                       for w in plain.get_weights()])
    layer.set_weights(plain.get_weights())
    return layer, plain


class _Spy:
    def __init__(self, monkeypatch):
        self.calls = 0
        real = winograd.winograd_conv3x3

        def counting(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(winograd, "winograd_conv3x3", counting)


@requires_tf
def test_single_image_inference_takes_the_winograd_path_and_matches_conv2d(monkeypatch):
    spy = _Spy(monkeypatch)
    layer, plain = _pair(winograd_tile=4)
    x = np.random.default_rng(1).normal(size=(1, 12, 12, 8)).astype("float32")
    assert layer.active_tile == 4
    y = np.asarray(layer(x, training=False))
    assert spy.calls == 1
    np.testing.assert_allclose(y, np.asarray(plain(x)), rtol=0, atol=1e-4)


@requires_tf
def test_a_batch_goes_through_the_winograd_path_image_by_image(monkeypatch):
    spy = _Spy(monkeypatch)
    layer, plain = _pair(winograd_tile=2)
    batch = np.random.default_rng(2).normal(size=(3, 12, 12, 8)).astype("float32")
    y = np.asarray(layer(batch))
    assert spy.calls == 3  # eager: one call per image
    np.testing.assert_allclose(y, np.asarray(plain(batch)), rtol=0, atol=1e-4)


@requires_tf
def test_training_and_the_disabled_context_use_the_direct_convolution(monkeypatch):
    spy = _Spy(monkeypatch)
    layer, plain = _pair(winograd_tile=2)
    batch = np.random.default_rng(2).normal(size=(3, 12, 12, 8)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(batch, training=True)),
                                  np.asarray(plain(batch)))
    with winograd.disabled():
        assert layer.active_tile == 0
        np.testing.assert_array_equal(np.asarray(layer(batch)), np.asarray(plain(batch)))
    assert spy.calls == 0
    layer(batch[:1])
    assert spy.calls == 1


@requires_tf
def test_unknown_batch_size_in_a_graph_matches_conv2d():
    import tensorflow as tf

    layer, plain = _pair(winograd_tile=4)
    fn = tf.function(lambda x: layer(x, training=False),
                     input_signature=[tf.TensorSpec((None, 12, 12, 8), tf.float32)])
    rng = np.random.default_rng(3)
    for n in (1, 4, 2):
        x = rng.normal(size=(n, 12, 12, 8)).astype("float32")
        np.testing.assert_allclose(fn(x).numpy(), np.asarray(plain(x)), rtol=0, atol=1e-4)


@requires_tf
def test_mixed_precision_layers_stay_on_the_direct_path(monkeypatch):
    monkeypatch.setenv("KERAS_SSD_DEVICE", "cpu")
    layer = WinogradConv2D(128, 3, padding="same", dtype="mixed_bfloat16")
    layer.build((None, 75, 75, 128))
    twin = WinogradConv2D(128, 3, padding="same")
    twin.build((None, 75, 75, 128))
    assert twin.active_tile == 4  # the same layer in float32 takes F(4x4)
    assert layer.active_tile == 0


@requires_tf
def test_gradients_through_the_winograd_path_match_conv2d():
    import tensorflow as tf

    layer, plain = _pair(winograd_tile=4)
    x = tf.constant(np.random.default_rng(4).normal(size=(1, 12, 12, 8)).astype("float32"))

    def grads(lyr):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(lyr(x, training=False) ** 2)
        return tape.gradient(loss, [x] + [v.value for v in lyr.trainable_variables])

    for a, b in zip(grads(layer), grads(plain)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-3)


def test_auto_picks_no_tile_for_ineligible_or_small_layers(monkeypatch):
    monkeypatch.setenv("KERAS_SSD_DEVICE", "cpu")
    strided = WinogradConv2D(256, 3, strides=2, padding="same")
    strided.build((None, 75, 75, 256))
    assert strided.active_tile == 0 and strided._auto_shape is None
    small = WinogradConv2D(16, 3, padding="same")
    small.build((None, 75, 75, 256))
    assert small.active_tile == 0
    big = WinogradConv2D(256, 3, padding="same")
    big.build((None, 75, 75, 256))
    assert big.active_tile == (4 if keras.backend.backend() == "tensorflow" else 0)


def test_forcing_a_tile_on_an_ineligible_layer_names_the_layer():
    layer = WinogradConv2D(8, 3, strides=2, padding="same", winograd_tile=2, name="down")
    with pytest.raises(ValueError, match="'down'.*needs a 3x3, stride-1"):
        layer.build((None, 16, 16, 4))


@pytest.mark.parametrize("bad", ["big", 3, True, -1])
def test_invalid_winograd_tile_is_rejected(bad):
    with pytest.raises(ValueError, match="winograd_tile must be 'auto' or one of"):
        WinogradConv2D(8, 3, winograd_tile=bad, name="c")


def test_config_and_keras_file_round_trip(config_round_trip, keras_round_trip):
    inputs = keras.Input((12, 12, 8))
    outputs = WinogradConv2D(16, 3, padding="same", winograd_tile=2, name="w")(inputs)
    model = keras.Model(inputs, outputs)
    assert config_round_trip(model.get_layer("w")).winograd_tile == 2
    x = np.random.default_rng(5).normal(size=(1, 12, 12, 8)).astype("float32")
    loaded = keras_round_trip(model, x, atol=1e-5)
    assert isinstance(loaded.get_layer("w"), WinogradConv2D)
    assert loaded.get_layer("w").winograd_tile == 2


@requires_tf
def test_ssd300_inference_with_winograd_matches_direct_convolutions(monkeypatch):
    from keras_ssd.accel import prepare_for_inference, winograd_tiles
    from keras_ssd.models import SSD300

    monkeypatch.setenv("KERAS_SSD_DEVICE", "cpu")
    model = SSD300(num_classes=3)
    assert not any(isinstance(layer, WinogradConv2D) for layer in model.layers)
    fast = prepare_for_inference(model)
    tiles = winograd_tiles(fast)
    assert tiles == {"conv2_2": 4, "conv3_1": 4, "conv3_2": 4, "conv3_3": 4,
                     "conv4_1": 2, "conv4_2": 2, "conv4_3": 2}
    x = np.random.default_rng(6).uniform(0, 255, (2, 300, 300, 3)).astype("float32")
    expected = np.asarray(model(x))  # the model itself: direct convolutions
    scale = np.abs(expected).max()
    for images in (x[:1], x):
        got = np.asarray(fast(images))
        assert np.abs(got - expected[:len(images)]).max() <= 1e-4 * scale


def test_the_disabled_context_is_deprecated():
    with pytest.warns(DeprecationWarning, match="export needs no switch"):
        with winograd.disabled():
            assert winograd.is_disabled()
    assert not winograd.is_disabled()


@requires_tf
def test_lora_enabled_layer_uses_the_adapted_kernel_on_the_winograd_path():
    layer, plain = _pair(winograd_tile=2)
    layer.enable_lora(2)
    rng = np.random.default_rng(7)
    layer.lora_kernel_b.assign(rng.normal(0, 0.1, layer.lora_kernel_b.shape).astype("float32"))
    x = rng.normal(size=(1, 12, 12, 8)).astype("float32")
    expected = np.asarray(ops.relu(ops.conv(x, layer.kernel, padding="same") + layer.bias))
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=0, atol=1e-4)
    assert np.abs(expected - np.asarray(plain(x))).max() > 1e-3  # LoRA changed the output
