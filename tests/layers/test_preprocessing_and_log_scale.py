"""ImagePreprocessing's "custom" mode, DecodeDetections' max_log_scale, and
the SSD model's preprocessing / postprocessing arguments."""

import math

import numpy as np
import pytest

from keras_ssd.config import SSDConfig
from keras_ssd.layers.decode_detections import DecodeDetections
from keras_ssd.layers.preprocessing import ImagePreprocessing, preprocessing_arguments

PIXELS = np.array([[[[255.0, 0.0, 10.0], [12.0, 200.0, 77.0]]]], "float32")  # (1, 1, 2, 3)


@pytest.mark.backend
def test_custom_mode_reorders_scales_subtracts_and_divides():
    layer = ImagePreprocessing("custom", channel_order="bgr", scale=0.5,
                               mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 8.0])
    expected = (PIXELS[..., ::-1] * 0.5 - np.array([1.0, 2.0, 3.0])) / [2.0, 4.0, 8.0]
    np.testing.assert_allclose(np.asarray(layer(PIXELS)), expected, rtol=1e-6)


@pytest.mark.backend
def test_torchvision_normalisation_is_rgb_minus_its_mean_times_255():
    layer = ImagePreprocessing("custom", channel_order="rgb", scale=1 / 255,
                               mean=[0.48235, 0.45882, 0.40784], std=[1 / 255] * 3)
    expected = (PIXELS / 255.0 - np.array([0.48235, 0.45882, 0.40784])) * 255.0
    np.testing.assert_allclose(np.asarray(layer(PIXELS)), expected, atol=2e-5)
    voc = ImagePreprocessing("custom", mean=[123, 117, 104])
    np.testing.assert_array_equal(np.asarray(voc(PIXELS)), PIXELS - [123.0, 117.0, 104.0])


def test_a_custom_layer_round_trips_through_its_config(config_round_trip):
    layer = ImagePreprocessing("custom", channel_order="bgr", scale=2.0, mean=5.0, std=[1, 2, 3])
    config = layer.get_config()
    assert config["mean"] == [5.0, 5.0, 5.0] and config["std"] == [1.0, 2.0, 3.0]
    config_round_trip(layer, PIXELS)
    assert preprocessing_arguments(layer.spec) == {**layer.spec}


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "none"])
def test_named_modes_keep_their_output_and_config(mode):
    layer = ImagePreprocessing(mode)
    assert layer.get_config()["mode"] == mode and "mean" not in layer.get_config()
    assert layer.spec == mode
    if mode == "caffe":
        expected = PIXELS[..., ::-1] - np.array([103.939, 116.779, 123.68])
    elif mode == "tf":
        expected = PIXELS / 127.5 - 1
    elif mode == "torch":
        expected = (PIXELS / 255 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    else:
        expected = PIXELS
    np.testing.assert_allclose(np.asarray(layer(PIXELS)), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="caffe", mean=[1, 2, 3]), "only apply to mode='custom'"),
    (dict(mode="custom", channel_order="rbg"), "channel_order must be one of"),
    (dict(mode="custom", mean=[1, 2]), "mean must be a number or 3 finite numbers"),
    (dict(mode="custom", std=[1, 0, 1]), "std must be positive"),
    (dict(mode="custom", scale=0), "scale must be one positive number"),
    (dict(mode="custom", scale=[1, 2, 3]), "scale must be one positive number"),
])
def test_bad_custom_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagePreprocessing(**kwargs)


def test_preprocessing_arguments_reads_names_and_dicts():
    assert preprocessing_arguments("tf") == {"mode": "tf"}
    assert preprocessing_arguments({"mean": [1, 2, 3]})["mode"] == "custom"
    with pytest.raises(ValueError, match="unknown preprocessing keys"):
        preprocessing_arguments({"mode": "custom", "average": 1})


# ----------------------------------------------------------- max_log_scale
def _one_prior_config():
    return SSDConfig(image_size=100, feature_map_sizes=[1], steps=[100], min_sizes=[20],
                     max_sizes=[20], aspect_ratios=[[]], num_classes=1)


@pytest.mark.backend
def test_max_log_scale_caps_the_decoded_width_and_height():
    config = _one_prior_config()  # two 0.2 x 0.2 priors at the centre
    predictions = np.zeros((1, 2, 6), "float32")
    predictions[0, :, 2] = 30.0      # log-scale 30 * 0.2 = 6 > cap
    predictions[0, :, 3] = -1.0      # log-scale -0.2, under the cap
    predictions[0, :, 5] = 10.0      # the class wins
    cap = math.log(1000 / 16)
    capped = DecodeDetections(config, max_log_scale=cap, iou_threshold=1.0)(predictions)
    free = DecodeDetections(config, iou_threshold=1.0)(predictions)
    w_capped = float(capped["boxes"][0, 0, 2] - capped["boxes"][0, 0, 0])
    w_free = float(free["boxes"][0, 0, 2] - free["boxes"][0, 0, 0])
    h = float(capped["boxes"][0, 0, 3] - capped["boxes"][0, 0, 1])
    np.testing.assert_allclose(w_capped, 0.2 * math.exp(cap), rtol=1e-5)
    np.testing.assert_allclose(w_free, 0.2 * math.exp(6.0), rtol=1e-5)
    np.testing.assert_allclose(h, 0.2 * math.exp(-0.2), rtol=1e-5)


