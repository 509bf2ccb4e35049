"""Hostile annotation files: every case is one `DataError` naming the file and
the entry or line, never silently wrong data, never another exception, and
never unbounded memory (the YAML alias bomb)."""

import json
import os
import tracemalloc

import pytest
from PIL import Image

from keras_ssd.data import COCODataset, CSVDataset, DataError, YOLODataset


def write_coco(folder, images=None, annotations=(), categories=None, raw=None):
    """An instances JSON in `folder` (images are not written: the tests read
    with check_images="none")."""
    images = (
        images
        if images is not None
        else [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
        ]
    )
    categories = (
        categories
        if categories is not None
        else [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    )
    path = os.path.join(folder, "instances.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            raw
            if raw is not None
            else json.dumps(
                {
                    "images": images,
                    "annotations": list(annotations),
                    "categories": categories,
                }
            )
        )
    return path


def coco(folder, **kwargs):
    on_error = kwargs.pop("on_error", "raise")
    return COCODataset(
        write_coco(str(folder), **kwargs),
        str(folder),
        check_images="none",
        on_error=on_error,
    )


def box(image_id, category_id=1, bbox=(1, 1, 5, 5), **extra):
    return {
        "id": 100 + image_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(bbox),
        **extra,
    }


# --------------------------------------------------------------------- COCO
def test_coco_repeated_image_id_is_refused_not_merged(tmp_path):
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": 1, "file_name": "b.jpg", "width": 40, "height": 30},
    ]
    with pytest.raises(
        DataError,
        match=r"instances\.json: images\[1\]: image id 1 repeated "
        r"\(first in images\[0\]\)",
    ):
        coco(tmp_path, images=images, annotations=[box(1)])
    ds = coco(tmp_path, images=images, annotations=[box(1)], on_error="skip")
    assert len(ds) == 0 and ds.num_skipped == 2  # neither image gets the other's box


@pytest.mark.parametrize(
    "categories,problem",
    [
        ([{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}], r": category id 1 repeated"),
        (
            [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}],
            r": category name 'cat' repeated",
        ),
        (
            [{"id": 1, "name": "cat"}, {"id": 2, "name": ["dog"]}],
            r": 'name' must be a non-empty",
        ),
        (
            [{"id": 1, "name": "cat"}, {"id": None, "name": "dog"}],
            r": 'id' must be an integer",
        ),
        ([{"id": 1, "name": "cat"}, "dog"], r" is 'dog', not an object"),
    ],
)
def test_coco_bad_categories_are_refused_not_relabelled(tmp_path, categories, problem):
    with pytest.raises(DataError, match=r"instances\.json: categories\[1\]" + problem):
        coco(tmp_path, categories=categories)


def test_coco_annotation_of_a_missing_image_id_is_reported(tmp_path, caplog):
    with pytest.raises(
        DataError,
        match=r"instances\.json: annotations\[1\] \(id 109\) points "
        r"to image id 9, which no image entry has",
    ):
        coco(tmp_path, annotations=[box(1), box(9)])
    with caplog.at_level("WARNING", logger="keras_ssd.data"):
        ds = coco(tmp_path, annotations=[box(1), box(9)], on_error="skip")
    assert len(ds) == 2 and ds.num_skipped == 1
    assert any("image id 9" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("iscrowd", ["0", "1", 2, 0.5, [0]])
def test_coco_iscrowd_must_be_zero_or_one(tmp_path, iscrowd):
    with pytest.raises(DataError, match=r"a\.jpg\).*annotation 101 has iscrowd"):
        coco(tmp_path, annotations=[box(1, iscrowd=iscrowd)])


def test_coco_iscrowd_booleans_and_integers_still_read(tmp_path):
    ds = coco(tmp_path, annotations=[box(1, iscrowd=True), box(2, iscrowd=0)])
    assert ds[0]["crowd"].tolist() == [True] and ds[1]["crowd"].tolist() == [False]


@pytest.mark.parametrize(
    "entry",
    [
        "a.jpg",
        None,
        3,
        [1],
        {"id": None, "file_name": "c.jpg"},
        {"file_name": "c.jpg"},
        {"id": {"x": 1}},
    ],
)
def test_coco_malformed_image_entry_names_it(tmp_path, entry):
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}, entry]
    with pytest.raises(
        DataError, match=r"instances\.json: images\[1\]: malformed image entry"
    ):
        coco(tmp_path, images=images)
    assert len(coco(tmp_path, images=images, on_error="skip")) == 1


