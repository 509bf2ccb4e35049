"""`keras-ssd evaluate`."""

import json
import os

import pytest


def test_evaluate_prints_table_and_writes_json(
        run_cli, model_file, synthetic_voc, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = run_cli("evaluate", "--data", synthetic_voc, "--split", "test",
                             "--model-file", model_file, "--no-use-07-metric",
                             "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert set(result["AP"]) == {"circle", "square", "triangle", "cross"}
    assert 0.0 <= result["mAP"] <= 1.0 and result["use_07_metric"] is False
    assert "mAP" in stdout and "VOC10 area" in stdout
    for name in ("circle", "square", "triangle", "cross"):
        assert name in stdout


def test_evaluate_and_predict_refuse_a_keras_model_that_is_not_an_ssd(
        run_cli, synthetic_voc, tmp_path):
    import keras

    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(2)]).save(path)
    image = os.path.join(synthetic_voc, "JPEGImages", sorted(os.listdir(
        os.path.join(synthetic_voc, "JPEGImages")))[0])
    for command in (["evaluate", "--data", synthetic_voc],
                    ["predict", image, "--out", str(tmp_path / "p")]):
        code, _, err = run_cli(*command, "--model-file", str(path))
        assert code != 0
        assert "is a Keras model but not a keras-ssd SSD model" in err


def test_evaluate_writes_the_report_and_plots_to_a_fresh_folder(
        run_cli, synthetic_voc, model_file, tmp_path):
    pytest.importorskip("matplotlib")
    for folder in ("evaluate", "evaluate2"):
        code, stdout, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file",
                                    model_file, "--project", str(tmp_path / "runs"))
        assert code == 0, err
        out = tmp_path / "runs" / folder
        assert f"report: {out / 'report.json'}, {out / 'pr_curve.png'}, " \
               f"{out / 'confusion_matrix.png'}" in stdout
    payload = json.loads((out / "report.json").read_text())
    report = payload["report"]
    assert report["mAP50_voc07"] == pytest.approx(payload["mAP"])
    assert {"mAP50", "mAP50_95", "precision", "recall", "confusion_matrix",
            "pr_curves"} <= set(report)
    names = [c["name"] for c in report["classes"]]
    assert names == ["circle", "square", "triangle", "cross"]
    total = sum(c["ground_truth"] for c in report["classes"])
    assert total == report["num_ground_truth"] > 0
    header = next(line for line in stdout.splitlines() if line.startswith("class "))
    assert header.split()[-3:] == ["VOC07", "AP50", "AP50-95"]
