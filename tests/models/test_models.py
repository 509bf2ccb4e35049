import numpy as np
import pytest

import keras

from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.targets import TargetEncoder
from keras_ssd.layers.l2_normalization import L2Normalization
from keras_ssd.layers.preprocessing import CaffePreprocessing, ImagePreprocessing
from keras_ssd.losses import SSDLoss
from keras_ssd.models import (
    SSD,
    SSD300,
    SSD512,
    SSDMobileNetV2,
    SSDTiny,
    build_model,
    MODEL_BUILDERS,
)


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def ssd300():
    return SSD300(num_classes=20)


@pytest.fixture(scope="module")
def ssd512():
    return SSD512(num_classes=20)


@pytest.fixture(scope="module")
def tiny():
    return SSDTiny(num_classes=3, class_names=["cat", "dog", "bird"])


def _source_sizes(model):
    return [model.get_layer(n).output.shape[1] for n in model.source_names]


# ----------------------------------------------------------------- SSD300
def test_ssd300_output_shape_and_priors(ssd300):
    assert ssd300.output_shape == (None, 8732, 25)
    y = np.asarray(ssd300(_images(1, 300), training=False))
    assert y.shape == (1, 8732, 25) and y.dtype == np.float32
    assert ssd300.config.num_anchors == 8732 == generate_anchors(ssd300).shape[0]
    assert ssd300.class_names == [f"class_{i}" for i in range(20)]


def test_ssd300_caffe_geometry(ssd300):
    shape = lambda name: tuple(ssd300.get_layer(name).output.shape[1:])
    assert ssd300.source_names == ["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"]
    assert _source_sizes(ssd300) == [38, 19, 10, 5, 3, 1]
    assert shape("conv3_3") == (75, 75, 256)
    assert shape("pool3") == (38, 38, 256)  # Caffe ceil mode
    pool5 = ssd300.get_layer("pool5")
    assert pool5.pool_size == (3, 3) and pool5.strides == (1, 1) and shape("pool5") == (19, 19, 512)
    fc6 = ssd300.get_layer("fc6")
    assert fc6.dilation_rate == (6, 6) and tuple(fc6.kernel.shape) == (3, 3, 512, 1024)
    assert tuple(ssd300.get_layer("fc7").kernel.shape) == (1, 1, 1024, 1024)
    for name in ("conv6_2", "conv7_2"):
        layer = ssd300.get_layer(name)
        assert layer.strides == (2, 2) and layer.padding == "valid"
        assert ssd300.get_layer(f"{name}_pad").padding == ((1, 1), (1, 1))
    for name in ("conv8_2", "conv9_2"):
        layer = ssd300.get_layer(name)
        assert layer.strides == (1, 1) and layer.padding == "valid"
    assert isinstance(ssd300.get_layer("conv4_3_norm"), L2Normalization)
    np.testing.assert_array_equal(np.asarray(ssd300.get_layer("conv4_3_norm").gamma), 20.0)
    pre = ssd300.get_layer("preprocessing")
    assert isinstance(pre, ImagePreprocessing) and pre.mode == "caffe"
    # Heads: k * 4 offsets and k * 21 logits per map.
    for name, k in zip(ssd300.source_names, [4, 6, 6, 6, 4, 4]):
        assert ssd300.get_layer(f"{name}_mbox_loc").filters == k * 4
        assert ssd300.get_layer(f"{name}_mbox_conf").filters == k * 21
        assert ssd300.get_layer(f"{name}_mbox_loc").kernel_size == (3, 3)


def test_ssd300_forward_backward(ssd300):
    import tensorflow as tf

    encoder = TargetEncoder.from_config(ssd300.config)
    y_true = np.stack([encoder(np.array([[0.1, 0.2, 0.6, 0.7]]), np.array([4]))])
    x = tf.constant(_images(1, 300, seed=1))
    with tf.GradientTape() as tape:
        loss = SSDLoss()(y_true, ssd300(x, training=True))
    variables = ssd300.trainable_variables
    grads = tape.gradient(loss, variables)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert all(g is not None for g in grads)
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # Backpropagation reaches the first layer (heads of maps without selected
    # priors may legitimately get zero gradients).
    names = [v.path for v in variables]
    first = grads[names.index("conv1_1/kernel")]
    assert float(tf.reduce_max(tf.abs(first))) > 0


