"""A model whose labels are COCO category ids (torchvision's 91-output
layout, `SSDConfig.category_ids`) is scored against a COCO annotation file
by id: non-contiguous ids, placeholders never scored, mismatches refused."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_ssd.config import SSDConfig
from keras_ssd.data import COCODataset
from keras_ssd.evaluation import evaluate
from keras_ssd.evaluation.evaluate import match_classes
from keras_ssd.inference.predict import detections_in_pixels
from keras_ssd.models.convert import COCO_CLASS_NAMES, COCO_CONFIG_CATEGORY_IDS

pytestmark = pytest.mark.backend

#: A file with a non-contiguous subset of the COCO ids.
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"},
              {"id": 18, "name": "dog"}]
SIZES = [(64, 48), (80, 80), (50, 70)]
PLACEHOLDER = COCO_CLASS_NAMES.index("N/A-12")   # label 11, no category
CAT = COCO_CLASS_NAMES.index("cat")              # id 17: not in the file


def write_coco(tmp_path, categories=CATEGORIES):
    """Three images filled with the value i + 1 and a few boxes of each
    category; returns the annotation file's path."""
    images, annotations = [], []
    cat_ids = [c["id"] for c in CATEGORIES]
    for i, (w, h) in enumerate(SIZES):
        name = f"im{i}.png"
        Image.fromarray(np.full((h, w, 3), i + 1, np.uint8)).save(tmp_path / name)
        images.append({"id": 10 + i, "file_name": name, "width": w, "height": h})
        for j in range(3):
            annotations.append({
                "id": 100 * i + j, "image_id": 10 + i, "category_id": cat_ids[(i + j) % 3],
                "bbox": [2.0 + 12 * j, 3.0 + 4 * j, 10.0 + j, 12.0], "iscrowd": 0})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return str(path)


def coco91_config(category_ids=COCO_CONFIG_CATEGORY_IDS):
    """The torchvision COCO model's classes on a small geometry."""
    return SSDConfig.tiny(num_classes=90, class_names=list(COCO_CLASS_NAMES)).replace(
        category_ids=list(category_ids))


@pytest.fixture
def coco91_oracle(make_oracle_model):
    """`coco91_oracle(dataset, label_of, extra=(), config=None)`: a stand-in
    for the 91-output COCO model: reads the image index from the pixels and
    answers with its ground truth, labelled as that model labels it
    (`label_of`: dataset label -> model label), plus optional extra
    high-score detections `(model label, box index)`."""

    def make(dataset, label_of, extra=(), config=None):
        def answer(images):
            b, k = images.shape[0], 12
            boxes = np.zeros((b, k, 4), "float32")
            scores = np.zeros((b, k), "float32")
            labels = np.full((b, k), -1, "int32")
            for j in range(b):
                value = int(round(images[j, 0, 0, 0]))
                if value == 0:
                    continue
                r = dataset[value - 1]
                scale = np.array([r["width"], r["height"]] * 2, "float32")
                rows = [(label_of(int(c)), box) for c, box in zip(r["labels"], r["boxes"])]
                rows = [(lab, r["boxes"][i]) for lab, i in extra] + rows
                for n, (lab, box) in enumerate(rows):
                    boxes[j, n] = box / scale
                    scores[j, n] = 0.95 - 0.05 * n
                    labels[j, n] = lab
            out = {"boxes": boxes, "scores": scores, "labels": labels}
            ids = model.config.detection_category_ids
            if ids is not None:  # as the model's predict adds them
                ids = [-1 if c is None else c for c in ids]
                out["category_ids"] = np.where(labels < 0, -1, np.take(ids, labels))
            return out

        config = (config or coco91_config()).replace(image_size=48)
        model = make_oracle_model(config, answer, top_k=12)
        return model

    return make


def by_coco_id(ds):
    """The right labelling: dataset label -> its COCO id -> model label id - 1."""
    return lambda c: ds.category_ids[c] - 1


