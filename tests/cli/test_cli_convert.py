"""`keras-ssd convert`, and `--preset` of `keras-ssd predict` / `train`.
Offline: the converter and the preset loader are stand-ins that build a
tiny model, and the downloader fails as it would without a network."""

import json
import os
import urllib.error

import pytest

from keras_ssd.data import SYNTHETIC_CLASSES


@pytest.fixture
def fake_converter(monkeypatch, make_tiny_model):
    """`keras_ssd.models.convert.convert_checkpoint` replaced by a tiny model
    maker that records its calls."""
    import keras_ssd.models.convert as convert

    calls = []

    def fake(path, source="auto", **kwargs):
        calls.append((path, source))
        return make_tiny_model(num_classes=3, seed=2, class_names=["cat", "N/A-2", "dog"])

    monkeypatch.setattr(convert, "convert_checkpoint", fake)
    return calls


@pytest.fixture
def fake_preset_loader(monkeypatch, make_tiny_model):
    """Every preset 'loads' as a tiny model with three classes."""
    from keras_ssd.models import pretrained

    def load(preset, **kwargs):
        return make_tiny_model(num_classes=3, seed=2, class_names=["cat", "N/A-2", "dog"])

    monkeypatch.setattr(pretrained, "load_pretrained", load)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    from keras_ssd.models import pretrained

    def fetch(url, destination):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(pretrained, "_urllib_fetch", fetch)
    monkeypatch.setenv("KERAS_SSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "pretrained"


def test_convert_writes_a_keras_model_from_a_checkpoint(run_cli, fake_converter, tmp_path):
    import keras

    checkpoint = tmp_path / "vgg_ssd300_voc0712.pth"
    checkpoint.write_bytes(b"stand-in")
    out = tmp_path / "voc.keras"
    code, stdout, err = run_cli("convert", str(checkpoint), "--source", "lufficc",
                                "--out", str(out))
    assert code == 0, err
    assert fake_converter == [(str(checkpoint), "lufficc")]
    assert keras.saving.load_model(out, compile=False).class_names == ["cat", "N/A-2", "dog"]
    assert "2 classes (cat, dog)" in stdout and f"wrote {out}" in stdout


def test_convert_names_the_output_after_the_checkpoint(run_cli, fake_converter, tmp_path,
                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ssd300_vgg16_coco-b556d3b4.pth").write_bytes(b"stand-in")
    code, _, err = run_cli("convert", "ssd300_vgg16_coco-b556d3b4.pth")
    assert code == 0, err
    assert fake_converter == [("ssd300_vgg16_coco-b556d3b4.pth", "auto")]
    assert (tmp_path / "ssd300_vgg16_coco-b556d3b4.keras").is_file()


@pytest.mark.parametrize("argv, fragment", [
    (["missing.pth"], "checkpoint not found: missing.pth"),
    ([], "give a checkpoint FILE.pth or --preset NAME"),
    (["x.pth", "--preset", "ssd300_coco"], "give a checkpoint FILE.pth or --preset NAME"),
    (["--preset", "ssd300_kitti"], "unknown pretrained preset 'ssd300_kitti'; choose one of "
                                   "ssd300_coco, ssd300_voc, ssd300_voc_amdegroot"),
    (["--preset", "ssd300_coco", "--source", "lufficc"], "a --preset knows its source"),
    (["HERE", "--out", "model.h5"], "must end in .keras"),
    (["HERE", "--out", "nowhere/model.keras"], "folder not found"),
])
def test_convert_argument_errors_are_one_line(run_cli, assert_one_line_error, tmp_path,
                                              monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.pth").write_bytes(b"")
    argv = [str(tmp_path / "x.pth") if a == "HERE" else a for a in argv]
    code, _, err = run_cli("convert", *argv)
    assert_one_line_error(code, err, fragment, status=2)


def test_convert_a_preset_offline_says_where_to_put_the_file(
        run_cli, assert_one_line_error, offline, tmp_path):
    code, _, err = run_cli("convert", "--preset", "ssd300_coco",
                           "--out", str(tmp_path / "coco.keras"))
    assert_one_line_error(
        code, err, "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth",
        str(offline / "ssd300_vgg16_coco-b556d3b4.pth"), "by hand", status=1)


def test_predict_with_a_preset_and_a_class_subset(run_cli, fake_preset_loader,
                                                  synthetic_voc, tmp_path):
    images = os.path.join(synthetic_voc, "JPEGImages")
    out = tmp_path / "predictions"
    code, _, err = run_cli("predict", "--preset", "ssd300_coco", "--classes", "dog",
                           images, "--out", str(out), "--threshold", "0.2")
    assert code == 0, err
    data = json.loads((out / "detections.json").read_text())
    assert data["preset"] == "ssd300_coco" and "model_file" not in data
    found = [d for rec in data["images"] for d in rec["detections"]]
    assert found and {(d["name"], d["label"]) for d in found} == {("dog", 0)}


@pytest.mark.parametrize("argv, fragment", [
    (["--preset", "ssd300_kitti"], "unknown pretrained preset 'ssd300_kitti'"),
    (["--model-file", "MODEL", "--classes", "dog"], "--classes goes with --preset"),
])
def test_predict_preset_errors_are_one_line(run_cli, assert_one_line_error, model_file,
                                            synthetic_voc, tmp_path, argv, fragment):
    argv = [model_file if a == "MODEL" else a for a in argv]
    code, _, err = run_cli("predict", *argv, synthetic_voc, "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, fragment, status=2)


def test_predict_an_unknown_subset_class_lists_the_valid_names(
        run_cli, assert_one_line_error, fake_preset_loader, synthetic_voc, tmp_path):
    code, _, err = run_cli("predict", "--preset", "ssd300_coco", "--classes", "horse",
                           os.path.join(synthetic_voc, "JPEGImages"), "--out",
                           str(tmp_path / "o"))
    assert_one_line_error(code, err, "'horse'", "valid names: cat, dog", status=1)


@pytest.mark.parametrize("argv, fragment", [
    (["--preset", "ssd300_kitti"], "unknown pretrained preset 'ssd300_kitti'"),
    (["--freeze", "backbone"], "--freeze goes with --preset"),
    (["--preset", "ssd300_voc", "--model", "tiny"], "is an ssd300 model, not --model tiny"),
])
def test_train_preset_errors_are_one_line(run_cli, assert_one_line_error, synthetic_voc,
                                          tmp_path, argv, fragment):
    code, _, err = run_cli("train", "--data", synthetic_voc, "--classes",
                           ",".join(SYNTHETIC_CLASSES), *argv,
                           "--checkpoint-dir", str(tmp_path / "ck"))
    assert_one_line_error(code, err, fragment, status=2)


def test_train_fine_tunes_a_preset_with_new_heads_and_its_recipe(
        run_cli, fake_preset_loader, synthetic_voc, tmp_path):
    import keras

    ck = tmp_path / "ck"
    code, stdout, err = run_cli("train", "--data", synthetic_voc, "--classes",
                                ",".join(SYNTHETIC_CLASSES), "--preset", "ssd300_voc",
                                "--epochs", "1", "--batch-size", "4", "--workers", "0",
                                "--no-augment", "--no-logs", "--checkpoint-dir", str(ck))
    assert code == 0, err
    assert f"fine-tuning preset ssd300_voc with new heads for {list(SYNTHETIC_CLASSES)}" \
        in stdout
    assert "recipe finetune-sgd: sgd lr 0.001" in stdout
    model = keras.saving.load_model(ck / "latest.keras", compile=False)
    assert model.class_names == list(SYNTHETIC_CLASSES)
    assert model.weight_decay == 5e-4  # the recipe's L2, built into the kernels


def test_the_source_choices_are_the_converters_names():
    from keras_ssd.cli.main import build_parser
    from keras_ssd.models.convert import SOURCES, mmdetection

    convert = build_parser()._subparsers._group_actions[0].choices["convert"]
    (source,) = [a for a in convert._actions if a.dest == "source"]
    assert tuple(source.choices) == ("auto", *SOURCES)
    # every converter the package defines is reachable, the mmdetection four included
    assert {s.name for s in mmdetection.SOURCES} <= set(source.choices)
    args = convert.parse_args(["x.pth", "--source", "mmdet_ssd512_voc"])
    assert args.source == "mmdet_ssd512_voc"
