"""inference_model: training SSD -> detections model; save/load; config lookup."""

import keras
import numpy as np
import pytest

from keras_ssd.config import SSDConfig
from keras_ssd.inference.model import get_config_from_model, inference_model
from keras_ssd.layers.anchor_boxes import AnchorBoxes
from keras_ssd.layers.decode_detections import DecodeDetections


def stand_in_model(config, seed=0):
    """A small functional 'SSD': two maps with 4 and 6 boxes per cell."""
    keras.utils.set_random_seed(seed)
    per = 4 + config.num_classes + 1
    images = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=8, padding="same", activation="relu")(images)
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    heads = [
        keras.layers.Reshape((-1, per))(keras.layers.Conv2D(k * per, 1)(f))
        for f, k in zip((x, y), config.boxes_per_cell)
    ]
    out = keras.layers.Concatenate(axis=1)(heads)
    model = keras.Model(images, out, name="standin")
    model.config = config
    return model


def assert_same_detections(got, want):
    """Same detections; boxes / scores to float rounding (`predict` compiles
    the whole model with XLA, whose exp differs from the eager one by ulps)."""
    want = {k: np.asarray(v) for k, v in want.items()}
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-6)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-6)


def images(n=2, size=32, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def test_inference_model_equals_decoding_the_training_output(tiny_config):
    config = tiny_config()
    model = stand_in_model(config)
    detector = inference_model(model, top_k=20, confidence_threshold=0.05)
    x = images()
    out = detector.predict(x, verbose=0)
    assert set(out) == {"boxes", "scores", "labels", "num_detections"}
    assert out["boxes"].shape == (2, 20, 4) and out["labels"].dtype == np.int32
    expected = DecodeDetections(config, top_k=20, confidence_threshold=0.05)(
        model.predict(x, verbose=0)
    )
    assert_same_detections(out, expected)
    assert (out["num_detections"] > 0).all()
    layers = {type(layer) for layer in detector.layers}
    assert AnchorBoxes in layers and DecodeDetections in layers


def test_saved_and_loaded_inference_model_gives_identical_outputs(tmp_path, tiny_config):
    config = tiny_config()
    detector = inference_model(stand_in_model(config), iou_threshold=0.3, top_k=15)
    x = images(3)
    before = detector.predict(x, verbose=0)
    path = tmp_path / "detector.keras"
    detector.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.predict(x, verbose=0)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert get_config_from_model(loaded) == config
    decode = [layer for layer in loaded.layers if isinstance(layer, DecodeDetections)][0]
    assert decode.iou_threshold == 0.3 and decode.top_k == 15


def test_get_config_from_model_finds_training_and_inference_configs(tiny_config):
    config = tiny_config()
    model = stand_in_model(config)
    assert get_config_from_model(model) is config
    assert get_config_from_model(inference_model(model)) == config
    assert get_config_from_model(config) is config
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no SSDConfig"):
        get_config_from_model(plain)
    with pytest.raises(ValueError, match="has no SSDConfig"):
        inference_model(plain)


def test_unknown_decode_option_raises(tiny_config):
    with pytest.raises(ValueError, match="unknown decode option.*nms_threshold"):
        inference_model(stand_in_model(tiny_config()), nms_threshold=0.5)


def test_model_whose_output_disagrees_with_config_raises(tiny_config):
    model = stand_in_model(tiny_config())
    model.config = tiny_config().replace(num_classes=4)
    with pytest.raises(ValueError, match="values per prior"):
        inference_model(model)


def test_mixed_precision_training_model_gives_float32_detections(tiny_config):
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = stand_in_model(tiny_config())
        assert model.output.dtype == "bfloat16"
        detector = inference_model(model, top_k=10)
    finally:
        keras.config.set_dtype_policy(previous)
    out = detector.predict(images(1), verbose=0)
    assert out["boxes"].dtype == np.float32 and out["scores"].dtype == np.float32


def test_real_ssd_tiny_model_round_trip(tmp_path):
    from keras_ssd.models import SSDTiny

    keras.utils.set_random_seed(0)
    model = SSDTiny(num_classes=2, class_names=["cat", "dog"])
    detector = inference_model(model, top_k=25)
    config = get_config_from_model(detector)
    assert config == model.config and config.class_names == ["cat", "dog"]
    x = images(2, size=config.image_size)
    out = detector.predict(x, verbose=0)
    assert out["boxes"].shape == (2, 25, 4)
    expected = DecodeDetections(config, top_k=25)(model.predict(x, verbose=0))
    assert_same_detections(out, expected)
    path = tmp_path / "tiny_detector.keras"
    detector.save(path)
    loaded = keras.saving.load_model(path)
    again = loaded.predict(x, verbose=0)
    for key in out:
        np.testing.assert_array_equal(out[key], again[key])
    assert get_config_from_model(loaded) == config