def test_models_hold_plain_keras_convolutions(ssd300, ssd512, tiny):
    # Speed-ups are applied to a model for inference (keras_ssd.accel), not
    # built into it: every convolution is a plain keras.layers.Conv2D.
    for model in (ssd300, ssd512, tiny):
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        assert convs
        assert {type(layer) for layer in convs} == {keras.layers.Conv2D}, model.name
        assert all(layer.__module__.startswith("keras.") for layer in model.layers
                   if not isinstance(layer, (L2Normalization, ImagePreprocessing))), model.name


def test_ssd300_save_and_load_keras_file(ssd300, keras_round_trip):
    loaded = keras_round_trip(ssd300, _images(1, 300, seed=2))
    assert isinstance(loaded, SSD) and loaded.config == ssd300.config


def test_ssd300_batchnorm_variant_replaces_l2_normalization():
    model = SSD300(num_classes=2, normalization="batchnorm")
    assert isinstance(model.get_layer("conv4_3_bn"), keras.layers.BatchNormalization)
    assert not any(isinstance(l, L2Normalization) for l in model.layers)
    assert model.source_names[0] == "conv4_3_bn" and model.output_shape == (None, 8732, 7)


# ----------------------------------------------------------------- SSD512
def test_ssd512_output_shape_and_geometry(ssd512):
    assert ssd512.output_shape == (None, 24564, 25)
    assert _source_sizes(ssd512) == [64, 32, 16, 8, 4, 2, 1]
    last = ssd512.get_layer("conv10_2")
    assert last.kernel_size == (4, 4) and last.padding == "valid"
    assert ssd512.get_layer("conv10_2_pad").padding == ((1, 1), (1, 1))
    for name in ("conv6_2", "conv7_2", "conv8_2", "conv9_2"):
        assert ssd512.get_layer(name).strides == (2, 2)
    y = np.asarray(ssd512(_images(1, 512), training=False))
    assert y.shape == (1, 24564, 25) and np.all(np.isfinite(y))


# ------------------------------------------------------------ head order
def test_output_order_is_map_row_column_box(tiny):
    """Every output row equals the head value at (map, row, col, box) in the
    order of generate_anchors."""
    names = tiny.source_names
    heads = keras.Model(
        tiny.input,
        [tiny.get_layer(f"{n}_mbox_loc").output for n in names]
        + [tiny.get_layer(f"{n}_mbox_conf").output for n in names],
    )
    x = _images(2, 160, seed=3)
    raw = [np.asarray(t) for t in heads(x, training=False)]
    locs, confs = raw[: len(names)], raw[len(names):]
    out = np.asarray(tiny(x, training=False))
    cfg = tiny.config
    c1 = cfg.num_classes + 1
    anchors = generate_anchors(cfg)
    row = 0
    for m, (f, k) in enumerate(zip(cfg.feature_map_sizes, cfg.boxes_per_cell)):
        step = cfg.steps[m] / cfg.image_size
        for r in range(f):
            for c in range(f):
                for j in range(k):
                    np.testing.assert_array_equal(out[:, row, :4], locs[m][:, r, c, 4 * j: 4 * j + 4])
                    np.testing.assert_array_equal(out[:, row, 4:], confs[m][:, r, c, c1 * j: c1 * (j + 1)])
                    # ... and that row's prior sits at that cell.
                    assert anchors[row, 0] == pytest.approx((c + cfg.offset) * step, abs=1e-6)
                    assert anchors[row, 1] == pytest.approx((r + cfg.offset) * step, abs=1e-6)
                    row += 1
    assert row == out.shape[1] == cfg.num_anchors


