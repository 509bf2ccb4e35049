"""`keras-ssd evaluate` and `predict` on an exported artifact, read through
the metadata stored in it; an artifact without metadata is one line."""

import json
import os
import shutil

import pytest


@pytest.fixture(scope="module")
def saved_model_artifact(model_file, tmp_path_factory):
    from keras_ssd.export import export
    from keras_ssd.saving import load_model

    path = str(tmp_path_factory.mktemp("artifact") / "detector")
    export(load_model(model_file, compile=False), path, format="tf_saved_model", verbose=0)
    return path


def test_evaluate_an_artifact_scores_as_its_keras_model(
        run_cli, synthetic_voc, model_file, saved_model_artifact, tmp_path):
    code, out, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file",
                             model_file,
                             "--out", str(tmp_path / "keras"))
    assert code == 0, err
    code, out, err = run_cli("evaluate", "--data", synthetic_voc, "--model-file",
                             saved_model_artifact, "--out", str(tmp_path / "artifact"))
    assert code == 0, err
    assert "tf_saved_model artifact" in out and "160x160" in out
    keras_report = json.loads((tmp_path / "keras" / "report.json").read_text())
    artifact_report = json.loads((tmp_path / "artifact" / "report.json").read_text())
    assert artifact_report["mAP"] == pytest.approx(keras_report["mAP"], abs=1e-4)
    assert [c["name"] for c in artifact_report["report"]["classes"]] == \
        [c["name"] for c in keras_report["report"]["classes"]]


def test_predict_with_an_artifact(run_cli, synthetic_voc, saved_model_artifact, tmp_path):
    images = os.path.join(synthetic_voc, "JPEGImages")
    code, out, err = run_cli("predict", images, "--model-file", saved_model_artifact,
                             "--threshold", "0.0", "--out", str(tmp_path / "p"))
    assert code == 0, err
    payload = json.loads((tmp_path / "p" / "detections.json").read_text())
    assert len(payload["images"]) == len(os.listdir(images))
    names = {d["name"] for rec in payload["images"] for d in rec["detections"]}
    assert names and names <= {"circle", "square", "triangle", "cross"}


def test_artifact_without_metadata_is_one_line(
        run_cli, assert_one_line_error, synthetic_voc, saved_model_artifact, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(saved_model_artifact, bare)
    shutil.rmtree(bare / "assets.extra")
    for command in (["evaluate", "--data", synthetic_voc], ["predict", synthetic_voc]):
        code, _, err = run_cli(*command, "--model-file", str(bare), "--out",
                               str(tmp_path / "out"))
        assert_one_line_error(code, err, f"{bare} has no keras-ssd metadata",
                              "export it again", status=1)
