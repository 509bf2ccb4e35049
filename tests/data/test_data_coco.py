"""COCODataset: the instances JSON through the common record interface."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import COCODataset, DataError


def write_coco(tmp_path, annotations=None, categories=None, images=None):
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    images = images or [
        {"id": 7, "file_name": "a.jpg", "width": 50, "height": 40},
        {"id": 3, "file_name": "b.jpg", "width": 30, "height": 20},
    ]
    for im in images:
        Image.new("RGB", (im["width"], im["height"]), (10, 20, 30)).save(img_dir / im["file_name"])
    categories = categories or [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"},
                                {"id": 90, "name": "toothbrush"}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 7, "category_id": 18, "bbox": [1.5, 2.0, 10.0, 20.0], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 90, "bbox": [0, 0, 50, 40], "iscrowd": 1},
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 5, 5]},
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return str(path), str(img_dir)


def test_category_ids_map_to_contiguous_labels_in_id_order(tmp_path):
    ds = COCODataset(*write_coco(tmp_path))
    assert ds.class_names == ("person", "dog", "toothbrush")
    assert ds.category_ids == (1, 18, 90)
    assert ds.label_of_category == {1: 0, 18: 1, 90: 2}


def test_boxes_are_xywh_to_xyxy_and_crowd_is_flagged(tmp_path):
    ds = COCODataset(*write_coco(tmp_path))
    assert [r["image_id"] for r in ds] == [3, 7]  # sorted by id
    rec = ds[1]
    np.testing.assert_allclose(rec["boxes"], [[1.5, 2, 11.5, 22], [0, 0, 50, 40], [5, 5, 10, 10]])
    assert rec["labels"].tolist() == [1, 2, 0]
    assert rec["difficult"].tolist() == [False, True, False]
    assert (rec["width"], rec["height"]) == (50, 40)
    assert ds.load_image(1).shape == (40, 50, 3)


def test_images_without_annotations_are_kept_empty(tmp_path):
    rec = COCODataset(*write_coco(tmp_path))[0]
    assert rec["boxes"].shape == (0, 4) and rec["labels"].shape == (0,)


def test_class_names_select_and_order_categories(tmp_path):
    ds = COCODataset(*write_coco(tmp_path), class_names=["dog", "person"])
    assert ds.category_ids == (18, 1)
    assert ds[1]["labels"].tolist() == [0, 1]  # toothbrush dropped
    with pytest.raises(DataError, match="not among the categories"):
        COCODataset(*write_coco(tmp_path), class_names=["unicorn"])


def test_unknown_category_id_names_the_image(tmp_path):
    ann = [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 1, 5, 5]}]
    with pytest.raises(DataError, match=r"a\.jpg.*unknown category id 5"):
        COCODataset(*write_coco(tmp_path, annotations=ann))
    ds = COCODataset(*write_coco(tmp_path, annotations=ann), on_error="skip")
    assert len(ds) == 1 and ds.num_skipped == 1


def test_inverted_box_and_missing_image_are_errors(tmp_path):
    ann = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [5, 1, -2, 5]}]
    with pytest.raises(DataError, match="inverted"):
        COCODataset(*write_coco(tmp_path, annotations=ann))
    path, img_dir = write_coco(tmp_path, annotations=[])
    os.remove(os.path.join(img_dir, "b.jpg"))
    with pytest.raises(DataError, match="image is missing"):
        COCODataset(path, img_dir)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_zero_width_or_height_drops_only_that_box_with_a_warning(tmp_path, caplog, on_error):
    ann = [
        {"id": 11, "image_id": 7, "category_id": 18, "bbox": [1, 2, 10, 20]},
        {"id": 12, "image_id": 7, "category_id": 1, "bbox": [4, 4, 0, 5]},   # zero width
        {"id": 13, "image_id": 7, "category_id": 90, "bbox": [3, 3, 6, 7]},
        {"id": 14, "image_id": 3, "category_id": 1, "bbox": [2, 2, 8, 0.0]},  # zero height
    ]
    with caplog.at_level("WARNING", logger="keras_ssd.data"):
        ds = COCODataset(*write_coco(tmp_path, annotations=ann), on_error=on_error)
    assert [r["image_id"] for r in ds] == [3, 7] and ds.num_skipped == 0
    np.testing.assert_allclose(ds[1]["boxes"], [[1, 2, 11, 22], [3, 3, 9, 10]])
    assert ds[1]["labels"].tolist() == [1, 2]
    assert ds[0]["boxes"].shape == (0, 4)
    assert ds.num_dropped_boxes == 2
    (where14, _), (where12, problem12) = ds.dropped_boxes  # in image id order
    assert "a.jpg" in where12 and "annotation 12" in problem12 and "empty" in problem12
    assert "b.jpg" in where14
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropped annotation" in m for m in messages) == 2
    assert any("dropped 2 empty boxes" in m for m in messages)


def test_malformed_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(DataError, match=r"bad\.json: malformed JSON"):
        COCODataset(str(p), str(tmp_path))
    p.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="'annotations'"):
        COCODataset(str(p), str(tmp_path))


def test_crowd_annotations_are_flagged_in_crowd_too(tmp_path):
    rec = COCODataset(*write_coco(tmp_path))[1]
    assert rec["crowd"].tolist() == [False, True, False]
    assert rec["crowd"].dtype == bool and not rec["crowd"].flags.writeable


def test_training_targets_never_make_a_crowd_region_positive(tmp_path, tiny_config):
    from keras_ssd.data import SSDSequence

    ds = COCODataset(*write_coco(tmp_path))
    config = tiny_config(num_classes=3, image_size=48, feature_map_sizes=[6, 3],
                         min_sizes=[10, 24], max_sizes=[24, 40], aspect_ratios=[[2], [2]])
    for ignore_difficult in (False, True):
        seq = SSDSequence(ds, config, batch_size=2, ignore_difficult=ignore_difficult)
        classes = seq[0][1][1, :, 4]  # image 7: dog, a whole-image crowd, person
        assert not np.any(classes == 3)  # toothbrush, the crowd region's class
        assert np.any(classes == 2) and np.any(classes == 1)  # dog and person stay
        # The crowd region covers the image: every other prior is ignored.
        assert set(np.unique(classes).tolist()) == {-1.0, 1.0, 2.0}
