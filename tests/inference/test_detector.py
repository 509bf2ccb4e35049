"""Detector: the one path from images to detections in pixels, shared by
predict_image, evaluate and the mAP callback; the output vocabulary and its
keras-ssd 0.1 keys; inference models saved by 0.1."""

import json
import pathlib
import warnings
import zipfile

import keras
import numpy as np
import pytest

import keras_ssd

from keras_ssd.inference import (
    DETECTION_KEYS,
    OUTPUT_KEYS,
    Detections,
    Detector,
    get_detector,
    inference_model,
    predict_image,
    predict_images,
)
from keras_ssd.inference.detector import load_for_model, to_pixels

pytestmark = pytest.mark.backend

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


# ------------------------------------------------------------ vocabulary
def test_detections_answer_the_0_1_keys_with_a_deprecation_warning():
    scores, count = np.array([[0.9, 0.0]]), np.array([1])
    d = Detections(boxes=np.zeros((1, 2, 4)), scores=scores, labels=np.array([[0, -1]]),
                   num_detections=count)
    with pytest.warns(DeprecationWarning, match=r"detections\['confidence'\].*'scores'"):
        assert d["confidence"] is scores
    with pytest.warns(DeprecationWarning, match=r"detections\['count'\].*'num_detections'"):
        assert d["count"] is count
    with pytest.warns(DeprecationWarning):
        assert d.get("confidence") is scores
    assert "confidence" not in d and sorted(d) == sorted(OUTPUT_KEYS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert d["scores"] is scores and d.get("nothing", 3) == 3
    with pytest.raises(KeyError):
        d["nothing"]
    per_image = Detections(boxes=np.zeros((0, 4)), scores=np.zeros((0,)))
    with pytest.raises(KeyError):
        per_image["count"]  # no num_detections to answer with


def test_predict_batch_speaks_the_new_keys_and_the_old_ones_still_work(tiny_model):
    detector = Detector(tiny_model, top_k=9)
    out = detector.predict_batch(np.zeros((2, 160, 160, 3), np.float32))
    assert isinstance(out, Detections) and sorted(out) == sorted(OUTPUT_KEYS)
    assert out["boxes"].shape == (2, 9, 4) and out["num_detections"].shape == (2,)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(out["confidence"], out["scores"])
    raw = detector.inference_model.predict_on_batch(np.zeros((1, 160, 160, 3), np.float32))
    assert sorted(raw) == sorted(OUTPUT_KEYS)  # what Keras' predict returns, renamed


def test_predict_image_and_evaluate_return_the_same_per_image_keys(
        make_tiny_model, synthetic_voc):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset
    from keras_ssd.evaluation import evaluate

    ds = VOCDataset(synthetic_voc, "test", class_names=SYNTHETIC_CLASSES)
    model = make_tiny_model(num_classes=len(ds.class_names),
                            class_names=list(ds.class_names))
    det = predict_image(model, ds[0]["image_path"], confidence_threshold=0.0, top_k=5)
    result = evaluate(model, ds, top_k=5, verbose=0, max_images=1, return_detections=True)
    assert set(det) == set(DETECTION_KEYS) == set(result["detections"][0])


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
    assert callback._predictor is get_detector(model, 0.01, 0.45, 200)
    direct = voc_map(per_image, [ds[i] for i in range(len(ds))], 2, class_names=ds.class_names)
    assert logs["val_mAP"] == result["mAP"]  # the same batches: the same numbers
    assert direct["mAP"] == pytest.approx(result["mAP"], abs=1e-9)


def test_a_looser_inference_model_is_used_as_is_and_filtered(tiny_model):
    image = np.random.default_rng(3).integers(0, 255, (120, 90, 3)).astype(np.uint8)
    loose = inference_model(tiny_model, confidence_threshold=0.0, top_k=200)
    reused = get_detector(loose, 0.0, 0.45, 7)
    assert reused.inference_model is loose
    want = predict_image(tiny_model, image, confidence_threshold=0.0, top_k=7)
    got = predict_image(loose, image, confidence_threshold=0.0, top_k=7)
    assert len(got["boxes"]) == 7
    for key in ("boxes", "scores", "labels"):
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)
    # A tighter decoder cannot give more: it is decoded again from its predictions.
    tight = inference_model(tiny_model, confidence_threshold=0.0, top_k=3)
    redone = get_detector(tight, 0.0, 0.45, 7)
    assert redone.inference_model is not tight
    again = predict_image(tight, image, confidence_threshold=0.0, top_k=7)
    np.testing.assert_allclose(again["boxes"], want["boxes"], atol=1e-5)


