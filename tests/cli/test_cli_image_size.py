"""`--image-size S|HxW` and `--letterbox`: train builds the model at that
size (letterboxed), predict and export run a saved model at another size."""

import argparse
import json
import os

import numpy as np
import pytest

from keras_ssd.cli.args import _image_size


def test_image_size_option_reads_s_and_height_x_width():
    assert _image_size("300") == 300
    assert _image_size("300x540") == (300, 540)
    assert _image_size("320X320") == 320
    for bad in ("300x", "0x540", "300x540x3", "wide", "-300"):
        with pytest.raises(argparse.ArgumentTypeError, match="HxW"):
            _image_size(bad)


def test_a_bad_image_size_is_a_usage_error(synthetic_voc, capsys):
    from keras_ssd.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--data", synthetic_voc, "--model", "tiny", "--image-size", "300y540"])
    assert e.value.code == 2
    assert "--image-size: expected S or HxW" in capsys.readouterr().err


def test_train_builds_the_model_at_the_image_size_letterboxed(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, out, err = run_cli(
        "train", "--data", synthetic_voc, "--model", "tiny", "--workers", "0",
        "--classes", os.path.join(synthetic_voc, "labels.txt"),
        "--checkpoint-dir", str(tmp_path / "ckpt"), "--image-size", "160x224", "--letterbox")
    assert code == 0, err
    (call,) = fake_training
    model = call["model"]
    assert model.config.image_shape == (160, 224) and model.config.letterbox is True
    assert model.input_shape == (None, 160, 224, 3)
    assert "160x224 px letterboxed" in out


def test_predict_runs_a_square_model_at_a_wide_size(run_cli, model_file, tmp_path):
    from PIL import Image

    image = tmp_path / "wide.png"
    Image.fromarray(np.full((90, 160, 3), 128, np.uint8)).save(image)
    out = tmp_path / "out"
    code, stdout, err = run_cli("predict", str(image), "--model-file", model_file,
                                "--out", str(out), "--image-size", "160x288",
                                "--threshold", "0.0", "--top-k", "5")
    assert code == 0, err
    record = json.loads((out / "detections.json").read_text())["images"][0]
    assert 0 < len(record["detections"]) <= 5
    for det in record["detections"]:
        x0, y0, x1, y1 = det["box"]
        assert 0 <= x0 <= x1 <= 160 and 0 <= y0 <= y1 <= 90


def test_export_writes_the_image_size_into_the_input_signature(model_file, tmp_path):
    import keras
    import tensorflow as tf

    from keras_ssd.cli import main

    if keras.backend.backend() != "tensorflow":
        pytest.skip("export builds TensorFlow graphs")
    out = str(tmp_path / "exported")
    assert main(["export", "--model-file", model_file, "--out", out,
                 "--image-size", "160x224"]) == 0
    serve = tf.saved_model.load(out).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, 160, 224, 3]
