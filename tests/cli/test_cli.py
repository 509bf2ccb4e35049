import json
import os
import re
import subprocess
import sys

import pytest

from keras_ssd.cli import VOC_CLASSES, CLIError, build_parser, main, parse_classes


TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
    r"To enable the following instructions)"
)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *fragments, status=None):
    assert code != 0
    if status is not None:
        assert code == status
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from keras_ssd.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("cli") / "shapes"
    make_synthetic_voc(root, num_trainval=12, num_test=4, image_size=160, seed=3)
    return str(root)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import keras

    from keras_ssd.data import SYNTHETIC_CLASSES
    from keras_ssd.models import SSDTiny

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    SSDTiny(class_names=list(SYNTHETIC_CLASSES)).save(path)
    return str(path)


# ------------------------------------------------------------------- help
def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in out


@pytest.mark.parametrize("command, options", [
    ("train", ["--data", "--split", "--val-data", "--val-split", "--classes", "--model",
               "--backbone-weights", "--epochs", "--batch-size", "--lr", "--checkpoint-dir",
               "--resume", "--workers", "--seed", "--weight-decay", "--warmup-epochs"]),
    ("evaluate", ["--data", "--split", "--model-file", "--use-07-metric",
                  "--no-use-07-metric", "--json"]),
    ("predict", ["--model-file", "IMAGE", "--out", "--threshold"]),
    ("demo", ["--out"]),
])
def test_subcommand_help_documents_its_options(capsys, command, options):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, f"{command} --help lacks {option}"


def test_no_command_prints_help_and_succeeds(capsys):
    code, out, _ = _run(capsys)
    assert code == 0 and "usage: keras-ssd" in out


def test_train_model_choices_are_the_documented_ones():
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x", "--model", "mobilenetv2"])
    assert args.model == "mobilenet_v2" and args.split == "trainval" and args.val_split == "test"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--model", "resnet"])


# ---------------------------------------------------------------- classes
def test_parse_classes_from_list_file_and_default(tmp_path):
    assert parse_classes(None) == list(VOC_CLASSES)
    assert parse_classes("cat, dog,bird") == ["cat", "dog", "bird"]
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\ncat\n\ndog\n")
    assert parse_classes(str(path)) == ["cat", "dog"]
    assert parse_classes("person") == ["person"]


def test_parse_classes_errors(tmp_path):
    with pytest.raises(CLIError, match="class file not found: .*nope.txt"):
        parse_classes(str(tmp_path / "nope.txt"))
    with pytest.raises(CLIError, match="repeats class names: cat"):
        parse_classes("cat,dog,cat")
    with pytest.raises(CLIError, match="empty class name"):
        parse_classes("cat,,dog")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(CLIError, match="lists no class names"):
        parse_classes(str(empty))


# ------------------------------------------------------------ bad arguments
def test_train_missing_data_folder_is_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--data", str(tmp_path / "VOC2007"))
    _assert_one_line_error(code, err, "keras-ssd train: error:", "folder not found",
                           "VOC2007", status=2)


