"""evaluate(): batched inference over a dataset, boxes back in original
pixels, VOC and COCO scoring, and the MeanAveragePrecision callback."""

import builtins

import numpy as np
import pytest

from keras_ssd.evaluation import coco_map, evaluate, predict_dataset, voc_map
from keras_ssd.evaluation.evaluate import resize_for_model
from keras_ssd.config import SSDConfig
from keras_ssd.models import SSDTiny

pytestmark = pytest.mark.backend

@pytest.fixture
def oracle(make_oracle_model):
    """`oracle(dataset, shift=0.0, shift_odd_only=False)`: a model that reads
    the image index from the pixels and answers with its ground truth in
    normalised coordinates (optionally shifted), so that the whole pipeline
    except the network can be checked exactly."""

    def make(dataset, shift=0.0, shift_odd_only=False, top_k=10):
        def answer(images):
            b = images.shape[0]
            boxes = np.zeros((b, top_k, 4), "float32")
            conf = np.zeros((b, top_k), "float32")
            labels = np.full((b, top_k), -1, "int32")
            for j in range(b):
                value = int(round(images[j, 0, 0, 0]))
                if value == 0:  # padding
                    continue
                r = dataset[value - 1]
                scale = np.array([r["width"], r["height"]] * 2, "float32")
                g = len(r["boxes"])
                moved = shift if (value % 2 == 0 or not shift_odd_only) else 0.0
                boxes[j, :g] = r["boxes"] / scale + moved
                conf[j, :g] = np.linspace(0.9, 0.5, g)
                labels[j, :g] = r["labels"]
            return {"boxes": boxes, "scores": conf, "labels": labels}

        config = SSDConfig.tiny(num_classes=len(dataset.class_names)).replace(image_size=48)
        return make_oracle_model(config, answer, top_k=top_k)

    return make


def test_boxes_come_back_in_original_pixels_with_padded_batches(toy_dataset, oracle):
    ds = toy_dataset()
    model = oracle(ds)
    dets = predict_dataset(model, ds, batch_size=2, verbose=0)
    # 5 images in batches of 2: the last batch is padded to keep one shape
    assert model.calls == [(2, 48, 48, 3)] * 3
    assert len(dets) == len(ds)
    for d, r in zip(dets, ds.records):
        np.testing.assert_allclose(d["boxes"], r["boxes"], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(d["labels"], r["labels"])
        assert d["scores"].shape == (len(r["boxes"]),)  # padding rows dropped


def test_evaluate_perfect_and_shifted_detections(toy_dataset, oracle):
    ds = toy_dataset()
    result = evaluate(oracle(ds), ds, batch_size=3, verbose=0)
    assert result["mAP"] == pytest.approx(1.0)
    assert set(result["AP_by_name"]) == {"cat", "dog"}
    assert result["num_images"] == 5
    # shifting every box by 0.5 of the image leaves no overlap: mAP 0
    shifted = evaluate(oracle(ds, shift=0.5), ds, batch_size=3, verbose=0)
    assert shifted["mAP"] == 0.0


def test_evaluate_equals_voc_map_on_returned_detections(toy_dataset, oracle):
    ds = toy_dataset()
    result = evaluate(
        oracle(ds, shift=0.5, shift_odd_only=True), ds, batch_size=4, verbose=0,
        use_07_metric=False, return_detections=True,
    )
    direct = voc_map(result["detections"], ds.records, 2, use_07_metric=False)
    np.testing.assert_allclose(result["AP"], direct["AP"])
    assert 0.0 < result["mAP"] < 1.0


def test_max_images_limits_the_ground_truth_too(toy_dataset, oracle):
    ds = toy_dataset()
    result = evaluate(oracle(ds), ds, max_images=2, verbose=0)
    assert result["num_images"] == 2
    assert result["mAP"] == pytest.approx(1.0)


def test_progress_bar_is_shown(capsys, toy_dataset, oracle):
    ds = toy_dataset()
    evaluate(oracle(ds), ds, batch_size=2, verbose=1)
    assert "5/5" in capsys.readouterr().out


def test_resize_for_model_stretches_to_square():
    img = np.zeros((30, 90, 3), np.uint8)
    img[:, 45:] = 200
    out = resize_for_model(img, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out[:, 0].max() == 0 and out[:, -1].min() == 200


# ------------------------------------------------------- the real tiny SSD
# (`tiny_model` is the shared fixture of tests/conftest.py: SSDTiny, 2 classes, seed 1)

def test_real_tiny_model_batched_equals_one_by_one(tiny_model, toy_dataset):
    ds = toy_dataset(sizes=[(120, 90), (200, 160), (64, 256)])
    result = evaluate(
        tiny_model, ds, batch_size=2, verbose=0, top_k=20, return_detections=True
    )
    assert 0.0 <= result["mAP"] <= 1.0
    for i, d in enumerate(result["detections"]):
        img = resize_for_model(ds.load_image(i), 160)[None].astype("float32")
        out = tiny_model.predict(img)  # the decoder's 200 best, the first 20 scored
        keep = (np.asarray(out["labels"][0]) >= 0) & (np.arange(200) < 20)
        r = ds[i]
        scale = np.array([r["width"], r["height"]] * 2)
        expected = np.clip(np.asarray(out["boxes"][0])[keep] * scale, 0, scale)
        np.testing.assert_allclose(d["boxes"], expected, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(d["scores"], np.asarray(out["scores"][0])[keep], atol=1e-5)
        assert (d["boxes"][:, 2] <= r["width"]).all() and (d["boxes"][:, 3] <= r["height"]).all()


def test_class_mismatch_is_a_clear_error(tiny_model, toy_dataset):
    with pytest.raises(ValueError, match="dataset has 3 classes but the model predicts 2"):
        evaluate(tiny_model, toy_dataset(class_names=("a", "b", "c")), verbose=0)
    named = SSDTiny(num_classes=2, class_names=["dog", "cat"])
    with pytest.raises(ValueError, match="class names differ"):
        evaluate(named, toy_dataset(class_names=("cat", "dog")), verbose=0)


def test_bad_arguments(tiny_model, toy_dataset):
    with pytest.raises(ValueError, match="metric must be 'voc' or 'coco'"):
        evaluate(tiny_model, toy_dataset(), metric="map")
    with pytest.raises(ValueError, match="no load_image"):
        evaluate(tiny_model, [{"boxes": []}])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(tiny_model, toy_dataset(), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="evaluate: object .* is not a keras-ssd model"):
        evaluate(object(), toy_dataset(), verbose=0)


# ---------------------------------------------------------------- COCO AP
def test_coco_map_through_pycocotools():
    pytest.importorskip("pycocotools")
    gt = [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 40]], "labels": [0, 1], "width": 50, "height": 50}]
    # class 0 perfect; class 1 IoU 0.9 -> matched at thresholds 0.5 .. 0.9 (9 of 10)
    det = [{"boxes": [[0, 0, 10, 10], [20, 20, 40, 38]], "scores": [0.9, 0.8], "labels": [0, 1]}]
    r = coco_map(det, gt, 2, class_names=["a", "b"])
    np.testing.assert_allclose(r["AP"], [1.0, 0.9], atol=1e-9)
    assert r["mAP"] == pytest.approx(0.95)
    assert r["AP50"] == pytest.approx(1.0)
    empty = coco_map([{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}], gt, 2)
    assert empty["mAP"] == 0.0


