"""`keras-ssd evaluate --preset ssd300_coco --format coco --metric coco`: a
model whose labels are COCO category ids takes the file's own categories
and is scored against them by id. Offline: the preset loads as a tiny model
with three COCO-id classes (one a placeholder)."""

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def coco_id_preset(monkeypatch):
    """Every preset 'loads' as a tiny model of COCO ids 1 (person), none
    (a placeholder) and 3 (car)."""
    from keras_ssd.config import SSDConfig
    from keras_ssd.models import SSDTiny, pretrained

    def load(preset, **kwargs):
        import keras

        keras.utils.set_random_seed(4)
        config = SSDConfig.tiny(3, ["person", "N/A-2", "car"]).replace(
            category_ids=[1, None, 3])
        return SSDTiny(config=config)

    monkeypatch.setattr(pretrained, "load_pretrained", load)


def write_coco(folder, categories):
    folder.mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 120, "height": 90})
        for j, c in enumerate(categories):
            annotations.append({"id": 10 * i + j, "image_id": i + 1, "category_id": c["id"],
                                "bbox": [5 + 20 * j, 10, 30, 40], "iscrowd": 0})
    path = folder / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories}))
    return str(path)


def test_evaluate_a_coco_preset_against_a_coco_file_by_category_id(
        run_cli, coco_id_preset, tmp_path):
    pytest.importorskip("pycocotools")
    data = write_coco(tmp_path / "coco", [{"id": 3, "name": "car"},
                                          {"id": 1, "name": "person"}])
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli("evaluate", "--preset", "ssd300_coco", "--data", data,
                                "--format", "coco", "--metric", "coco", "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    # The file's categories, in id order (COCODataset's labels); no placeholder.
    assert list(result["AP"]) == ["person", "car"]
    assert result["metric"] == "coco" and result["preset"] == "ssd300_coco"
    assert 0.0 <= result["mAP"] <= 1.0 and "AP50" in result
    assert "COCO AP@[.5:.95]" in stdout and "N/A-2" not in stdout


def test_a_coco_file_category_the_model_lacks_is_a_one_line_error(
        run_cli, assert_one_line_error, coco_id_preset, tmp_path):
    data = write_coco(tmp_path / "coco", [{"id": 1, "name": "person"},
                                          {"id": 5, "name": "airplane"}])
    code, _, err = run_cli("evaluate", "--preset", "ssd300_coco", "--data", data,
                           "--format", "coco")
    assert_one_line_error(code, err, "5 'airplane' are not among the model's classes",
                          status=1)


def test_predict_json_carries_the_category_ids():
    from keras_ssd.cli.predict import detections_to_json

    det = {"boxes": np.zeros((2, 4)), "scores": [0.9, 0.8], "labels": [2, 1],
           "names": ["car", "N/A-2"], "category_ids": np.array([3, -1])}
    rows = detections_to_json("x.jpg", det)["detections"]
    assert [(r["name"], r["category_id"]) for r in rows] == [("car", 3), ("N/A-2", -1)]
    del det["category_ids"]
    assert "category_id" not in detections_to_json("x.jpg", det)["detections"][0]
