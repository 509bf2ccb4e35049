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