def test_perfect_detections_score_ap_1_through_the_real_category_ids(tmp_path,
                                                                     coco91_oracle):
    pytest.importorskip("pycocotools")
    ds = COCODataset(write_coco(tmp_path), tmp_path)
    assert ds.category_ids == (1, 3, 18) and ds.class_names == ("person", "car", "dog")
    r = evaluate(coco91_oracle(ds, by_coco_id(ds)), ds, metric="coco", verbose=0,
                 return_detections=True)
    assert r["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert r["AP_by_name"] == pytest.approx({"person": 1.0, "car": 1.0, "dog": 1.0})
    d = r["detections"][1]
    np.testing.assert_array_equal(d["category_ids"], [3, 18, 1])
    assert d["names"] == ["car", "dog", "person"]
    np.testing.assert_array_equal(d["labels"], [1, 2, 0])   # the dataset's labels
    voc = evaluate(coco91_oracle(ds, by_coco_id(ds)), ds, verbose=0)
    assert voc["mAP"] == pytest.approx(1.0)


def test_contiguous_labels_mistaken_for_ids_score_zero(tmp_path, coco91_oracle):
    # The mistake the id mapping prevents: label j of the file (contiguous)
    # taken as the model's label j (COCO id j + 1): car becomes bicycle, dog car.
    pytest.importorskip("pycocotools")
    ds = COCODataset(write_coco(tmp_path), tmp_path)
    r = evaluate(coco91_oracle(ds, lambda c: c), ds, metric="coco", verbose=0)
    assert r["AP_by_name"]["person"] == pytest.approx(1.0)
    assert r["AP_by_name"]["car"] == 0.0 and r["AP_by_name"]["dog"] == 0.0


def test_placeholders_and_categories_outside_the_file_are_never_scored(tmp_path,
                                                                       coco91_oracle):
    pytest.importorskip("pycocotools")
    ds = COCODataset(write_coco(tmp_path), tmp_path)
    # Best-scored: an 'N/A' output and a cat on the image's own boxes.
    oracle = coco91_oracle(ds, by_coco_id(ds), extra=[(PLACEHOLDER, 0), (CAT, 1)])
    r = evaluate(oracle, ds, metric="coco", verbose=0, return_detections=True)
    assert r["mAP"] == pytest.approx(1.0, abs=1e-6)
    for d in r["detections"]:
        assert len(d["scores"]) == 3 and set(d["category_ids"]) <= {1, 3, 18}
    # Without the mapping they reach the detections: the model's own labels.
    options = {"confidence_threshold": 0.01, "top_k": 12}
    out = oracle.predict_on_batch(np.full((1, 48, 48, 3), 1.0))
    raw = detections_in_pixels(oracle, out, 0, 64, 48, options)
    assert raw["names"][:2] == ["N/A-12", "cat"]
    np.testing.assert_array_equal(raw["category_ids"][:2], [-1, 17])


def test_a_category_the_model_lacks_or_an_id_of_another_name_is_refused(tmp_path,
                                                                        coco91_oracle):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unknown = CATEGORIES + [{"id": 95, "name": "unicorn"}]
    ds = COCODataset(write_coco(tmp_path / "a", unknown), tmp_path / "a")
    with pytest.raises(ValueError, match=r"categories 95 'unicorn' are not among the"):
        match_classes(ds, coco91_config())
    renamed = [{"id": 1, "name": "person"}, {"id": 3, "name": "truck"},
               {"id": 18, "name": "dog"}]
    ds = COCODataset(write_coco(tmp_path / "b", renamed), tmp_path / "b")
    with pytest.raises(ValueError, match=r"id 3 is 'truck' in the dataset but 'car'"):
        evaluate(coco91_oracle(ds, by_coco_id(ds)), ds, verbose=0)
    # The model's ids with person and car swapped: caught the same way.
    ids = list(COCO_CONFIG_CATEGORY_IDS)
    ids[0], ids[2] = 3, 1
    with pytest.raises(ValueError, match=r"id 1 is 'person' in the dataset but 'car'"):
        match_classes(COCODataset(write_coco(tmp_path / "a"), tmp_path / "a"),
                      coco91_config(ids))


def test_a_dataset_without_ids_is_matched_by_name(toy_dataset, coco91_oracle):
    ds = toy_dataset(class_names=("dog", "person"))
    m = match_classes(ds, coco91_config())
    assert m.by == "name" and m.category_ids is None
    assert np.flatnonzero(m.label_map >= 0).tolist() == [0, 17]   # person, dog
    assert m.label_map[17] == 0 and m.label_map[0] == 1
    r = evaluate(coco91_oracle(ds, lambda c: [17, 0][c]), ds, verbose=0)
    assert r["mAP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\['N/A-12'\] are not among the model's"):
        match_classes(toy_dataset(class_names=("dog", "N/A-12")), coco91_config())


def test_category_ids_are_checked_and_survive_serialisation(tiny_config):
    c = tiny_config(3, class_names=["person", "gap", "dog"], category_ids=[1, None, 18])
    assert SSDConfig.from_yaml(c.to_yaml()).category_ids == [1, None, 18]
    assert c.replace(class_subset=[2, 0]).detection_category_ids == [18, 1]
    assert "category_ids" not in tiny_config(3).to_dict()
    with pytest.raises(ValueError, match="category_ids must be a list of 3"):
        tiny_config(3, category_ids=[1, 2])
    with pytest.raises(ValueError, match="repeats ids"):
        tiny_config(3, category_ids=[1, 1, 2])
    with pytest.raises(ValueError, match="non-negative ints or None"):
        tiny_config(3, category_ids=[1, "car", 2])


def test_the_torchvision_source_config_carries_the_coco_ids():
    from keras_ssd.models.convert import source_config

    c = source_config("torchvision")
    assert c.category_ids[:13] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, None, 13]
    assert sum(i is None for i in c.category_ids) == 10 and c.category_ids[-1] == 90
    assert source_config("torchvision", num_classes=3).category_ids is None
    assert source_config("amdegroot").category_ids is None


