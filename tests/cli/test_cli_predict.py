"""`keras-ssd predict`."""

import json
import os


def test_predict_missing_image_is_one_line_and_counted_in_the_status(
        run_cli, assert_one_line_error, model_file, tmp_path):
    code, out, err = run_cli("predict", "--model-file", model_file,
                             str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "keras-ssd predict: skipped",
                          "nope.jpg: file not found",
                          status=1)
    assert "1 inputs could not be read" in out
    payload = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert payload["failed"] == [{"input": str(tmp_path / "nope.jpg"),
                                  "error": "file not found"}]


def test_predict_writes_annotated_images_and_json(
        run_cli, model_file, synthetic_voc, tmp_path):
    images = os.path.join(synthetic_voc, "JPEGImages")
    first = sorted(os.listdir(images))[0]
    out = tmp_path / "predictions"
    code, stdout, err = run_cli("predict", "--model-file", model_file,
                             os.path.join(images, first), images, "--out", str(out),
                             "--threshold", "0.2")
    assert code == 0, err
    data = json.loads((out / "detections.json").read_text())
    assert len(data["images"]) == 1 + 16
    assert data["threshold"] == 0.2
    names = [rec["annotated"] for rec in data["images"]]
    assert len(set(names)) == len(names)  # the repeated image gets its own file
    for rec in data["images"]:
        assert (out / rec["annotated"]).is_file()
        for det in rec["detections"]:
            assert det["score"] > 0.2 and len(det["box"]) == 4
    assert "wrote 17 annotated images" in stdout