def test_evaluate_with_coco_metric(toy_dataset, oracle):
    pytest.importorskip("pycocotools")
    ds = toy_dataset()
    r = evaluate(oracle(ds), ds, metric="coco", verbose=0)
    assert r["mAP"] == pytest.approx(1.0, abs=1e-6)


def test_coco_metric_without_pycocotools_says_how_to_install(monkeypatch, toy_dataset,
                                                              oracle):
    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError("No module named 'pycocotools'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    ds = toy_dataset()
    with pytest.raises(ImportError, match=r"pip install 'keras-ssd\[coco\]'"):
        evaluate(oracle(ds), ds, metric="coco", verbose=0)


def test_evaluate_on_synthetic_voc_sees_the_training_pipelines_images(tmp_path, tiny_model):
    from keras_ssd.data import VOCDataset, make_synthetic_voc
    from keras_ssd.data.sequence import eval_batches
    from keras_ssd.data.sequence import load_resized

    root = make_synthetic_voc(
        tmp_path / "voc", num_trainval=1, num_test=3, image_size=(200, 150),
        class_names=("circle", "square"),
    )
    ds = VOCDataset(root, "test", class_names=("circle", "square"))
    expected = np.concatenate([b for b, _ in eval_batches(ds, 160, batch_size=3)])
    for i in range(len(ds)):
        img, w, h = load_resized(ds, i, 160)
        assert (w, h) == (200, 150)
        np.testing.assert_array_equal(img.astype("float32"), expected[i])
    result = evaluate(tiny_model, ds, batch_size=2, top_k=20, verbose=0)
    assert result["num_images"] == 3 and 0.0 <= result["mAP"] <= 1.0
    assert set(result["AP_by_name"]) == {"circle", "square"}


def test_coco_metric_scores_at_most_100_detections_per_image(tiny_model, toy_dataset,
                                                              monkeypatch):
    import keras_ssd.evaluation.coco as coco
    scored = []

    def record(detections, ground_truths, num_classes, class_names=None):
        scored.append([len(d["scores"]) for d in detections])
        return {"mAP": 0.0}

    monkeypatch.setattr(coco, "require_pycocotools", lambda: None)
    monkeypatch.setattr(coco, "coco_map", record)
    ds = toy_dataset(sizes=[(120, 90), (64, 64)])
    voc = evaluate(tiny_model, ds, verbose=0, confidence_threshold=0.0,
                   return_detections=True)
    assert min(len(d["scores"]) for d in voc["detections"]) > 100  # VOC keeps 200
    evaluate(tiny_model, ds, verbose=0, confidence_threshold=0.0, metric="coco")
    loose = type(tiny_model).from_config(tiny_model.get_config())
    loose.prediction_decoder = loose.prediction_decoder.replace(confidence_threshold=0.0,
                                                                top_k=300)
    evaluate(loose, ds, verbose=0, metric="coco")  # the model's own top_k is larger
    with pytest.warns(UserWarning, match="top_k=150 is cut to 100"):
        evaluate(tiny_model, ds, verbose=0, confidence_threshold=0.0, metric="coco",
                 top_k=150)
    assert scored == [[100, 100]] * 3
    evaluate(tiny_model, ds, verbose=0, confidence_threshold=0.0, metric="coco", top_k=7)
    assert scored[-1] == [7, 7]
