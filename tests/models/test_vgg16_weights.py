"""SSD300's backbone_weights: conv layers copied, fc6/fc7 decimated from a
full VGG16 (weights written here, since ImageNet cannot be downloaded)."""

import numpy as np
import pytest

import keras

from keras_ssd.models import SSD300, decimate_fc6, decimate_fc7

VGG_CONVS = [(b, i) for b, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    keras.utils.set_random_seed(7)
    vgg = keras.applications.VGG16(weights=None, include_top=True)
    # Random, non-zero biases so that bias copying is checked too.
    rng = np.random.default_rng(7)
    for layer in vgg.layers:
        if layer.weights:
            layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    path = tmp_path_factory.mktemp("vgg") / "vgg16.weights.h5"
    vgg.save_weights(path)
    weights = {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}
    return str(path), weights, vgg


@pytest.fixture(scope="module")
def converted(vgg16_file):
    path, _, _ = vgg16_file
    return SSD300(num_classes=2, backbone_weights=path)


def test_conv_layers_are_copied(converted, vgg16_file):
    _, weights, _ = vgg16_file
    for b, i in VGG_CONVS:
        kernel, bias = converted.get_layer(f"conv{b}_{i}").get_weights()
        np.testing.assert_array_equal(kernel, weights[f"block{b}_conv{i}"][0])
        np.testing.assert_array_equal(bias, weights[f"block{b}_conv{i}"][1])


def test_fc6_is_decimated_fc1_element_by_element(converted, vgg16_file):
    _, weights, _ = vgg16_file
    fc1_kernel, fc1_bias = weights["fc1"]  # (25088, 4096); rows: Flatten of (7, 7, 512)
    kernel, bias = converted.get_layer("fc6").get_weights()
    assert kernel.shape == (3, 3, 512, 1024) and bias.shape == (1024,)
    # kernel[i, j, c, o] = fc1[row of (3i, 3j, c) in (H, W, C) flatten order, 4o]
    i, j, c = np.meshgrid(np.arange(3), np.arange(3), np.arange(512), indexing="ij")
    rows = ((3 * i) * 7 + 3 * j) * 512 + c  # (3, 3, 512)
    cols = 4 * np.arange(1024)
    expected = fc1_kernel[rows[..., None], cols[None, None, None, :]]
    np.testing.assert_array_equal(kernel, expected)
    np.testing.assert_array_equal(bias, fc1_bias[cols])
    # spot checks written out by hand
    assert kernel[0, 0, 0, 0] == fc1_kernel[0, 0]
    assert kernel[2, 1, 5, 3] == fc1_kernel[(6 * 7 + 3) * 512 + 5, 12]
    assert kernel[1, 2, 511, 1023] == fc1_kernel[(3 * 7 + 6) * 512 + 511, 4092]


def test_fc7_is_decimated_fc2_element_by_element(converted, vgg16_file):
    _, weights, _ = vgg16_file
    fc2_kernel, fc2_bias = weights["fc2"]
    kernel, bias = converted.get_layer("fc7").get_weights()
    assert kernel.shape == (1, 1, 1024, 1024)
    for a in (0, 1, 517, 1023):
        for b in (0, 2, 900, 1023):
            assert kernel[0, 0, a, b] == fc2_kernel[4 * a, 4 * b]
    idx = 4 * np.arange(1024)
    np.testing.assert_array_equal(kernel[0, 0], fc2_kernel[np.ix_(idx, idx)])
    np.testing.assert_array_equal(bias, fc2_bias[idx])


def test_decimated_fc6_matches_the_fully_connected_layer_on_a_sampled_input(vgg16_file):
    """The 3x3 conv applied to the 7x7 map's taps at (0, 3, 6) is the fc
    layer restricted to those inputs: check with a map that is zero elsewhere."""
    _, weights, _ = vgg16_file
    kernel, bias = decimate_fc6(*weights["fc1"])
    rng = np.random.default_rng(0)
    pool5 = np.zeros((7, 7, 512), "float32")
    pool5[::3, ::3] = rng.normal(size=(3, 3, 512))
    fc = pool5.reshape(-1) @ weights["fc1"][0] + weights["fc1"][1]
    conv = np.einsum("ijc,ijco->o", pool5[::3, ::3], kernel) + bias
    np.testing.assert_allclose(conv, fc[::4], rtol=1e-4, atol=1e-4)
    k7, b7 = decimate_fc7(*weights["fc2"])
    assert k7.shape == (1, 1, 1024, 1024) and b7.shape == (1024,)


def test_imagenet_uses_keras_vgg16_with_top(monkeypatch, vgg16_file):
    _, weights, vgg = vgg16_file
    calls = []

    def fake_vgg16(**kwargs):
        calls.append(kwargs)
        return vgg

    monkeypatch.setattr(keras.applications, "VGG16", fake_vgg16)
    model = SSD300(num_classes=2, backbone_weights="imagenet")
    assert calls == [{"weights": "imagenet", "include_top": True}]
    np.testing.assert_array_equal(model.get_layer("conv5_3").get_weights()[0],
                                  weights["block5_conv3"][0])


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="backbone_weights file not found"):
        SSD300(num_classes=2, backbone_weights=str(tmp_path / "nope.weights.h5"))


def test_wrong_suffix_and_wrong_type_are_clear_errors(tmp_path):
    bad = tmp_path / "vgg16.npz"
    bad.write_bytes(b"not weights")
    with pytest.raises(ValueError, match=r"\.h5"):
        SSD300(num_classes=2, backbone_weights=str(bad))
    with pytest.raises(ValueError, match="backbone_weights must be"):
        SSD300(num_classes=2, backbone_weights=123)


def test_notop_weights_file_is_rejected_with_a_hint(tmp_path):
    notop = keras.applications.VGG16(weights=None, include_top=False)
    path = tmp_path / "vgg16_notop.weights.h5"
    notop.save_weights(path)
    with pytest.raises(ValueError, match=r"(?s)could not load VGG16 weights from .*include_top=True"):
        SSD300(num_classes=2, backbone_weights=str(path))