def test_coco_deeply_nested_json_is_a_data_error(tmp_path):
    raw = '{"images": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(DataError, match=r"instances\.json: JSON nested too deeply"):
        coco(tmp_path, raw=raw)


def test_coco_integer_of_thousands_of_digits_names_the_file(tmp_path):
    raw = '{"images": [{"id": ' + "9" * 5000 + '}], "annotations": [], "categories": []}'
    with pytest.raises(DataError, match=r"instances\.json: unreadable JSON value"):
        coco(tmp_path, raw=raw)


@pytest.mark.parametrize("width", [float("inf"), -3, "40", 1.5])
def test_coco_absurd_image_size_is_a_data_error(tmp_path, width):
    images = [{"id": 1, "file_name": "a.jpg", "width": width, "height": 30}]
    with pytest.raises(DataError, match=r"images\[0\]: malformed image entry"):
        coco(tmp_path, images=images)


# --------------------------------------------------------------------- YOLO
def yolo(
    root, label_bytes=b"0 0.5 0.5 0.5 0.5\n", yaml_text="train: images\nnames: [cat, dog]\n"
):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    Image.new("RGB", (40, 20)).save(os.path.join(root, "images", "a.png"))
    with open(os.path.join(root, "labels", "a.txt"), "wb") as f:
        f.write(label_bytes)
    with open(os.path.join(root, "data.yaml"), "w", encoding="utf-8") as f:
        f.write(yaml_text)
    return YOLODataset(str(root), split="train")


def test_yolo_label_file_with_a_byte_order_mark_reads(tmp_path):
    ds = yolo(tmp_path, b"\xef\xbb\xbf1 0.5 0.5 0.5 0.5\n")
    assert ds[0]["labels"].tolist() == [1]


@pytest.mark.parametrize(
    "names,where",
    [
        ("[cat, [dog]]", r"names\[1\] is \['dog'\]"),
        ("[cat, {a: b}]", r"names\[1\] is \{'a': 'b'\}"),
        ("[cat, null]", r"names\[1\] is None"),
        ("{0: cat, 1: [x]}", r"names\[1\] is \['x'\]"),
        ("{0: cat, '1': dog}", r"'names' keys must be class ids"),
    ],
)
def test_yolo_names_entries_must_be_strings(tmp_path, names, where):
    with pytest.raises(DataError, match=r"data\.yaml: " + where):
        yolo(tmp_path, yaml_text=f"train: images\nnames: {names}\n")


def test_yolo_integer_names_read_as_their_digits(tmp_path):
    assert yolo(tmp_path, yaml_text="train: images\nnames: [7, 8]\n").class_names == (
        "7",
        "8",
    )


def test_yolo_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    text = "\n".join(lines) + "\ntrain: images\nnames: *a8\n"  # 10**9 leaves
    tracemalloc.start()
    try:
        with pytest.raises(
            DataError, match=r"data\.yaml: malformed YAML .*alias \*a0 refused"
        ):
            yolo(tmp_path, yaml_text=text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_yolo_oversized_yaml_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"data\.yaml: dataset YAML is larger than"):
        yolo(tmp_path, yaml_text="train: images\nnames: [cat]\n#" + "x" * (1 << 20))


def test_yolo_deeply_nested_yaml_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"data\.yaml: "):
        yolo(tmp_path, yaml_text="names: " + "[" * 50_000 + "]" * 50_000 + "\n")


# ---------------------------------------------------------------------- CSV
def test_csv_infinite_image_size_column_is_a_data_error(tmp_path):
    Image.new("RGB", (40, 20)).save(tmp_path / "a.png")
    path = tmp_path / "boxes.csv"
    path.write_text(
        "image_path,xmin,ymin,xmax,ymax,class_name,width,height\n"
        "a.png,1,1,5,5,cat,1e999,20\n"
    )
    with pytest.raises(DataError, match=r"boxes\.csv: line 2: image size inf x 20"):
        CSVDataset(str(path))
