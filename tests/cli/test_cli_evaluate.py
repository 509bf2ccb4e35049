"""`keras-ssd evaluate`."""

import json
import os


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


def test_evaluate_and_predict_accept_a_saved_inference_model(
        run_cli, model_file, synthetic_voc, tmp_path):
    import keras

    from keras_ssd.inference.model import inference_model

    path = tmp_path / "detector.keras"
    inference_model(keras.saving.load_model(model_file, compile=False)).save(path)
    code, stdout, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file", str(path))
    assert code == 0, err
    assert "circle" in stdout and "mAP" in stdout
    image = os.path.join(synthetic_voc, "JPEGImages", sorted(os.listdir(
        os.path.join(synthetic_voc, "JPEGImages")))[0])
    code, _, err = run_cli("predict", "--model-file", str(path), image,
                        "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert (tmp_path / "p" / "detections.json").is_file()