def test_evaluate_keeps_an_inference_models_own_settings(tiny_model):
    detector = inference_model(tiny_model, top_k=15, confidence_threshold=0.2)
    d = Detector(detector)
    assert d.inference_model is detector
    assert d.decode_options == {"confidence_threshold": pytest.approx(0.2),
                                "iou_threshold": pytest.approx(0.45), "top_k": 15}
    assert Detector(tiny_model).decode_options == {
        "confidence_threshold": 0.01, "iou_threshold": 0.45, "top_k": 200}


# ------------------------------------------------------------ 0.1 files
def _as_0_1_file(path, out):
    """Rewrite an inference model's .keras file in keras-ssd 0.1's format:
    the decoder's scores output named "confidence", no `output_keys`."""
    with zipfile.ZipFile(path) as src:
        members = {name: src.read(name) for name in src.namelist()}
    config = json.loads(members["config.json"])

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DecodeDetections":
                assert node["config"].pop("output_keys") == list(OUTPUT_KEYS)
                name = node["config"]["name"]
                return name
            for value in node.values():
                found = walk(value)
                if found:
                    return found
        elif isinstance(node, list):
            for value in node:
                found = walk(value)
                if found:
                    return found
        return None

    layer = walk(config)
    outputs = config["config"]["output_layers"]
    assert sorted(outputs) == sorted(OUTPUT_KEYS)
    config["config"]["output_layers"] = {
        key: [layer, 0, i]
        for i, key in enumerate(("boxes", "confidence", "labels", "num_detections"))
    }
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(out, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)


def test_an_inference_model_saved_by_0_1_loads_and_runs(tmp_path):
    ssd = keras_ssd.load_model(FIXTURES / "tiny_v0_1.keras", compile=False)
    new = inference_model(ssd, confidence_threshold=0.05, top_k=30)
    new.save(tmp_path / "new.keras")
    _as_0_1_file(tmp_path / "new.keras", tmp_path / "old.keras")
    with pytest.warns(DeprecationWarning, match="keras-ssd 0.1 file.*'confidence'"):
        old = keras_ssd.load_model(tmp_path / "old.keras", compile=False)
    images = np.load(FIXTURES / "tiny_v0_1_io.npz")["x"]
    want = new.predict_on_batch(images)
    raw = old.predict_on_batch(images)  # Keras' own predict: the file's names
    assert sorted(raw) == ["boxes", "confidence", "labels", "num_detections"]
    np.testing.assert_array_equal(raw["confidence"], want["scores"])
    np.testing.assert_array_equal(raw["labels"], want["labels"])
    np.testing.assert_array_equal(raw["num_detections"], want["num_detections"])
    # keras-ssd's own functions speak the new names for it.
    out = Detector(old).predict_batch(images)
    assert sorted(out) == sorted(OUTPUT_KEYS)
    np.testing.assert_array_equal(out["scores"], want["scores"])
    image = images[0].astype(np.uint8)
    a = predict_image(old, image, confidence_threshold=0.05, top_k=30)
    b = predict_image(new, image, confidence_threshold=0.05, top_k=30)
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    if keras.backend.backend() == "tensorflow":  # export speaks the new names for it
        import tensorflow as tf

        from keras_ssd.export import OUTPUT_NAMES, export

        serve = tf.saved_model.load(export(old, str(tmp_path / "sm"))).signatures[
            "serving_default"]
        served = serve(images=tf.constant(images, tf.float32))
        assert sorted(served) == sorted(OUTPUT_NAMES) == sorted(OUTPUT_KEYS)
        np.testing.assert_allclose(served["scores"].numpy(), want["scores"], atol=1e-5)
    # Re-saved, it stays a 0.1-style model that loads again.
    old.save(tmp_path / "resaved.keras")
    with pytest.warns(DeprecationWarning):
        again = keras_ssd.load_model(tmp_path / "resaved.keras", compile=False)
    assert sorted(again.predict_on_batch(images)) == sorted(raw)