def test_head_biases_land_on_their_map_and_box(tiny):
    """Zero head kernels and biases 100 * map + 10 * box + coordinate: the
    output offsets must be that function of each prior's (map, box)."""
    model = SSDTiny(num_classes=3)
    expected = []
    for m, (name, f, k) in enumerate(zip(model.source_names, model.config.feature_map_sizes,
                                         model.config.boxes_per_cell)):
        layer = model.get_layer(f"{name}_mbox_loc")
        kernel, bias = layer.get_weights()
        bias = np.array([100 * m + 10 * j + c for j in range(k) for c in range(4)], "float32")
        layer.set_weights([np.zeros_like(kernel), bias])
        expected.append(np.tile(bias.reshape(k, 4), (f * f, 1)))
    out = np.asarray(model(_images(1, 160), training=False))[0, :, :4]
    np.testing.assert_array_equal(out, np.concatenate(expected))


# ----------------------------------------------------------- tiny model
def test_tiny_model_shapes_and_config(tiny):
    assert SSDConfig.tiny(3).num_anchors == 2390
    assert tiny.output_shape == (None, 2390, 8)
    assert _source_sizes(tiny) == tiny.config.feature_map_sizes == [20, 10, 5, 3, 1]
    assert tiny.class_names == ["cat", "dog", "bird"]
    assert tiny.config.class_names == ["cat", "dog", "bird"]


def test_tiny_save_and_load_keeps_config_names_and_outputs(keras_round_trip):
    model = SSDTiny(num_classes=3, class_names=["a", "b", "c"], normalization="l2",
                    weight_decay=5e-4)
    loaded = keras_round_trip(model, _images(2, 160, seed=4))
    assert type(loaded) is SSD
    assert loaded.config == model.config and loaded.class_names == ["a", "b", "c"]
    assert loaded.architecture == "tiny" and loaded.normalization == "l2"
    assert loaded.weight_decay == 5e-4 and len(loaded.losses) == len(model.losses)
    assert loaded.get_config() == model.get_config()


def test_weight_decay_is_l2_on_conv_kernels_only():
    wd = 5e-4
    model = SSDTiny(num_classes=2, normalization="l2", weight_decay=wd)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    expected = sum(wd / 2 * float(np.sum(np.square(np.asarray(l.kernel)))) for l in convs)
    assert len(model.losses) == len(convs)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    assert SSDTiny(num_classes=2).losses == []
    # L2Normalization's scale and biases carry no regularizer.
    assert model.get_layer("tiny_conv4_norm").gamma.regularizer is None
    for layer in convs:
        if layer.use_bias:
            assert layer.bias.regularizer is None