def test_predictions_carry_the_ids_and_new_classes_drop_them():
    from keras_ssd.inference import predict_image
    from keras_ssd.models import SSDTiny
    from keras_ssd.models.pretrained import with_class_subset, with_new_heads

    config = SSDConfig.tiny(3, ["person", "N/A-2", "car"]).replace(
        category_ids=[1, None, 3])
    model = SSDTiny(config=config)
    dets = predict_image(model, np.full((60, 80, 3), 100, np.uint8), confidence_threshold=0.0,
                         top_k=30)
    assert len(dets["labels"]) == 30
    np.testing.assert_array_equal(dets["category_ids"], np.array([1, -1, 3])[dets["labels"]])
    assert type(model).from_config(model.get_config()).config.category_ids == [1, None, 3]
    assert with_class_subset(model, ["car"]).config.detection_category_ids == [3]
    assert with_new_heads(model, class_names=["a", "b"]).config.category_ids is None
    assert SSDTiny(config=config, class_names=["a", "b", "c"]).config.category_ids is None
    assert SSDTiny(config=config).config.category_ids == [1, None, 3]


def test_a_model_without_ids_is_matched_to_a_coco_file_by_name(tmp_path, coco91_oracle):
    # e.g. a torchvision COCO model converted before the ids were stored
    pytest.importorskip("pycocotools")
    ds = COCODataset(write_coco(tmp_path), tmp_path)
    config = coco91_config().replace(category_ids=None)
    assert match_classes(ds, config).by == "name"
    r = evaluate(coco91_oracle(ds, by_coco_id(ds), extra=[(PLACEHOLDER, 0)], config=config),
                 ds, metric="coco", verbose=0, return_detections=True)
    assert r["mAP"] == pytest.approx(1.0, abs=1e-6)
    assert all(set(d["names"]) <= {"person", "car", "dog"} for d in r["detections"])


def test_unscored_classes_do_not_take_the_100_coco_slots(tmp_path, monkeypatch,
                                                         make_tiny_model):
    import keras_ssd.evaluation.coco as coco
    from keras_ssd.evaluation import predict_dataset

    config = SSDConfig.tiny(3, ["person", "N/A-2", "car"]).replace(
        category_ids=[1, None, 3])
    model = make_tiny_model(num_classes=3, config=config,
                            postprocessing={"max_candidates_per_class": 150})
    # Every prior scores N/A-2 > person > car (the same boxes: the priors),
    # so in the best 100 of all classes the cars come last.
    for layer in model.layers:
        if layer.name.endswith("_mbox_loc") or layer.name.endswith("_mbox_conf"):
            kernel, bias = layer.get_weights()
            if layer.name.endswith("_mbox_conf"):
                bias = np.tile(np.float32([0.0, 1.5, 2.0, 1.0]), bias.size // 4)
            layer.set_weights([np.zeros_like(kernel), np.zeros_like(bias) + bias])
    ds = COCODataset(write_coco(tmp_path), tmp_path, class_names=["car"])
    assert ds.category_ids == (3,)
    scored = []

    def record(detections, ground_truths, num_classes, class_names=None, **kwargs):
        scored.append(detections)
        return {"mAP": 0.0}

    monkeypatch.setattr(coco, "require_pycocotools", lambda: None)
    monkeypatch.setattr(coco, "coco_map", record)
    evaluate(model, ds, verbose=0, confidence_threshold=0.0, metric="coco")
    first_100, first_200 = (
        predict_dataset(model, ds, verbose=0, confidence_threshold=0.0, top_k=k)
        for k in (100, 200))
    for d, a, b in zip(scored[0], first_100, first_200):
        cars = b["scores"][b["labels"] == 2]
        assert (a["labels"] == 2).sum() < min(100, len(cars))   # what a cut at 100 keeps
        assert len(d["scores"]) == min(100, len(cars))
        np.testing.assert_allclose(d["scores"], cars[:100])
        assert set(d["category_ids"]) == {3}


def test_categories_selected_out_of_id_order_keep_their_own_ap(tmp_path, coco91_oracle):
    # COCODataset(class_names=) orders labels as given (18, 1); pycocotools
    # orders categories by id: each class's AP must still be its own.
    pytest.importorskip("pycocotools")
    ds = COCODataset(write_coco(tmp_path), tmp_path, class_names=["dog", "person"])
    assert ds.category_ids == (18, 1)
    # dogs found exactly, persons shifted off (IoU 0)
    def label_of(c):
        return ds.category_ids[c] - 1

    oracle = coco91_oracle(ds, label_of)
    real = oracle.answer

    def shift_people(images):
        out = real(images)
        out["boxes"][out["labels"] == 0] += 0.5
        return out

    oracle.answer = shift_people
    r = evaluate(oracle, ds, metric="coco", verbose=0)
    assert r["AP_by_name"] == pytest.approx({"dog": 1.0, "person": 0.0})
