"""load_dataset / sniff_format: one entry point, the format told from the layout."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import (
    FORMATS,
    SYNTHETIC_CLASSES,
    COCODataset,
    CSVDataset,
    DataError,
    VOCDataset,
    YOLODataset,
    load_dataset,
    sniff_format,
    write_yolo,
)


@pytest.fixture(scope="module")
def synthetic_yolo(synthetic_voc, tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_yolo")
    for split, yolo_split in (("trainval", "train"), ("test", "val")):
        write_yolo(VOCDataset(synthetic_voc, split, class_names=SYNTHETIC_CLASSES), root,
                   split=yolo_split)
    return str(root)


def _coco(root, json_rel, image_rel_dir, file_name="a.jpg"):
    """A one-image COCO set: the JSON at `root/json_rel`, the image in `root/image_rel_dir`."""
    image_dir = os.path.join(root, image_rel_dir)
    os.makedirs(image_dir, exist_ok=True)
    Image.new("RGB", (30, 20)).save(os.path.join(image_dir, file_name))
    path = os.path.join(root, json_rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": [{"id": 1, "file_name": file_name, "width": 30, "height": 20}],
                   "annotations": [{"id": 1, "image_id": 1, "category_id": 3,
                                    "bbox": [1, 2, 10, 5]}],
                   "categories": [{"id": 3, "name": "cup"}]}, f)
    return path


def _csv(root, name="ann.csv"):
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    Image.new("RGB", (30, 20)).save(os.path.join(root, "img", "a.jpg"))
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("img/a.jpg,1,2,11,7,cup\n")
    return path


def test_every_format_is_told_from_its_layout(synthetic_voc, synthetic_yolo, tmp_path):
    assert FORMATS == ("voc", "coco", "yolo", "csv")
    assert sniff_format(synthetic_voc) == "voc"
    assert sniff_format(synthetic_yolo) == "yolo"
    assert sniff_format(os.path.join(synthetic_yolo, "data.yaml")) == "yolo"
    coco_json = _coco(str(tmp_path / "coco"), "annotations/instances_val.json", "val")
    assert sniff_format(str(tmp_path / "coco")) == "coco" and sniff_format(coco_json) == "coco"
    csv_path = _csv(str(tmp_path / "csv"))
    assert sniff_format(str(tmp_path / "csv")) == "csv" and sniff_format(csv_path) == "csv"
    yolo_flat = tmp_path / "flat"
    (yolo_flat / "images").mkdir(parents=True)
    (yolo_flat / "labels").mkdir()
    assert sniff_format(str(yolo_flat)) == "yolo"


def test_load_dataset_gives_each_reader_the_same_records(synthetic_voc, synthetic_yolo):
    voc = load_dataset(synthetic_voc, class_names=SYNTHETIC_CLASSES)
    assert type(voc) is VOCDataset and voc.split == "trainval" and len(voc) == 12
    yolo = load_dataset(synthetic_yolo)
    assert type(yolo) is YOLODataset and yolo.split == "train"
    assert yolo.class_names == SYNTHETIC_CLASSES
    for a, b in zip(voc, yolo):
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    assert len(load_dataset(synthetic_yolo, split="val")) == 4
    assert len(load_dataset(synthetic_voc, split="test", class_names=SYNTHETIC_CLASSES)) == 4
    assert len(load_dataset([synthetic_voc, synthetic_voc], class_names=SYNTHETIC_CLASSES)) == 24
    # VOC's default classes are VOC's
    with pytest.raises(DataError, match="unknown class name 'circle'"):
        load_dataset(synthetic_voc)


def test_coco_folder_finds_its_json_and_images(tmp_path):
    root = str(tmp_path / "coco")
    _coco(root, "annotations/instances_val2017.json", "val2017")
    ds = load_dataset(root)
    assert type(ds) is COCODataset and ds.class_names == ("cup",)
    assert ds.image_dir == os.path.join(root, "val2017")
    np.testing.assert_allclose(ds[0]["boxes"], [[1, 2, 11, 7]])
    _coco(root, "annotations/instances_train2017.json", "images/train2017")
    with pytest.raises(DataError, match="several COCO .json files"):
        load_dataset(root)
    ds = load_dataset(root, split="train2017")
    assert ds.image_dir == os.path.join(root, "images", "train2017")
    with pytest.raises(DataError, match="no COCO .json file for split 'test2017'"):
        load_dataset(root, split="test2017")
    # Roboflow: the JSON beside its images
    rf = _coco(str(tmp_path / "rf"), "train/_annotations.coco.json", "train")
    assert load_dataset(rf).image_dir == os.path.dirname(rf)
    other = str(tmp_path / "elsewhere")
    _coco(other, "x/ann.json", "pics")
    assert len(load_dataset(os.path.join(other, "x", "ann.json"),
                           image_dir=os.path.join(other, "pics"))) == 1


def test_csv_folder_and_a_class_file_beside_it(tmp_path):
    root = str(tmp_path / "csv")
    path = _csv(root)
    ds = load_dataset(root)
    assert type(ds) is CSVDataset and ds.csv_path == path and ds.class_names == ("cup",)
    with open(os.path.join(root, "classes.csv"), "w") as f:
        f.write("bowl,0\ncup,1\n")
    ds = load_dataset(path)  # classes.csv is a class file, not a second annotation file
    assert ds.class_names == ("bowl", "cup") and ds[0]["labels"].tolist() == [1]
    _csv(root, "val.csv")
    with pytest.raises(DataError, match="several .csv files"):
        load_dataset(root)
    assert load_dataset(root, split="val").csv_path == os.path.join(root, "val.csv")


def test_unknown_layouts_and_formats_are_clear_errors(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(str(tmp_path / "stuff"))
    message = str(info.value)
    for fragment in ("cannot tell the dataset format", "Pascal VOC", "COCO", "YOLO", "CSV",
                     "format="):
        assert fragment in message
    with pytest.raises(DataError, match="dataset not found"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="dataset not found"):
        load_dataset(str(tmp_path / "nope"), format="yolo")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="cannot tell the dataset format of this file"):
        load_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="format must be one of voc, coco, yolo, csv"):
        load_dataset(str(tmp_path / "stuff"), format="kitti")
    with pytest.raises(DataError, match="not a YOLO dataset"):
        load_dataset(str(tmp_path / "stuff"), format="yolo")


def test_format_given_overrides_the_sniffing(synthetic_voc, tmp_path):
    # a VOC folder read as YOLO is not silently read as VOC
    with pytest.raises(DataError, match="not a YOLO dataset"):
        load_dataset(synthetic_voc, format="yolo")
    assert type(load_dataset(synthetic_voc, format="auto",
                             class_names=SYNTHETIC_CLASSES)) is VOCDataset
