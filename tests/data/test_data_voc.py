"""VOCDataset: layout, coordinate convention, splits, classes, difficult."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import VOC_CLASSES, DataError, VOCDataset, write_voc_xml


def write_voc(root, records, split="trainval", size=(40, 30), ext=".jpg"):
    """records: {image_id: [(name, (xmin, ymin, xmax, ymax) 1-based, difficult?), ...]}."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    w, h = size
    for image_id, objects in records.items():
        Image.new("RGB", (w, h), (90, 100, 110)).save(
            os.path.join(root, "JPEGImages", image_id + ext))
        write_voc_xml(os.path.join(root, "Annotations", image_id + ".xml"),
                      image_id + ext, w, h, objects)
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "a") as f:
        f.write("".join(i + "\n" for i in records))
    return str(root)


def test_voc_classes_are_the_twenty_standard_names_in_order():
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"
    assert list(VOC_CLASSES) == sorted(VOC_CLASSES)


def test_boxes_are_continuous_pixels_from_one_based_inclusive(tmp_path):
    root = write_voc(tmp_path / "VOC2007", {"000001": [("dog", (1, 2, 10, 20)),
                                                       ("person", (5, 6, 40, 30))]})
    ds = VOCDataset(root, "trainval")
    rec = ds[0]
    np.testing.assert_array_equal(rec["boxes"], [[0, 1, 10, 20], [4, 5, 40, 30]])
    # devkit width = xmax - xmin + 1
    assert rec["boxes"][0, 2] - rec["boxes"][0, 0] == 10 - 1 + 1
    assert rec["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert rec["boxes"].dtype == np.float32 and rec["labels"].dtype == np.int64
    assert rec["difficult"].dtype == bool
    assert (rec["width"], rec["height"]) == (40, 30)
    assert rec["image_id"] == "000001"
    assert rec["image_path"].endswith(os.path.join("JPEGImages", "000001.jpg"))


def test_split_ids_are_sorted_and_roots_concatenate_in_order(tmp_path):
    r07 = write_voc(tmp_path / "VOC2007", {"000009": [("cat", (1, 1, 5, 5))],
                                           "000002": [("cat", (1, 1, 5, 5))]})
    r12 = write_voc(tmp_path / "VOC2012", {"2008_000001": [("bus", (2, 2, 9, 9))]})
    ds = VOCDataset([r07, r12], "trainval")
    assert [r["image_id"] for r in ds] == ["000002", "000009", "2008_000001"]
    assert ds[2]["labels"].tolist() == [VOC_CLASSES.index("bus")]
    assert len(ds) == 3


def test_difficult_objects_are_flagged_and_optionally_dropped(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("cow", (1, 1, 9, 9), True),
                                            ("cow", (10, 10, 20, 20), False)]})
    kept = VOCDataset(root, "trainval")
    assert kept[0]["difficult"].tolist() == [True, False]
    dropped = VOCDataset(root, "trainval", keep_difficult=False)
    assert dropped[0]["difficult"].tolist() == [False]
    np.testing.assert_array_equal(dropped[0]["boxes"], [[9, 9, 20, 20]])


def test_custom_class_names_give_labels_in_their_order(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("b", (1, 1, 9, 9)), ("a", (3, 3, 8, 8))]})
    ds = VOCDataset(root, "trainval", class_names=["a", "b"])
    assert ds[0]["labels"].tolist() == [1, 0]
    assert ds.class_names == ("a", "b") and ds.num_classes == 2


def test_records_are_read_only_and_index_checked(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("dog", (1, 1, 9, 9))]})
    ds = VOCDataset(root, "trainval")
    with pytest.raises(ValueError):
        ds[0]["boxes"][0, 0] = 5
    with pytest.raises(IndexError, match="out of range"):
        ds[1]
    assert ds[-1]["image_id"] == "a"


def test_load_image_is_rgb_uint8_of_the_record_size(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("dog", (1, 1, 9, 9))]}, size=(37, 23))
    img = VOCDataset(root, "trainval").load_image(0)
    assert img.shape == (23, 37, 3) and img.dtype == np.uint8


def test_png_images_are_found(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("dog", (1, 1, 9, 9))]}, ext=".png")
    ds = VOCDataset(root, "trainval")
    assert ds[0]["image_path"].endswith("a.png")
    assert ds.load_image(0).shape == (30, 40, 3)


def test_missing_split_file_names_it(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("dog", (1, 1, 9, 9))]})
    with pytest.raises(DataError, match=r"test\.txt.*split file not found"):
        VOCDataset(root, "test")
    with pytest.raises(DataError, match="root directory not found"):
        VOCDataset(tmp_path / "nowhere", "trainval")


def test_class_counts(tmp_path):
    root = write_voc(tmp_path / "v", {"a": [("dog", (1, 1, 9, 9)), ("dog", (2, 2, 9, 9))],
                                      "b": [("cat", (1, 1, 9, 9))]})
    counts = VOCDataset(root, "trainval").class_counts()
    assert counts[VOC_CLASSES.index("dog")] == 2 and counts[VOC_CLASSES.index("cat")] == 1
    assert counts.sum() == 3


def test_the_voc_writer_pieces_round_trip_continuous_boxes(tmp_path):
    from keras_ssd.data.voc import make_voc_folders, write_voc_annotation, write_voc_lists

    root = make_voc_folders(tmp_path / "voc")
    Image.new("RGB", (40, 30)).save(os.path.join(root, "JPEGImages", "a.jpg"))
    write_voc_annotation(root, "a", "a.jpg", 40, 30, [[0, 0, 10, 12], [5.5, 3, 40, 30]],
                         ["dog", "cat"], difficult=[False, True])
    write_voc_lists(root, {"trainval": ["a"], "test": []}, ["cat", "dog"])
    assert open(os.path.join(root, "labels.txt")).read() == "cat\ndog\n"
    assert open(os.path.join(root, "ImageSets", "Main", "test.txt")).read() == ""
    rec = VOCDataset(root, "trainval", class_names=["cat", "dog"])[0]
    np.testing.assert_allclose(rec["boxes"], [[0, 0, 10, 12], [5.5, 3, 40, 30]])
    assert rec["labels"].tolist() == [1, 0] and rec["difficult"].tolist() == [False, True]
