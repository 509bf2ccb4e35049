"""AnchorBoxes layer: anchors from keras_ssd.anchors, shapes, checks, config."""

import keras
import numpy as np
import pytest

from keras_ssd.anchors import feature_map_anchors, generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.layers.anchor_boxes import AnchorBoxes


def test_emits_all_anchors_broadcast_over_the_batch(tiny_config):
    config = tiny_config()
    out = AnchorBoxes(config)(np.zeros((3, config.num_anchors, 8), np.float32))
    out = np.asarray(out)
    assert out.shape == (3, 88, 4) and out.dtype == np.float32
    for b in range(3):
        np.testing.assert_array_equal(out[b], generate_anchors(config))


def test_ssd300_layer_gives_the_8732_reference_anchors():
    config = SSDConfig.ssd300(20)
    out = np.asarray(AnchorBoxes(config)(np.zeros((1, 8732, 25), np.float32)))
    np.testing.assert_array_equal(out[0], generate_anchors(config))


@pytest.mark.parametrize("index", [0, 1])
def test_feature_map_mode_emits_that_maps_anchors(index, tiny_config):
    config = tiny_config()
    f = config.feature_map_sizes[index]
    out = np.asarray(AnchorBoxes(config, feature_map_index=index)(np.zeros((2, f, f, 5))))
    assert out.shape == (2, f * f * config.boxes_per_cell[index], 4)
    np.testing.assert_array_equal(out[1], feature_map_anchors(config, index))


def test_symbolic_use_in_a_functional_model_with_unknown_batch(tiny_config):
    config = tiny_config()
    inputs = keras.Input((2, 2, 7))
    anchors = AnchorBoxes(config, feature_map_index=1)(inputs)
    assert anchors.shape == (None, 2 * 2 * 6, 4) and anchors.dtype == "float32"
    model = keras.Model(inputs, anchors)
    out = model.predict(np.zeros((5, 2, 2, 7), np.float32), verbose=0)
    assert out.shape == (5, 24, 4)
    np.testing.assert_array_equal(out[4], feature_map_anchors(config, 1))


def test_feature_map_of_wrong_size_raises_clear_error(tiny_config):
    layer = AnchorBoxes(tiny_config(), feature_map_index=0)
    with pytest.raises(ValueError, match="height is 5 but the SSD config says 4"):
        layer(np.zeros((1, 5, 4, 3), np.float32))
    with pytest.raises(ValueError, match="width is 3"):
        AnchorBoxes(tiny_config(), feature_map_index=0)(keras.Input((4, 3, 8)))
    with pytest.raises(ValueError, match="height, width, channels"):
        AnchorBoxes(tiny_config(), feature_map_index=0)(np.zeros((1, 16, 3), np.float32))


def test_predictions_with_wrong_anchor_count_raise_clear_error(tiny_config):
    with pytest.raises(ValueError, match="predictions have 80 priors but the SSD config has 88"):
        AnchorBoxes(tiny_config())(np.zeros((1, 80, 8), np.float32))


@pytest.mark.parametrize("index", [2, -1, 1.0, True, "0"])
def test_bad_feature_map_index_raises(index, tiny_config):
    with pytest.raises(ValueError, match="feature_map_index"):
        AnchorBoxes(tiny_config(), feature_map_index=index)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="AnchorBoxes: invalid SSD config"):
        AnchorBoxes({"image_size": 32, "num_classes": 2})


@pytest.mark.parametrize("index", [None, 1])
def test_get_config_round_trip(index, tiny_config, config_round_trip):
    config = tiny_config()
    layer = AnchorBoxes(config, feature_map_index=index, name="anchors")
    cfg = layer.get_config()
    assert cfg["config"] == config.to_dict() and cfg["feature_map_index"] == index
    x = np.zeros((1, 88, 8)) if index is None else np.zeros((1, 2, 2, 1))
    assert config_round_trip(layer, x).config == config


def test_anchors_stay_float32_under_mixed_precision(tiny_config):
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        out = AnchorBoxes(tiny_config())(keras.ops.zeros((1, 88, 8), "bfloat16"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_array_equal(np.asarray(out)[0], generate_anchors(tiny_config()))


def test_compute_output_shape(tiny_config):
    layer = AnchorBoxes(tiny_config(), feature_map_index=0)
    assert layer.compute_output_shape((None, 4, 4, 16)) == (None, 64, 4)
    assert AnchorBoxes(tiny_config()).compute_output_shape((2, 88, 8)) == (2, 88, 4)


def test_num_anchors_and_its_deprecated_name_num_priors(tiny_config):
    config = tiny_config()
    layer = AnchorBoxes(config)
    assert layer.num_anchors == config.num_anchors == 88
    assert AnchorBoxes(config, feature_map_index=1).num_anchors == 2 * 2 * 6
    with pytest.warns(DeprecationWarning, match="num_priors is deprecated; use .*anchors"):
        assert layer.num_priors == 88
