"""YOLODataset: the Ultralytics layout through the common record interface."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import (
    SYNTHETIC_CLASSES,
    DataError,
    VOCDataset,
    YOLODataset,
    write_voc,
    write_yolo,
)


def _image(path, size=(40, 20)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)


def _text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_yolo(root, labels, split="train", size=(40, 20), yaml_text=None):
    """`root/images/<split>/<name>.jpg` and `root/labels/<split>/<name>.txt` for
    each `name: label text` (None: no label file), plus a data.yaml."""
    root = str(root)
    for name, text in labels.items():
        _image(os.path.join(root, "images", split, name + ".jpg"), size)
        if text is not None:
            _text(os.path.join(root, "labels", split, name + ".txt"), text)
    if yaml_text is None:
        yaml_text = f"path: .\n{split}: images/{split}\nnames: [cat, dog, bird]\n"
    _text(os.path.join(root, "data.yaml"), yaml_text)
    return root


def test_boxes_are_denormalised_to_continuous_pixels(tmp_path):
    root = make_yolo(tmp_path, {"a": "1 0.5 0.5 0.5 0.5\n0 0.125 0.25 0.25 0.5\n"})
    ds = YOLODataset(root, split="train")
    assert ds.class_names == ("cat", "dog", "bird") and len(ds) == 1
    rec = ds[0]
    np.testing.assert_allclose(rec["boxes"], [[10, 5, 30, 15], [0, 0, 10, 10]])
    assert rec["labels"].tolist() == [1, 0] and rec["difficult"].tolist() == [False, False]
    assert (rec["width"], rec["height"]) == (40, 20)
    assert rec["image_id"] == "images/train/a"
    assert rec["image_path"] == os.path.join(root, "images", "train", "a.jpg")
    assert ds.load_image(0).shape == (20, 40, 3)
    # the YAML file itself works as well as its folder
    assert YOLODataset(os.path.join(root, "data.yaml"))[0]["labels"].tolist() == [1, 0]


def test_images_without_or_with_empty_label_file_are_background(tmp_path):
    root = make_yolo(tmp_path, {"a": None, "b": "", "c": "\n  \n2 0.5 0.5 0.2 0.2\n"})
    ds = YOLODataset(root)
    assert [r["image_id"].rsplit("/", 1)[1] for r in ds] == ["a", "b", "c"]
    for rec in (ds[0], ds[1]):
        assert rec["boxes"].shape == (0, 4) and rec["labels"].shape == (0,)
    assert ds[2]["labels"].tolist() == [2]


def test_yaml_names_mapping_and_split_paths_relative_to_its_path_key(tmp_path):
    data = tmp_path / "datasets" / "pets"
    make_yolo(data, {"a": "0 0.5 0.5 0.5 0.5\n"}, split="train")
    make_yolo(data, {"v1": "1 0.5 0.5 0.25 0.25\n", "v2": None}, split="val")
    _text(str(tmp_path / "cfg" / "pets.yaml"),
          "path: ../datasets/pets\ntrain: images/train\nval: [images/val]\n"
          "names:\n  0: cat\n  1: dog\n")
    val = YOLODataset(str(tmp_path / "cfg" / "pets.yaml"), split="val")
    assert val.class_names == ("cat", "dog") and len(val) == 2
    np.testing.assert_allclose(val[0]["boxes"], [[15, 7.5, 25, 12.5]])
    assert len(YOLODataset(str(tmp_path / "cfg" / "pets.yaml"), split="train")) == 1


def test_roboflow_layout_and_image_list_files(tmp_path):
    # Roboflow: data.yaml beside train/images, train/labels, with '../' paths
    root = str(tmp_path)
    _image(os.path.join(root, "train", "images", "x.jpg"))
    _text(os.path.join(root, "train", "labels", "x.txt"), "0 0.5 0.5 1 1\n")
    _image(os.path.join(root, "valid", "images", "y.png"))
    _text(os.path.join(root, "data.yaml"),
          "train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['pill']\n")
    train = YOLODataset(root, "train")
    np.testing.assert_allclose(train[0]["boxes"], [[0, 0, 40, 20]])
    assert YOLODataset(root, "val")[0]["boxes"].shape == (0, 4)
    # a .txt split: image paths relative to the list file
    _text(os.path.join(root, "lists", "list.txt"), "../train/images/x.jpg\n\n")
    _text(os.path.join(root, "list.yaml"), "train: lists/list.txt\nnames: ['pill']\n")
    assert YOLODataset(os.path.join(root, "list.yaml"))[0]["labels"].tolist() == [0]
    _text(os.path.join(root, "lists", "list.txt"), "../train/images/gone.jpg\n")
    with pytest.raises(DataError, match=r"gone\.txt: its image is missing: .*gone\.jpg"):
        YOLODataset(os.path.join(root, "list.yaml"))


def test_flat_layout_with_classes_txt(tmp_path):
    root = str(tmp_path)
    _image(os.path.join(root, "images", "a.jpg"))
    _text(os.path.join(root, "labels", "a.txt"), "1 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError, match="no class names"):
        YOLODataset(root)
    # class_names without a names file are used as they are
    assert YOLODataset(root, class_names=["x", "y"]).class_names == ("x", "y")
    _text(os.path.join(root, "labels", "classes.txt"), "cat\ndog\n")  # as LabelImg writes it
    ds = YOLODataset(root, split="train")
    assert ds.class_names == ("cat", "dog") and ds[0]["labels"].tolist() == [1]
    assert len(YOLODataset(root, split="val")) == 1  # a flat folder is its one split


def test_class_names_must_match_the_yaml(tmp_path):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n"})
    assert YOLODataset(root, class_names=["cat", "dog", "bird"]).class_names == \
        ("cat", "dog", "bird")
    with pytest.raises(DataError, match=r"data\.yaml: lists the classes .*differ"):
        YOLODataset(root, class_names=["dog", "cat", "bird"])


def test_missing_split_names_the_splits_there(tmp_path):
    root = make_yolo(tmp_path, {"a": None})
    with pytest.raises(DataError, match=r"data\.yaml: no split 'val' \(it lists train\)"):
        YOLODataset(root, split="val")
    os.remove(os.path.join(root, "data.yaml"))
    _text(os.path.join(root, "classes.txt"), "cat\n")
    with pytest.raises(DataError, match=r"no split folder 'val' \(found train\)"):
        YOLODataset(root, split="val")


@pytest.mark.parametrize("line, message", [
    ("1 0.5 0.5 0.5", "expected 5 fields 'class cx cy w h', got 4"),
    ("1 0.1 0.1 0.2 0.1 0.2 0.2", "got 7 (segmentation polygons are not read)"),
    ("1 0.5 half 0.5 0.5", "a field is not a number"),
    ("3 0.5 0.5 0.5 0.5", "class id 3 is not one of 0..2"),
    ("1.5 0.5 0.5 0.5 0.5", "class id 1.5 is not one of 0..2"),
    ("-1 0.5 0.5 0.5 0.5", "class id -1"),
    ("0 0.5 0.5 nan 0.5", "not finite"),
    ("0 0.5 0.5 -0.2 0.5", "negative box size"),
    ("0 0.9 0.5 0.4 0.5", "lies outside the image"),
    ("0 120 80 40 30", "lies outside the image"),  # pixels written instead of fractions
])
def test_bad_line_names_the_file_and_line(tmp_path, line, message):
    root = make_yolo(tmp_path, {"a": f"0 0.5 0.5 0.5 0.5\n{line}\n"})
    with pytest.raises(DataError) as info:
        YOLODataset(root)
    text = str(info.value)
    assert text.startswith(os.path.join(root, "labels", "train", "a.txt") + ": line 2: ")
    assert message in text and repr(line) in text


def test_skip_mode_leaves_the_image_out_and_counts(tmp_path, caplog):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": "0 0.5 0.5\n",
                                "c": "7 0.5 0.5 0.1 0.1\n"})
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        ds = YOLODataset(root, on_error="skip")
    assert [r["image_id"] for r in ds] == ["images/train/a"]
    assert ds.num_skipped == 2
    (path_b, problem_b), (path_c, problem_c) = ds.skipped
    assert path_b.endswith("b.txt") and problem_b.startswith("line 1: expected 5 fields")
    assert path_c.endswith("c.txt") and "class id 7" in problem_c
    assert any("skipped 2 of 3 records" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_empty_box_is_dropped_with_a_warning_and_its_image_kept(tmp_path, caplog, on_error):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0 0.5\n1 0.5 0.5 0.5 0.5\n2 0.5 0.5 0.1 0\n"})
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        ds = YOLODataset(root, on_error=on_error)
    assert len(ds) == 1 and ds.num_skipped == 0
    assert ds[0]["labels"].tolist() == [1]
    assert ds.num_dropped_boxes == 2
    assert [p.split(":")[0] for _, p in ds.dropped_boxes] == ["line 1", "line 3"]
    assert any("dropped 2 empty boxes" in r.getMessage() for r in caplog.records)


def test_coordinates_within_the_tolerance_are_clipped_and_counted(tmp_path):
    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 1.008 0.5\n1 0.5 0.5 0.5 0.5\n"})
    ds = YOLODataset(root)
    np.testing.assert_allclose(ds[0]["boxes"][0], [0, 5, 40, 15])
    assert ds.num_clipped_boxes == 1
    with pytest.raises(DataError, match="lies outside"):
        YOLODataset(root, tolerance=0.001)


def test_yaml_is_read_safely(tmp_path):
    root = make_yolo(tmp_path, {"a": None}, yaml_text=(
        "train: images/train\nnames: !!python/object/apply:os.system ['echo hacked']\n"))
    with pytest.raises(DataError, match=r"data\.yaml: malformed YAML"):
        YOLODataset(root)
    _text(os.path.join(root, "data.yaml"), "train: images/train\nnames: {0: a, 2: b}\n")
    with pytest.raises(DataError, match="without gaps"):
        YOLODataset(root)
    _text(os.path.join(root, "data.yaml"), "train: images/train\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(DataError, match="'nc' is 3 but 'names' lists 2"):
        YOLODataset(root)


def test_write_yolo_and_write_voc_round_trip_the_synthetic_set(synthetic_voc, tmp_path):
    voc = VOCDataset(synthetic_voc, "trainval", class_names=SYNTHETIC_CLASSES)
    write_yolo(voc, tmp_path / "yolo", split="train")
    write_yolo(VOCDataset(synthetic_voc, "test", class_names=SYNTHETIC_CLASSES),
               tmp_path / "yolo", split="val")
    yolo = YOLODataset(tmp_path / "yolo", split="train")
    assert yolo.class_names == SYNTHETIC_CLASSES and len(yolo) == len(voc) == 12
    assert len(YOLODataset(tmp_path / "yolo", split="val")) == 4
    for a, b in zip(voc, yolo):
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
        assert a["labels"].tolist() == b["labels"].tolist()
    ids = write_voc(yolo, tmp_path / "back", split="trainval")
    assert ids[0] == "images_train_" + os.path.basename(voc[0]["image_path"])[:-4]
    back = VOCDataset(str(tmp_path / "back"), "trainval", class_names=SYNTHETIC_CLASSES)
    for a, b in zip(voc, back):
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
        assert a["labels"].tolist() == b["labels"].tolist()
    with pytest.raises(DataError, match="lists the classes"):
        write_yolo(VOCDataset(synthetic_voc, "test", class_names=SYNTHETIC_CLASSES[::-1]),
                   tmp_path / "yolo", split="test")


def test_yolo_records_feed_ssd_sequence(tmp_path, tiny_config):
    from keras_ssd.data import SSDSequence

    root = make_yolo(tmp_path, {"a": "0 0.5 0.5 0.5 0.5\n", "b": None, "c": "2 0.3 0.3 0.2 0.4\n"})
    ds = YOLODataset(root)
    seq = SSDSequence(ds, tiny_config(3), batch_size=2, augment=False)
    images, targets = seq[0]
    assert images.shape == (2, 32, 32, 3) and targets.shape == (2, 88, 5)
    assert (targets[0, :, 4] == 1).any()  # class 0 + 1 (0 is background) matched
    assert (targets[1, :, 4] == 0).all()  # the background image


def test_a_yolo_copy_trains_on_the_same_batches_as_its_voc_original(synthetic_voc, tmp_path,
                                                                     tiny_config):
    """What makes `keras-ssd train --format yolo` reach the VOC copy's mAP:
    same records in the same order, so the same augmented batches and the
    same targets (offsets up to YOLO's 6-decimal rounding)."""
    from keras_ssd.data import SSDSequence

    voc = VOCDataset(synthetic_voc, "trainval", class_names=SYNTHETIC_CLASSES)
    write_yolo(voc, tmp_path / "yolo", split="train")
    yolo = YOLODataset(tmp_path / "yolo", split="train")
    config = tiny_config(num_classes=4, class_names=list(SYNTHETIC_CLASSES))
    a, b = (SSDSequence(ds, config, batch_size=4, augment=True, seed=7) for ds in (voc, yolo))
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            (images_a, targets_a), (images_b, targets_b) = a[i], b[i]
            np.testing.assert_array_equal(images_a, images_b)
            np.testing.assert_array_equal(targets_a[..., 4], targets_b[..., 4])
            np.testing.assert_allclose(targets_a[..., :4], targets_b[..., :4], atol=1e-3)
    assert (targets_a[..., 4] > 0).any()
