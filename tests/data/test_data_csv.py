"""CSVDataset: one row per object, keras-retinanet style, through the common
record interface."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import CSVDataset, DataError
from keras_ssd.data.csv_dataset import read_class_mapping

ROWS = [
    "imgs/a.jpg,1,2,11,12,dog",
    "imgs/b.jpg,,,,,",
    "imgs/a.jpg,0,0,40.5,20,cat",
    "imgs/c.png,5,5,15,10,dog",
]


@pytest.fixture
def folder(tmp_path):
    """`tmp_path/set` with images a.jpg (50x30), b.jpg (20x20), c.png (30x20) in imgs/."""
    root = tmp_path / "set"
    (root / "imgs").mkdir(parents=True)
    for name, size in (("a.jpg", (50, 30)), ("b.jpg", (20, 20)), ("c.png", (30, 20))):
        Image.new("RGB", size, (1, 2, 3)).save(root / "imgs" / name)
    return root


def write_csv(folder, rows, name="ann.csv", header=None):
    path = folder / name
    lines = ([header] if header else []) + list(rows)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("header", [None, "image_path,xmin,ymin,xmax,ymax,class_name",
                                    "\ufeffpath,x1,y1,x2,y2,label"])
def test_rows_group_into_records_with_or_without_header(folder, header, monkeypatch):
    path = write_csv(folder, ROWS, header=header)
    monkeypatch.chdir(folder.parent)  # relative paths come from the CSV's folder, not here
    ds = CSVDataset(path)
    assert ds.class_names == ("cat", "dog")  # sorted, not in order of appearance
    assert [r["image_id"] for r in ds] == ["imgs/a.jpg", "imgs/b.jpg", "imgs/c.png"]
    a, b, c = ds
    np.testing.assert_allclose(a["boxes"], [[1, 2, 11, 12], [0, 0, 40.5, 20]])
    assert a["labels"].tolist() == [1, 0] and a["difficult"].tolist() == [False, False]
    assert (a["width"], a["height"]) == (50, 30)
    assert a["image_path"] == os.path.join(str(folder), "imgs", "a.jpg")
    assert b["boxes"].shape == (0, 4) and b["labels"].shape == (0,)  # 'b.jpg,,,,,'
    assert c["labels"].tolist() == [1] and (c["width"], c["height"]) == (30, 20)
    assert ds.load_image(2).shape == (20, 30, 3)


def test_keras_retinanet_class_file_sets_the_label_order(folder):
    classes = write_csv(folder, ["dog,0", "cat,1", "bird,2"], name="classes.csv")
    ds = CSVDataset(write_csv(folder, ROWS), class_file=classes)
    assert ds.class_names == ("dog", "cat", "bird")
    assert ds[0]["labels"].tolist() == [0, 1]
    assert read_class_mapping(write_csv(folder, ["class_name,id", "b,1", "a,0"],
                                        name="c2.csv")) == ["a", "b"]
    for rows, message in ((["dog,0", "cat,2"], "without gaps"),
                          (["dog,0", "dog,1"], "line 2: class 'dog' repeated"),
                          (["dog,0", "cat"], "line 2: expected 'class_name,id'"),
                          (["dog,0", "cat,one"], "line 2: class id 'one' is not an integer")):
        with pytest.raises(DataError, match=message):
            read_class_mapping(write_csv(folder, rows, name="bad_classes.csv"))


def test_class_names_set_the_order_and_reject_other_classes(folder):
    ds = CSVDataset(write_csv(folder, ROWS), class_names=["dog", "cat"])
    assert ds[0]["labels"].tolist() == [0, 1]
    with pytest.raises(DataError, match=r"ann\.csv: line 1: unknown class 'dog' \(known: cat\)"):
        CSVDataset(write_csv(folder, ROWS), class_names=["cat"])
    classes = write_csv(folder, ["dog,0", "cat,1"], name="classes.csv")
    with pytest.raises(DataError, match="differ from the class_names"):
        CSVDataset(write_csv(folder, ROWS), class_names=["cat", "dog"], class_file=classes)


def test_header_maps_columns_by_name_with_image_sizes(folder):
    # the TensorFlow Object Detection API's order, sizes included
    header = "filename,width,height,class,xmin,ymin,xmax,ymax"
    rows = ["imgs/a.jpg,50,30,dog,1,2,11,12", "imgs/c.png,30,20,cat,5,5,15,10"]
    ds = CSVDataset(write_csv(folder, rows, header=header))
    np.testing.assert_allclose(ds[0]["boxes"], [[1, 2, 11, 12]])
    assert ds.class_names == ("cat", "dog") and ds[1]["labels"].tolist() == [0]
    bad = ["imgs/a.jpg,50,31,dog,1,2,11,12"]
    with pytest.raises(DataError, match=r"ann\.csv: line 2: .*a\.jpg: image is 50x30 .* says 50x31"):
        CSVDataset(write_csv(folder, bad, header=header))
    with pytest.raises(DataError, match="as a header it lacks the column"):
        CSVDataset(write_csv(folder, rows, header="filename,width,height,kind,a,b,c,d"))


@pytest.mark.parametrize("row, message", [
    ("imgs/c.png,5,5,15,dog", "expected 6 fields"),
    ("imgs/c.png,5,5,15,10,big,dog", "got 7 (a comma in an unquoted field?)"),
    ("imgs/c.png,5,five,15,10,dog", "a coordinate is not a number"),
    ("imgs/c.png,5,5,,10,dog", "all filled or all empty"),
    ("imgs/c.png,,,,,dog", "all filled or all empty"),
    ("imgs/c.png,5,5,15,10,cow", "unknown class 'cow'"),
    ("imgs/c.png,15,5,5,10,dog", "line 3 ('dog') box [xmin=15, ymin=5, xmax=5, ymax=10] is inverted"),
    ("imgs/c.png,31,5,40,10,dog", "lies entirely outside the 30x20 image"),
    ("imgs/c.png,5,5,inf,10,dog", "is not finite"),
    (",5,5,15,10,dog", "empty image path"),
])
def test_bad_row_names_the_file_and_line(folder, row, message):
    path = write_csv(folder, ["imgs/a.jpg,1,2,11,12,dog", "imgs/c.png,1,1,3,3,cat", row])
    with pytest.raises(DataError) as info:
        CSVDataset(path, class_names=["cat", "dog"])
    text = str(info.value)
    assert text.startswith(f"{path}: line 3") and message in text, text


def test_missing_image_names_the_line(folder):
    path = write_csv(folder, ["imgs/a.jpg,1,2,11,12,dog", "imgs/gone.jpg,1,1,3,3,cat"])
    with pytest.raises(DataError, match=r"ann\.csv: line 2: its image is missing: .*gone\.jpg"):
        CSVDataset(path)


def test_skip_mode_leaves_the_bad_images_out_and_counts(folder, caplog):
    rows = ["imgs/a.jpg,1,2,11,12,dog", "imgs/c.png,1,1,3,3,cat", "imgs/c.png,1,1,3,dog",
            "imgs/gone.jpg,1,1,3,3,cat", ",1,1,3,3,cat", "imgs/b.jpg,,,,,"]
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        ds = CSVDataset(write_csv(folder, rows), on_error="skip")
    # c.png loses all its rows (one is bad), not just the bad one
    assert [r["image_id"] for r in ds] == ["imgs/a.jpg", "imgs/b.jpg"]
    assert ds.num_skipped == 3
    problems = [problem for _, problem in ds.skipped]
    assert problems[0].startswith("line 3: expected 6 fields")
    assert problems[1].startswith("line 4: its image is missing")
    assert problems[2] == "line 5: empty image path"
    assert any("skipped 3 of 5 records" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_empty_box_is_dropped_with_a_warning_and_its_image_kept(folder, caplog, on_error):
    rows = ["imgs/a.jpg,4,2,4,12,dog", "imgs/a.jpg,1,2,11,12,cat", "imgs/a.jpg,1,7,9,7,cat"]
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        ds = CSVDataset(write_csv(folder, rows), on_error=on_error)
    assert len(ds) == 1 and ds[0]["labels"].tolist() == [0]
    assert ds.num_dropped_boxes == 2
    assert [where.rsplit(": ", 1)[1] for where, _ in ds.dropped_boxes] == ["line 1", "line 3"]
    assert any("dropped 2 empty boxes" in r.getMessage() for r in caplog.records)


def test_boxes_sticking_out_are_clipped_and_counted(folder):
    ds = CSVDataset(write_csv(folder, ["imgs/c.png,-2,5,35,10,dog"]))
    np.testing.assert_allclose(ds[0]["boxes"], [[0, 5, 30, 10]])
    assert ds.num_clipped_boxes == 1


def test_a_csv_without_any_class_needs_class_names(folder):
    path = write_csv(folder, ["imgs/b.jpg,,,,,"])
    with pytest.raises(DataError, match="no class names"):
        CSVDataset(path)
    assert len(CSVDataset(path, class_names=["cat"])) == 1
    with pytest.raises(DataError, match="CSV file not found"):
        CSVDataset(str(folder / "nope.csv"))