def test_fit_on_random_images_lowers_the_loss():
    keras.utils.set_random_seed(0)
    model = SSDTiny(num_classes=2)
    encoder = TargetEncoder.from_config(model.config)
    rng = np.random.default_rng(5)
    x = _images(8, 160, seed=6)
    targets = []
    for _ in range(8):
        xy = rng.uniform(0.0, 0.5, size=(2, 2))
        wh = rng.uniform(0.2, 0.5, size=(2, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        targets.append(encoder(boxes, rng.integers(0, 2, size=2)))
    y = np.stack(targets)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SSDLoss(), jit_compile=False)
    history = model.fit(x, y, batch_size=4, epochs=6, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]


def test_mixed_precision_outputs_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = SSDTiny(num_classes=2, normalization="l2")
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.get_layer("tiny_conv1").compute_dtype == "bfloat16"
    y = model(_images(1, 160), training=False)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"


# ------------------------------------------------------------- MobileNetV2
def test_mobilenet_v2_shapes_and_weights_from_file(tmp_path):
    reference = keras.applications.MobileNetV2(weights=None, include_top=True,
                                               input_shape=(224, 224, 3))
    path = tmp_path / "mobilenet_v2.weights.h5"
    reference.save_weights(path)
    model = SSDMobileNetV2(num_classes=20, backbone_weights=str(path))
    assert model.output_shape == (None, 3234, 25)
    assert _source_sizes(model) == [20, 10, 5, 3, 2, 1]
    assert model.get_layer("preprocessing").mode == "tf"
    for name in ("Conv1", "block_6_depthwise", "block_13_expand", "Conv_1", "Conv_1_bn"):
        for got, want in zip(model.get_layer(name).get_weights(),
                             reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    y = np.asarray(model(_images(1, 320), training=False))
    assert y.shape == (1, 3234, 25) and np.all(np.isfinite(y))


# ----------------------------------------------------------- preprocessing
def test_caffe_preprocessing_is_bgr_minus_imagenet_mean():
    x = np.array([[[[255.0, 10.0, 0.0]]]], "float32")
    y = np.asarray(CaffePreprocessing()(x))
    np.testing.assert_allclose(y[0, 0, 0], [0.0 - 103.939, 10.0 - 116.779, 255.0 - 123.68],
                               rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(ImagePreprocessing("tf")(x))[0, 0, 0], [1.0, 10 / 127.5 - 1, -1.0], rtol=1e-6
    )
    assert ImagePreprocessing("tf").get_config()["mode"] == "tf"
    with pytest.raises(ValueError, match="mode"):
        ImagePreprocessing("bgr")
    with pytest.raises(ValueError, match="3 channels"):
        CaffePreprocessing()(np.zeros((1, 2, 2, 4), "float32"))


# --------------------------------------------------------------- errors
def test_feature_map_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"feature map 0 \(tiny_conv4\) is 24x24.*feature_map_sizes\[0\] is 20"):
        SSD(SSDConfig.tiny(3).replace(image_size=192), architecture="tiny")
    with pytest.raises(ValueError, match="produces 5 feature maps"):
        SSDTiny(config=SSDConfig.ssd300(3).replace(image_size=160))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown SSD architecture"):
        SSD(SSDConfig.tiny(2), architecture="resnet")
    with pytest.raises(ValueError, match="normalization"):
        SSDTiny(num_classes=2, normalization="layernorm")
    with pytest.raises(ValueError, match="weight_decay"):
        SSDTiny(num_classes=2, weight_decay=-1.0)
    with pytest.raises(ValueError, match="no pretrained backbone"):
        SSD(SSDConfig.tiny(2), architecture="tiny", backbone_weights="imagenet")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("yolo", num_classes=2)
    with pytest.raises(ValueError, match="backbone_weights file not found"):
        SSDMobileNetV2(num_classes=2, backbone_weights="/nonexistent/mnv2.weights.h5")


def test_build_model_by_name():
    model = build_model("tiny", num_classes=4, weight_decay=1e-4)
    assert isinstance(model, SSD) and model.output_shape == (None, 2390, 9)
    assert model.weight_decay == 1e-4
    assert MODEL_BUILDERS["ssd300"] is SSD300 and MODEL_BUILDERS["ssd512"] is SSD512
    assert MODEL_BUILDERS["mobilenet_v2"] is SSDMobileNetV2
    named = build_model("Tiny", class_names=["x", "y"])
    assert named.config.num_classes == 2 and named.class_names == ["x", "y"]


def test_predict_on_arrays_equals_keras_predict_and_datasets_still_work(tiny):
    import tensorflow as tf

    x = _images(5, 160, seed=3)
    def close(a, b):
        keras.tree.map_structure(
            lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5), a, b)

    expected = keras.Model.predict(tiny, x, batch_size=2, verbose=0)
    got = tiny.predict(x, batch_size=2)  # the fast path, 3 uneven slices
    assert got["boxes"].shape == (5, 200, 4) and got["num_detections"].shape == (5,)
    close(got, expected)
    close(tiny.predict(tf.constant(x[:1])), {k: v[:1] for k, v in expected.items()})
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2)
    close(tiny.predict(dataset, verbose=0), expected)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        tiny.predict(x, batch_size=0)
