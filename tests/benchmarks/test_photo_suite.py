"""The learning suite's datasets (`benchmarks.photo_suite`) on synthetic
stand-in sources (no scikit-image, no scikit-learn): both layouts, and test
objects that are never training instances."""

import json
import pathlib
import sys

import numpy as np
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import photo_dataset, photo_suite  # noqa: E402
from keras_ssd.data import VOCDataset, YOLODataset  # noqa: E402


def _fake_sources(seed=0):
    """Random stand-ins shaped like `load_sources()`'s, at reduced size; the
    Hubble stand-in has 40 bright squares on black, so 36 galaxies exist."""
    rng = np.random.default_rng(seed)
    photos = {}
    names = set(photo_dataset.PHOTO_NAMES) | {"hubble_deep_field", "coins", "china",
                                              "flower"}
    for name in names:
        w, h = photo_dataset.REFERENCE_SIZES.get(name, (640, 427))
        w, h = max(48, w // 3), max(48, h // 3)
        img = rng.integers(0, 256, 3) + rng.normal(0, 30, (h, w, 3))
        photos[name] = np.clip(img, 0, 255).astype(np.uint8)
    photos["coins"] = np.clip(rng.normal(120, 40, (303, 384, 3)), 0, 255).astype(np.uint8)
    hubble = np.zeros((300, 400, 3), np.uint8)
    for k in range(40):
        y, x = 10 + 35 * (k // 10), 10 + 38 * (k % 10)
        hubble[y:y + 14 + k % 5, x:x + 14] = 220
    photos["hubble_deep_field"] = hubble
    return {"photos": photos,
            "digits": rng.uniform(0, 16, (1797, 8, 8)).astype(np.float32),
            "digit_labels": np.arange(1797) % 10,
            "lfw": rng.uniform(0, 1, (200, 25, 25))}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    sources = _fake_sources()
    return {name: pathlib.Path(photo_suite.make_dataset(name, root / name, 10, 5, seed=1,
                                                        sources=sources))
            for name in photo_suite.NAMES}


@pytest.mark.parametrize("name", photo_suite.NAMES)
def test_suite_dataset_reads_back_in_voc_and_yolo_layout_with_the_same_boxes(suite, name):
    root = suite[name]
    classes = tuple((root / "labels.txt").read_text().split())
    assert classes == photo_suite.SPECS[name]["classes"]
    lo, hi = photo_suite.SPECS[name]["objects"]
    voc = {s: VOCDataset(root, s, class_names=classes) for s in ("trainval", "test")}
    assert (len(voc["trainval"]), len(voc["test"])) == (10, 5)
    data = yaml.safe_load((root / "yolo" / "data.yaml").read_text())
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert [data["names"][i] for i in range(len(classes))] == list(classes)
    for split, yolo_split in (("trainval", "train"), ("test", "val")):
        yolo = YOLODataset(root / "yolo", yolo_split)
        assert len(yolo) == len(voc[split])
        by_stem = {pathlib.Path(r["image_path"]).stem: r for r in yolo}
        for rec in voc[split]:
            b = np.asarray(rec["boxes"], np.float64)
            assert 1 <= len(b) <= hi  # a crowded image may place fewer than drawn
            assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
            assert b[:, :2].min() >= 0 and b[:, 2].max() <= rec["width"]
            assert b[:, 3].max() <= rec["height"]
            other = by_stem[rec["image_id"]]
            np.testing.assert_allclose(other["boxes"], b, atol=0.01 * rec["width"])
            np.testing.assert_array_equal(other["labels"], rec["labels"])
    assert lo >= 1


@pytest.mark.parametrize("name", photo_suite.NAMES)
def test_no_test_object_is_an_instance_seen_in_training(suite, name):
    used = json.loads((suite[name] / "instances.json").read_text())
    train = {k for keys in used["trainval"].values() for k in keys}
    test = {k for keys in used["test"].values() for k in keys}
    assert train and test
    if name != "textures":
        assert not train & test
        return
    # textures: every object is a window of its material photo; the windows
    # of the two splits never share a column of any photo
    spans = {"trainval": {}, "test": {}}
    for split, keys in (("trainval", train), ("test", test)):
        for key in keys:
            photo, x0, x1 = photo_suite.texture_ranges(key)
            lo, hi = spans[split].get(photo, (x0, x1))
            spans[split][photo] = (min(lo, x0), max(hi, x1))
    for photo, (a0, a1) in spans["trainval"].items():
        if photo in spans["test"]:
            b0, b1 = spans["test"][photo]
            assert a1 <= b0 + 1, (photo, (a0, a1), (b0, b1))  # +1: ceil of a float edge


def test_instance_pools_split_the_sources_not_only_the_scenes():
    sources = _fake_sources()
    digits = photo_suite.instances("digits", sources)
    assert len(digits["trainval"]) == photo_suite.DIGIT_SPLIT
    assert len(digits["test"]) == 1797 - photo_suite.DIGIT_SPLIT
    faces = photo_suite.instances("faces", sources)
    keys = {s: {i.key for i in faces[s]} for s in faces}
    assert not keys["trainval"] & keys["test"]
    for label in range(3):  # every class has unseen test instances
        assert any(i.label == label for i in faces["test"])
        assert any(i.label == label for i in faces["trainval"])


def test_unknown_dataset_name_and_empty_split_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown suite dataset 'cars'"):
        photo_suite.make_dataset("cars", tmp_path, 2, 2, sources=_fake_sources())
    with pytest.raises(ValueError, match="image counts must be >= 1"):
        photo_suite.make_dataset("digits", tmp_path, 2, 0, sources=_fake_sources())


def test_build_suite_reuses_a_cached_build(tmp_path):
    sources = _fake_sources()
    photo_suite.make_dataset("faces", tmp_path / "faces", 3, 2, seed=0, sources=sources)
    logged = []
    photo_suite.build_suite(tmp_path, 3, 2, seed=0, names=("faces",), log=logged.append)
    assert logged == [f"faces: {tmp_path / 'faces'} (cached)"]
    assert not photo_suite.is_cached(tmp_path / "faces", "faces", 4, 2, 0)


def test_learning_suite_table_and_unknown_dataset(tmp_path, capsys):
    from benchmarks import learning

    rows = [{"dataset": "digits", "minutes": 5.0,
             "ours": {"mAP": 0.1234, "epochs": 3},
             "baseline": {"mAP": 0.05, "epochs": 1.5},
             "yolo": {"mAP": 0.0, "epochs": 2}},
            {"dataset": "faces", "minutes": 5.0, "ours": {"mAP": 0.5, "epochs": 4}}]
    cpu = {"model": "Test CPU", "avx512": [], "amx": [], "cores": 2}
    lines = learning.format_suite_table(rows, cpu).splitlines()
    assert lines[0].split() == ["dataset", "min", "ours", "mAP", "ours", "ep", "baseline",
                                "mAP", "baseline", "ep", "yolov8n", "mAP", "yolo", "ep"]
    assert lines[2].split() == ["digits", "5", "12.34", "3", "5.00", "1.50", "0.00", "2"]
    assert lines[3].split() == ["faces", "5", "50.00", "4", "-", "-", "-", "-"]
    assert "Test CPU; 2 cores" in lines[-1]
    code = learning.main(["--suite", "--datasets", "digits,cars", "--out", str(tmp_path)])
    assert code == 1
    assert "unknown suite dataset(s) cars" in capsys.readouterr().err