def test_train_folder_without_split_file_is_one_line(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--data", str(tmp_path))
    _assert_one_line_error(code, err, "ImageSets/Main/trainval.txt", status=2)


def test_train_unknown_class_file_is_one_line(capsys, synthetic, tmp_path):
    code, _, err = _run(capsys, "train", "--data", synthetic, "--classes",
                        str(tmp_path / "labels.txt"))
    _assert_one_line_error(code, err, "class file not found", "labels.txt", status=2)


def test_train_class_names_missing_from_data_is_one_line(capsys, synthetic):
    # The annotations name shapes that are not in --classes: a DataError.
    code, _, err = _run(capsys, "train", "--data", synthetic, "--classes", "cat,dog",
                        "--model", "tiny")
    _assert_one_line_error(code, err, "keras-ssd train: error:", status=1)


def test_train_bad_numbers_and_resume_without_checkpoint(capsys, synthetic, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", synthetic, "--epochs", "0"])
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    code, _, err = _run(capsys, "train", "--data", synthetic, "--resume",
                        "--checkpoint-dir", str(tmp_path / "ckpt"))
    _assert_one_line_error(code, err, "no checkpoint to resume from", status=2)
    code, _, err = _run(capsys, "train", "--data", synthetic, "--model", "ssd300",
                        "--backbone-weights", str(tmp_path / "vgg.h5"))
    _assert_one_line_error(code, err, "weights file not found", status=2)


def test_train_bad_distribution_settings_are_one_line(capsys, synthetic, tmp_path,
                                                     monkeypatch):
    from keras_ssd.data import SYNTHETIC_CLASSES

    classes = ",".join(SYNTHETIC_CLASSES)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    code, _, err = _run(capsys, "train", "--data", synthetic, "--classes", classes,
                        "--model", "tiny", "--distribute", "multi-worker",
                        "--checkpoint-dir", str(tmp_path / "ckpt"))
    _assert_one_line_error(code, err, "--distribute multi-worker", "TF_CONFIG", status=2)
    assert not (tmp_path / "ckpt" / "latest.keras").exists()
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", synthetic, "--distribute", "ring"])
    assert exc.value.code == 2


def test_model_file_that_is_not_a_keras_ssd_model(capsys, synthetic, tmp_path):
    text = tmp_path / "notes.keras"
    text.write_text("hello")
    code, _, err = _run(capsys, "evaluate", "--data", synthetic, "--model-file", str(text))
    _assert_one_line_error(code, err, "is not a keras-ssd model", "notes.keras", status=1)

    import keras

    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(plain)
    code, _, err = _run(capsys, "predict", "--model-file", str(plain), str(text),
                        "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, "not a keras-ssd", "plain.keras", status=1)

    code, _, err = _run(capsys, "evaluate", "--data", synthetic, "--model-file",
                        str(tmp_path / "missing.keras"))
    _assert_one_line_error(code, err, "--model-file: file not found", status=2)


def test_predict_missing_image_is_one_line(capsys, model_file, tmp_path):
    code, _, err = _run(capsys, "predict", "--model-file", model_file,
                        str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "out"))
    _assert_one_line_error(code, err, "image not found", "nope.jpg", status=2)


def test_bad_arguments_from_the_installed_command_give_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_ssd", "evaluate", "--data", str(tmp_path / "nope"),
         "--model-file", "m.keras"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # TensorFlow's own start-up log lines (absl/C++ logging) are not ours.
    ours = [line for line in proc.stderr.splitlines()
            if line.strip() and not TF_LOG_LINE.match(line)]
    assert ours == [f"keras-ssd evaluate: error: --data: folder not found: {tmp_path / 'nope'}"]


# ------------------------------------------------------------- happy paths
def test_predict_writes_annotated_images_and_json(capsys, model_file, synthetic, tmp_path):
    images = os.path.join(synthetic, "JPEGImages")
    first = sorted(os.listdir(images))[0]
    out = tmp_path / "predictions"
    code, stdout, err = _run(capsys, "predict", "--model-file", model_file,
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


def test_evaluate_prints_table_and_writes_json(capsys, model_file, synthetic, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, err = _run(capsys, "evaluate", "--data", synthetic, "--split", "test",
                             "--model-file", model_file, "--no-use-07-metric",
                             "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert set(result["AP"]) == {"circle", "square", "triangle", "cross"}
    assert 0.0 <= result["mAP"] <= 1.0 and result["use_07_metric"] is False
    assert "mAP" in stdout and "VOC10 area" in stdout
    for name in ("circle", "square", "triangle", "cross"):
        assert name in stdout


def test_train_writes_checkpoints_that_evaluate_loads_and_resume_continues(
        capsys, synthetic, tmp_path):
    ckpt = tmp_path / "ckpt"
    common = ["train", "--data", synthetic, "--split", "trainval", "--val-data", synthetic,
              "--val-split", "test", "--classes", os.path.join(synthetic, "labels.txt"),
              "--model", "tiny", "--batch-size", "6", "--workers", "0",
              "--checkpoint-dir", str(ckpt), "--lr", "0.001"]
    code, stdout, err = _run(capsys, *common, "--epochs", "1")
    assert code == 0, err
    assert (ckpt / "latest.keras").is_file() and (ckpt / "best.keras").is_file()
    assert "validation mAP" in stdout and "keras-ssd evaluate" in stdout
    state = json.loads((ckpt / "state.json").read_text())
    assert state["epoch"] == 1

    code, stdout, err = _run(capsys, *common, "--epochs", "2", "--resume")
    assert code == 0, err
    assert "at epoch 1" in stdout
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2

    code, stdout, err = _run(capsys, "evaluate", "--data", synthetic,
                             "--model-file", str(ckpt / "latest.keras"))
    assert code == 0, err and "mAP" in stdout


def test_evaluate_and_predict_accept_a_saved_inference_model(capsys, model_file, synthetic,
                                                             tmp_path):
    import keras

    from keras_ssd.inference.model import inference_model

    path = tmp_path / "detector.keras"
    inference_model(keras.saving.load_model(model_file, compile=False)).save(path)
    code, stdout, err = _run(capsys, "evaluate", "--data", synthetic, "--model-file", str(path))
    assert code == 0, err
    assert "circle" in stdout and "mAP" in stdout
    image = os.path.join(synthetic, "JPEGImages", sorted(os.listdir(
        os.path.join(synthetic, "JPEGImages")))[0])
    code, _, err = _run(capsys, "predict", "--model-file", str(path), image,
                        "--out", str(tmp_path / "p"))
    assert code == 0, err
    assert (tmp_path / "p" / "detections.json").is_file()
