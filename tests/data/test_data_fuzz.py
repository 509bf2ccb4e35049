"""Property-based fuzzing of the annotation readers (Hypothesis): every
generated COCO JSON, YOLO label file / data.yaml and CSV file gives records
or one `DataError` naming the file, never another exception, within a time
bound. The number of cases per fuzzer is `KERAS_SSD_FUZZ_EXAMPLES` (see
tests/conftest.py)."""

import csv
import io
import json
import os
import tempfile
import time

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from keras_ssd.data import COCODataset, CSVDataset, DataError, YOLODataset  # noqa: E402

#: Seconds one generated case may take (generous: a shared, loaded machine).
CASE_SECONDS = 10

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 70)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ids = st.integers(0, 4) | st.sampled_from(["1", "2", "01", 1.0, 2.5]) | scalars


@pytest.fixture(scope="module")
def folder():
    """One folder for all cases (Hypothesis reruns a test body many times):
    two 32x24 images the generated files may name."""
    with tempfile.TemporaryDirectory(prefix="keras_ssd_fuzz_") as path:
        for name in ("a.png", "b.png"):
            Image.new("RGB", (32, 24), (40, 80, 120)).save(os.path.join(path, name))
        yield path


def records_or_data_error(read, folder):
    """`read()` gives a dataset with well-formed records, or a DataError
    naming a file of `folder` (any other exception fails the test), within
    CASE_SECONDS."""
    started = time.monotonic()
    try:
        ds = read()
    except DataError as e:
        assert e.path is not None and str(e).startswith(folder), str(e)
        ds = None
    assert time.monotonic() - started < CASE_SECONDS
    if ds is not None:
        for rec in ds:
            assert rec["boxes"].shape == (len(rec["labels"]), 4)
            assert ((rec["labels"] >= 0) & (rec["labels"] < ds.num_classes)).all()
    return ds


# --------------------------------------------------------------------- COCO
image_entries = (
    st.fixed_dictionaries(
        {"id": ids},
        optional={
            "file_name": st.sampled_from(["a.png", "b.png", "c.png"]) | scalars,
            "width": st.sampled_from([32, 0]) | scalars,
            "height": st.sampled_from([24, 0]) | scalars,
        },
    )
    | values
)
annotation_entries = (
    st.fixed_dictionaries(
        {"image_id": ids},
        optional={
            "id": ids,
            "category_id": ids,
            "bbox": st.lists(
                st.integers(-5, 40) | st.floats(-5, 40) | scalars, min_size=3, max_size=5
            )
            | values,
            "iscrowd": st.sampled_from([0, 1]) | scalars,
        },
    )
    | values
)
category_entries = (
    st.fixed_dictionaries({"id": ids, "name": st.sampled_from(["cat", "dog"]) | scalars})
    | values
)
coco_documents = (
    st.fixed_dictionaries(
        {
            "images": st.lists(image_entries, max_size=4),
            "annotations": st.lists(annotation_entries, max_size=5),
            "categories": st.lists(category_entries, max_size=3),
        }
    )
    | values
)


