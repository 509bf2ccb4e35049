"""`keras-ssd train / evaluate --format`: YOLO, CSV and COCO data from the
command line, and the checks before TensorFlow."""

import csv
import json
import os

import pytest

from keras_ssd.cli import build_parser


@pytest.fixture(scope="module")
def yolo_copy(synthetic_voc, tmp_path_factory):
    """The synthetic set in YOLO layout: train (12 images) and val (4)."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset, write_yolo

    root = tmp_path_factory.mktemp("yolo_copy")
    for split, yolo_split in (("trainval", "train"), ("test", "val")):
        write_yolo(VOCDataset(synthetic_voc, split, class_names=SYNTHETIC_CLASSES), root,
                   split=yolo_split)
    return str(root)


@pytest.fixture(scope="module")
def csv_copy(synthetic_voc, tmp_path_factory):
    """The synthetic test split as a keras-retinanet CSV (no header, relative paths)."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    root = tmp_path_factory.mktemp("csv_copy")
    path = root / "test.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        for rec in VOCDataset(synthetic_voc, "test", class_names=SYNTHETIC_CLASSES):
            image = os.path.relpath(rec["image_path"], root)
            for box, label in zip(rec["boxes"].tolist(), rec["labels"]):
                writer.writerow([image, *box, SYNTHETIC_CLASSES[label]])
    return str(path)


def test_format_option_and_split_defaults():
    from keras_ssd.cli.args import resolve_split

    for command in ("train", "evaluate"):
        args = build_parser().parse_args([command, "--data", "x", "--model-file", "m"]
                                         if command == "evaluate" else [command, "--data", "x"])
        assert args.format == "auto"
    args = build_parser().parse_args(["train", "--data", "x", "--format", "yolo"])
    assert resolve_split("yolo", args.split) == "train"
    assert resolve_split("yolo", args.val_split, evaluation=True) == "val"
    assert resolve_split("voc", args.split) == "trainval"
    assert resolve_split("coco", args.split) is None and resolve_split("csv", args.split) is None
    given = build_parser().parse_args(["train", "--data", "x", "--split", "trainval"])
    assert resolve_split("yolo", given.split) == "trainval"  # a split given is kept
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "x", "--format", "kitti"])


def test_yolo_copy_trains_and_evaluates_from_the_command_line(run_cli, yolo_copy, tmp_path):
    ckpt = tmp_path / "ckpt"
    # no --classes: the names come from data.yaml
    code, out, err = run_cli("train", "--data", yolo_copy, "--format", "yolo",
                             "--val-data", yolo_copy, "--model", "tiny", "--epochs", "1",
                             "--batch-size", "4", "--workers", "0",
                             "--checkpoint-dir", str(ckpt))
    assert code == 0, err
    assert "on 12 images" in out and "validating on 4 images" in out
    assert "validation mAP" in out
    from keras_ssd.saving import load_model

    model = load_model(ckpt / "latest.keras", compile=False)
    assert list(model.config.names) == ["circle", "square", "triangle", "cross"]
    report = tmp_path / "eval.json"
    code, out, err = run_cli("evaluate", "--data", yolo_copy, "--model-file",
                             str(ckpt / "latest.keras"), "--json", str(report))
    assert code == 0, err  # auto: told YOLO from data.yaml; split val by default
    result = json.loads(report.read_text())
    assert result["format"] == "yolo" and result["split"] == "val"
    assert result["num_images"] == 4 and set(result["AP"]) == set(model.config.names)


def test_evaluate_reads_a_csv_file(run_cli, model_file, csv_copy):
    code, out, err = run_cli("evaluate", "--data", csv_copy, "--model-file", model_file)
    assert code == 0, err
    assert "4 images" in out and "circle" in out


def test_data_checks_fail_before_tensorflow_with_one_line(
        run_cli, assert_one_line_error, tmp_path, yolo_copy, synthetic_voc):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("train", "--data", str(tmp_path / "empty"))
    assert_one_line_error(code, err, "cannot tell the dataset format",
                          "ImageSets/Main/trainval.txt", "YOLO", "COCO", "CSV", "--format",
                          status=2)
    code, _, err = run_cli("train", "--data", str(tmp_path / "ann.csv"), "--format", "csv")
    assert_one_line_error(code, err, "--data: file not found", status=2)
    code, _, err = run_cli("evaluate", "--data", str(tmp_path / "none.json"),
                           "--model-file", "m.keras")
    assert_one_line_error(code, err, "--data: file not found", status=2)
    code, _, err = run_cli("train", "--data", yolo_copy, "--data", yolo_copy)
    assert_one_line_error(code, err, "only Pascal VOC folders can be given several times",
                          status=2)
    code, _, err = run_cli("train", "--data", synthetic_voc, "--format", "yolo",
                           "--model", "tiny")
    assert_one_line_error(code, err, "not a YOLO dataset", status=1)


def test_yolo_classes_must_match_data_yaml(run_cli, assert_one_line_error, yolo_copy,
                                           model_file, tmp_path):
    code, _, err = run_cli("train", "--data", yolo_copy, "--classes", "square,circle",
                           "--model", "tiny", "--checkpoint-dir", str(tmp_path / "c"))
    assert_one_line_error(code, err, "data.yaml: lists the classes", "differ", status=1)
    assert not (tmp_path / "c").exists()
    # a model of other classes on this data
    import keras

    from keras_ssd.models import SSDTiny

    keras.utils.set_random_seed(0)
    other = tmp_path / "other.keras"
    SSDTiny(class_names=["cat", "dog"]).save(other)
    code, _, err = run_cli("evaluate", "--data", yolo_copy, "--model-file", str(other))
    assert_one_line_error(code, err, "lists the classes", "['cat', 'dog']", status=1)
