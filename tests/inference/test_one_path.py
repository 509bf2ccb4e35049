"""One inference path: `model.predict` decodes with the model's settable
`prediction_decoder` (keras-hub's pattern), `model(images)` gives the raw
heads, and predict_image, evaluate and the mAP callback sit on it."""

import keras
import numpy as np
import pytest

from keras_ssd.accel import prepare_for_inference
from keras_ssd.inference import (
    DETECTION_KEYS,
    OUTPUT_KEYS,
    load_for_model,
    predict_image,
    predict_images,
    to_pixels,
)
from keras_ssd.layers import DecodeDetections

pytestmark = pytest.mark.backend


def images(n=2, size=160, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def assert_same_detections(got, want):
    """Same detections; boxes / scores to float rounding (`predict` compiles
    the whole model, whose exp may differ from the eager one by ulps)."""
    want = {k: keras.ops.convert_to_numpy(v) for k, v in want.items()}
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=1e-5)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-6)


# ------------------------------------------------------------ the model
def test_predict_decodes_and_calling_gives_the_raw_heads(tiny_model):
    x = images()
    out = tiny_model.predict(x)
    assert sorted(out) == sorted(OUTPUT_KEYS)
    assert out["boxes"].shape == (2, 200, 4) and out["labels"].dtype == np.int32
    raw = tiny_model(x)
    assert tuple(raw.shape) == (2, tiny_model.config.num_anchors, 4 + 2 + 1)
    assert_same_detections(out, DecodeDetections(tiny_model.config)(raw))
    assert_same_detections(tiny_model.predict_on_batch(x), out)
    assert (out["num_detections"] > 0).all()


def test_the_prediction_decoder_is_settable_checked_and_not_saved(make_tiny_model,
                                                                   tmp_path):
    model = make_tiny_model(postprocessing={"iou_threshold": 0.3, "top_k": 50})
    assert model.prediction_decoder.options["iou_threshold"] == 0.3
    assert model.predict(images(1))["boxes"].shape == (1, 50, 4)
    nine = model.prediction_decoder.replace(top_k=9)
    model.prediction_decoder = nine
    assert model.prediction_decoder is nine
    assert model.predict(images(1))["boxes"].shape == (1, 9, 4)  # not the old trace
    with pytest.raises(ValueError, match="must be a DecodeDetections layer"):
        model.prediction_decoder = "nms"
    other = make_tiny_model(num_classes=5).config
    with pytest.raises(ValueError, match="built for 2390 priors and 5 classes"):
        model.prediction_decoder = DecodeDetections(other)
    with pytest.raises(ValueError, match="unknown decode option"):
        model.prediction_decoder.replace(nms_threshold=0.5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert loaded.prediction_decoder.top_k == 50  # its postprocessing, not the set one
    assert not any(isinstance(layer, DecodeDetections) for layer in loaded.layers)


def test_predict_adds_the_coco_category_ids_of_the_labels(make_tiny_model):
    from keras_ssd.config import SSDConfig

    config = SSDConfig.tiny(3, ["person", "N/A-2", "car"]).replace(
        category_ids=[1, None, 3])
    model = make_tiny_model(num_classes=3, config=config)
    out = model.predict(images(1))
    labels, ids = out["labels"][0], out["category_ids"][0]
    real = labels >= 0
    np.testing.assert_array_equal(ids[real], np.array([1, -1, 3])[labels[real]])
    assert (ids[labels < 0] == -1).all()


def test_a_mixed_precision_model_gives_float32_detections(make_tiny_model):
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = make_tiny_model()
    finally:
        keras.config.set_dtype_policy(previous)
    out = model.predict(images(1))
    assert out["boxes"].dtype == np.float32 and out["scores"].dtype == np.float32


def test_the_speed_up_view_decodes_as_the_model_does(make_tiny_model):
    model = make_tiny_model()
    fast = prepare_for_inference(model)
    x = images()
    assert_same_detections(fast.predict_on_batch(x), model.predict_on_batch(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-4)  # raw heads on call
    model.prediction_decoder = model.prediction_decoder.replace(top_k=7)
    assert prepare_for_inference(model).predict_on_batch(x)["boxes"].shape == (2, 7, 4)


# ------------------------------------------------------------ to_pixels
def test_to_pixels_scales_per_axis_clips_drops_padding_and_filters():
    out = {
        "boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.5, 1.2, 1.1],
                            [0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]]], np.float32),
        "scores": np.array([[0.9, 0.6, 0.3, 0.0]], np.float32),
        "labels": np.array([[1, 0, 1, -1]], np.int32),
        "num_detections": np.array([3]),
    }
    d = to_pixels(out, 0, 200, 100, names=["cat", "dog"])
    np.testing.assert_allclose(d["boxes"], [[20, 20, 100, 60], [0, 50, 200, 100],
                                            [0, 0, 100, 50]], atol=1e-4)
    assert d["boxes"].dtype == np.float32 and d["labels"].dtype == np.int64
    assert d["names"] == ["dog", "cat", "dog"]
    assert to_pixels(out, 0, 200, 100, score_threshold=0.5)["labels"].tolist() == [1, 0]
    assert to_pixels(out, 0, 200, 100, top_k=1)["scores"].tolist() == [pytest.approx(0.9)]
    # Without num_detections, the padding label -1 marks the end.
    no_count = {k: v for k, v in out.items() if k != "num_detections"}
    assert len(to_pixels(no_count, 0, 200, 100)["boxes"]) == 3
    with_ids = {**out, "category_ids": np.array([[18, 1, 18, -1]])}
    assert to_pixels(with_ids, 0, 200, 100)["category_ids"].tolist() == [18, 1, 18]
    assert "category_ids" not in to_pixels(with_ids, 0, 200, 100, category_ids=False)