@FUZZ
@given(
    document=coco_documents,
    check=st.sampled_from(["none", "header"]),
    on_error=st.sampled_from(["raise", "skip"]),
)
def test_fuzzed_coco_json_gives_records_or_a_data_error(folder, document, check, on_error):
    path = os.path.join(folder, "instances.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f)
    records_or_data_error(
        lambda: COCODataset(path, folder, check_images=check, on_error=on_error), folder
    )


VALID_COCO = json.dumps(
    {
        "images": [{"id": 1, "file_name": "a.png", "width": 32, "height": 24}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 8], "iscrowd": 0}
        ],
        "categories": [{"id": 3, "name": "cat"}],
    }
).encode()


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(VALID_COCO) - 1), st.binary(max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_fuzzed_bytes_of_a_valid_coco_file_give_records_or_a_data_error(folder, edits):
    data = bytearray(VALID_COCO)
    for at, new in edits:
        data[at : at + 1] = new
    path = os.path.join(folder, "mutated.json")
    with open(path, "wb") as f:
        f.write(bytes(data))
    records_or_data_error(lambda: COCODataset(path, folder, check_images="header"), folder)


# --------------------------------------------------------------------- YOLO
numbers = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "0.5",
        "0.25",
        "1.0",
        "-0.1",
        "nan",
        "inf",
        "1e999",
        "0x1",
        "1_0",
        "٣",
        "9" * 400,
    ]
)
tokens = numbers | st.text(max_size=4)
label_lines = st.lists(st.lists(tokens, max_size=7).map(" ".join), max_size=4)
separators = st.sampled_from(["\n", "\r\n", "\r", "\x00", "\t", "\x0b"])
yaml_texts = (
    st.builds(
        lambda names: "train: images\nnames: " + json.dumps(names) + "\n",
        st.lists(scalars, max_size=3) | st.dictionaries(ids, scalars, max_size=3) | values,
    )
    | st.text(max_size=60).map(lambda t: "train: images\n" + t)
    | st.sampled_from(
        [
            "train: images\nnames: &a [x, *a]\n",
            "names: !!python/name:os.system\n",
            "train: images\nnames: [cat]\nnc: " + "9" * 5000 + "\n",
            "train: images\nnames: [cat]\n" + "- " * 3000,
        ]
    )
)


@FUZZ
@given(
    lines=label_lines,
    sep=separators,
    bom=st.booleans(),
    raw=st.none() | st.binary(max_size=40),
    yaml_text=st.none() | yaml_texts,
)
def test_fuzzed_yolo_labels_and_yaml_give_records_or_a_data_error(
    folder, lines, sep, bom, raw, yaml_text
):
    root = os.path.join(folder, "yolo")
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    image = os.path.join(root, "images", "a.png")
    if not os.path.exists(image):
        Image.new("RGB", (32, 24)).save(image)
    label = (
        raw if raw is not None else (("\ufeff" if bom else "") + sep.join(lines)).encode()
    )
    with open(os.path.join(root, "labels", "a.txt"), "wb") as f:
        f.write(label)
    with open(os.path.join(root, "data.yaml"), "w", encoding="utf-8") as f:
        f.write(
            yaml_text if yaml_text is not None else "train: images\nnames: [cat, dog]\n"
        )
    records_or_data_error(lambda: YOLODataset(root, split="train"), folder)


# ---------------------------------------------------------------------- CSV
csv_fields = st.sampled_from(
    [
        "a.png",
        "b.png",
        "c.png",
        "",
        "cat",
        "dog",
        "1",
        "5",
        "30",
        "-2",
        "nan",
        "1e999",
        "image_path",
        "xmin",
        "width",
    ]
) | st.text(max_size=5)


@FUZZ
@given(
    rows=st.lists(st.lists(csv_fields, max_size=9), max_size=5),
    header=st.booleans(),
    class_rows=st.none() | st.lists(st.lists(csv_fields, max_size=3), max_size=3),
    raw=st.none() | st.binary(max_size=60),
)
def test_fuzzed_csv_gives_records_or_a_data_error(folder, rows, header, class_rows, raw):
    path = os.path.join(folder, "boxes.csv")
    text = io.StringIO()
    writer = csv.writer(text)
    if header:
        writer.writerow(
            ["image_path", "xmin", "ymin", "xmax", "ymax", "class_name", "width", "height"]
        )
    writer.writerows(rows)
    with open(path, "wb") as f:
        f.write(raw if raw is not None else text.getvalue().encode())
    class_file = None
    if class_rows is not None:
        class_file = os.path.join(folder, "classes.csv")
        with open(class_file, "w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(class_rows)

    records_or_data_error(lambda: CSVDataset(path, class_file=class_file), folder)