def test_max_log_scale_is_in_the_config_and_checked():
    config = _one_prior_config()
    layer = DecodeDetections(config, max_log_scale=2.5, clip_boxes=True)
    assert layer.get_config()["max_log_scale"] == 2.5
    assert DecodeDetections.from_config(layer.get_config()).max_log_scale == 2.5
    assert DecodeDetections(config).max_log_scale is None
    with pytest.raises(ValueError, match="max_log_scale must be None or a finite number"):
        DecodeDetections(config, max_log_scale="big")


@pytest.mark.backend
def test_min_log_scale_raises_the_decoded_width_and_height():
    config = _one_prior_config()
    predictions = np.zeros((1, 2, 6), "float32")
    predictions[0, :, 2] = -30.0     # log-scale -6 < -cap: raised to -cap
    predictions[0, :, 3] = 30.0      # log-scale 6 > cap: lowered to cap
    predictions[0, :, 5] = 10.0
    cap = math.log(1000 / 16)
    both = DecodeDetections(config, max_log_scale=cap, min_log_scale=-cap,
                            iou_threshold=1.0)(predictions)
    upper = DecodeDetections(config, max_log_scale=cap, iou_threshold=1.0)(predictions)
    box, free = np.asarray(both["boxes"][0, 0]), np.asarray(upper["boxes"][0, 0])
    np.testing.assert_allclose(box[2] - box[0], 0.2 * math.exp(-cap), rtol=1e-5)
    np.testing.assert_allclose(free[2] - free[0], 0.2 * math.exp(-6.0), rtol=1e-4)
    np.testing.assert_allclose(box[3] - box[1], 0.2 * math.exp(cap), rtol=1e-5)


def test_min_log_scale_is_in_the_config_and_checked():
    config = _one_prior_config()
    layer = DecodeDetections(config, max_log_scale=2.5, min_log_scale=-2.5)
    assert DecodeDetections.from_config(layer.get_config()).min_log_scale == -2.5
    assert layer.replace(top_k=3).min_log_scale == -2.5
    with pytest.raises(ValueError, match="min_log_scale must be None or a finite number"):
        DecodeDetections(config, min_log_scale=float("-inf"))
    with pytest.raises(ValueError, match=r"min_log_scale \(3.0\) must lie below "
                                         r"max_log_scale \(2.5\)"):
        DecodeDetections(config, max_log_scale=2.5, min_log_scale=3.0)


# ------------------------------------------------------------ the SSD model
def test_ssd_model_stores_its_preprocessing_and_postprocessing(keras_round_trip):
    from keras_ssd.models import SSD

    tiny_config = SSDConfig.tiny(num_classes=2)
    spec = {"mode": "custom", "channel_order": "rgb", "scale": 1.0,
            "mean": [123.0, 117.0, 104.0], "std": [1.0, 1.0, 1.0]}
    post = {"top_k": 100, "clip_boxes": True}
    model = SSD(tiny_config, architecture="tiny", preprocessing=spec, postprocessing=post)
    assert model.get_layer("preprocessing").spec == spec
    x = np.random.default_rng(0).uniform(0, 255, (1, 160, 160, 3)).astype("float32")
    again = keras_round_trip(model, x)
    assert again.preprocessing == spec and again.postprocessing == post
    # The architecture's own preprocessing when none is given.
    assert SSD(tiny_config, architecture="tiny").preprocessing == "tf"
    with pytest.raises(ValueError, match="SSD: postprocessing: unknown decode option"):
        SSD(tiny_config, architecture="tiny", postprocessing={"nms": 0.5})


def test_the_prediction_decoder_starts_from_the_models_postprocessing():
    from keras_ssd.inference.predict import decoding_options
    from keras_ssd.models import SSD

    post = {"top_k": 7, "clip_boxes": True, "max_log_scale": 3.0,
            "max_candidates_per_class": 50, "confidence_threshold": 0.2}
    model = SSD(SSDConfig.tiny(num_classes=2), architecture="tiny", postprocessing=post)
    decoder = model.prediction_decoder
    assert (decoder.top_k, decoder.clip_boxes, decoder.max_log_scale,
            decoder.max_candidates_per_class) == (7, True, 3.0, 50)
    assert decoding_options(model) == {"confidence_threshold": 0.2, "iou_threshold": 0.45,
                                       "top_k": 7}
    assert model.prediction_decoder is decoder  # its own settings: served as it is
    assert decoding_options(model, top_k=3)["top_k"] == 3
    assert model.prediction_decoder is decoder  # fewer: its output cut
    decoding_options(model, top_k=9)
    decoder = model.prediction_decoder  # more: a decoder that serves them
    assert (decoder.top_k, decoder.max_log_scale, decoder.clip_boxes) == (9, 3.0, True)
    plain = SSD(SSDConfig.tiny(num_classes=2), architecture="tiny")
    assert plain.prediction_decoder.options == {
        "confidence_threshold": 0.01, "iou_threshold": 0.45,
        "max_candidates_per_class": 400, "top_k": 200, "clip_boxes": False,
        "max_log_scale": None, "min_log_scale": None, "max_candidates_per_level": None,
        "drop_empty_boxes": False}