def test_load_for_model_renders_like_the_training_pipeline(synthetic_voc):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset
    from keras_ssd.data.sequence import load_resized

    ds = VOCDataset(synthetic_voc, "test", class_names=SYNTHETIC_CLASSES)
    for i in range(len(ds)):
        image, size = load_for_model(ds[i]["image_path"], 96)
        expected, width, height = load_resized(ds, i, 96)
        assert size == (width, height)
        np.testing.assert_array_equal(image, expected)
        from_array, _ = load_for_model(ds.load_image(i), (96, 96))
        np.testing.assert_array_equal(from_array, expected)  # small: no DCT scaling


# ------------------------------------------------------------ one path
@pytest.fixture(scope="module")
def large_voc(tmp_path_factory):
    """3 test images over twice the tiny SSD's input, so the JPEGs are
    decoded DCT-scaled (as the training pipeline reads them)."""
    from keras_ssd.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("large_voc") / "voc"
    make_synthetic_voc(root, num_trainval=1, num_test=3, image_size=(400, 336),
                       class_names=("circle", "square"), seed=5)
    return str(root)


def test_predict_image_evaluate_and_the_callback_give_the_same_detections(
        large_voc, make_tiny_model):
    from keras_ssd.data import VOCDataset
    from keras_ssd.evaluation import evaluate, voc_map
    from keras_ssd.training.callbacks import MeanAveragePrecision

    ds = VOCDataset(large_voc, "test", class_names=("circle", "square"))
    model = make_tiny_model(num_classes=2, seed=4, class_names=["circle", "square"])
    paths = [ds[i]["image_path"] for i in range(len(ds))]

    result = evaluate(model, ds, batch_size=2, verbose=0, return_detections=True)
    assert set(result["detections"][0]) == set(DETECTION_KEYS)
    per_image = [predict_image(model, p, confidence_threshold=0.01) for p in paths]
    batched = predict_images(model, paths, confidence_threshold=0.01, batch_size=3)
    for a, b, c in zip(result["detections"], per_image, batched):
        assert len(a["boxes"]) > 10  # an untrained model: many low scores
        for other in (b, c):
            # Other batch sizes may round the convolutions differently (XLA).
            np.testing.assert_allclose(other["boxes"], a["boxes"], rtol=1e-6, atol=1e-3)
            np.testing.assert_allclose(other["scores"], a["scores"], rtol=0, atol=1e-6)
            np.testing.assert_array_equal(other["labels"], a["labels"])
        assert a["names"] == b["names"] == c["names"]
    # A higher threshold: the same detections above it.
    strict = predict_images(model, paths, confidence_threshold=0.3)
    for a, s in zip(result["detections"], strict):
        keep = a["scores"] > 0.3
        np.testing.assert_allclose(s["boxes"], a["boxes"][keep], rtol=1e-6, atol=1e-3)

    callback = MeanAveragePrecision(ds, batch_size=2, verbose=0)
    callback.set_model(model)
    callback.set_params({"epochs": 1})
    logs = {}
    callback.on_epoch_end(0, logs)
    direct = voc_map(per_image, [ds[i] for i in range(len(ds))], 2,
                     class_names=ds.class_names)
    assert logs["val_mAP"] == result["mAP"]  # the same batches: the same numbers
    assert direct["mAP"] == pytest.approx(result["mAP"], abs=1e-9)
