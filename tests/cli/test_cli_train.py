"""`keras-ssd train`."""

import json
import os

import pytest

from keras_ssd.cli import build_parser, main


def test_train_model_choices_are_the_documented_ones():
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x", "--model", "mobilenetv2"])
    assert args.model == "mobilenet_v2" and args.split == "trainval" and args.val_split == "test"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--model", "resnet"])


def test_train_missing_data_folder_is_one_line(run_cli, assert_one_line_error, tmp_path):
    code, _, err = run_cli("train", "--data", str(tmp_path / "VOC2007"))
    assert_one_line_error(code, err, "keras-ssd train: error:", "folder not found",
                           "VOC2007", status=2)


def test_train_folder_without_split_file_is_one_line(
        run_cli, assert_one_line_error, tmp_path):
    code, _, err = run_cli("train", "--data", str(tmp_path))
    assert_one_line_error(code, err, "ImageSets/Main/trainval.txt", status=2)


def test_train_unknown_class_file_is_one_line(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path):
    code, _, err = run_cli("train", "--data", synthetic_voc, "--classes",
                        str(tmp_path / "labels.txt"))
    assert_one_line_error(code, err, "class file not found", "labels.txt", status=2)


def test_train_class_names_missing_from_data_is_one_line(
        run_cli, assert_one_line_error, synthetic_voc):
    # The annotations name shapes that are not in --classes: a DataError.
    code, _, err = run_cli("train", "--data", synthetic_voc, "--classes", "cat,dog",
                        "--model", "tiny")
    assert_one_line_error(code, err, "keras-ssd train: error:", status=1)


def test_train_bad_numbers_and_resume_without_checkpoint(
        run_cli, assert_one_line_error, capsys, synthetic_voc, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", synthetic_voc, "--epochs", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    code, _, err = run_cli("train", "--data", synthetic_voc, "--resume",
                        "--checkpoint-dir", str(tmp_path / "ckpt"))
    assert_one_line_error(code, err, "no checkpoint to resume from", status=2)
    code, _, err = run_cli("train", "--data", synthetic_voc, "--model", "ssd300",
                        "--backbone-weights", str(tmp_path / "vgg.h5"))
    assert_one_line_error(code, err, "weights file not found", status=2)


def test_train_bad_distribution_settings_are_one_line(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path, monkeypatch):
    from keras_ssd.data import SYNTHETIC_CLASSES

    classes = ",".join(SYNTHETIC_CLASSES)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    code, _, err = run_cli("train", "--data", synthetic_voc, "--classes", classes,
                        "--model", "tiny", "--distribute", "multi-worker",
                        "--checkpoint-dir", str(tmp_path / "ckpt"))
    assert_one_line_error(code, err, "--distribute multi-worker", "TF_CONFIG", status=2)
    assert not (tmp_path / "ckpt" / "latest.keras").exists()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", synthetic_voc, "--distribute", "ring"])
    assert exc.value.code == 2


def test_train_writes_checkpoints_that_evaluate_loads_and_resume_continues(
        run_cli, synthetic_voc, tmp_path):
    ckpt = tmp_path / "ckpt"
    common = ["train", "--data", synthetic_voc, "--split", "trainval", "--val-data", synthetic_voc,
              "--val-split", "test", "--classes", os.path.join(synthetic_voc, "labels.txt"),
              "--model", "tiny", "--batch-size", "6", "--workers", "0",
              "--checkpoint-dir", str(ckpt), "--lr", "0.001"]
    code, stdout, err = run_cli(*common, "--epochs", "1")
    assert code == 0, err
    assert (ckpt / "latest.keras").is_file() and (ckpt / "best.keras").is_file()
    assert "validation mAP" in stdout and "keras-ssd evaluate" in stdout
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1

    code, stdout, err = run_cli(*common, "--epochs", "2", "--resume")
    assert code == 0, err
    assert "at epoch 1" in stdout
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2

    code, stdout, err = run_cli("evaluate", "--data", synthetic_voc,
                             "--model-file", str(ckpt / "latest.keras"))
    assert code == 0, err and "mAP" in stdout
