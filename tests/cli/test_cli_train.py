"""`keras-ssd train`."""

import json
import os

import pytest

from keras_ssd.cli import build_parser, main


def test_train_model_choices_are_the_documented_ones():
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "x", "--model", "MobileNet-V2"])
    assert args.model == "mobilenet_v2" and args.split == "trainval" and args.val_split == "test"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--data", "x", "--model", "resnet"])


def test_a_0_1_model_name_still_works_and_says_what_to_use(capsys):
    args = build_parser().parse_args(["train", "--data", "x", "--model", "mobilenetv2"])
    assert args.model == "mobilenet_v2"
    assert capsys.readouterr().err == (
        "keras-ssd: --model: the SSD variant name 'mobilenetv2' is deprecated and goes in "
        "keras-ssd 0.3.0: use 'mobilenet_v2'\n")


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


# ------------------------------------------------------------ recipes
RECIPE_OPTIONS = ["--recipe", "--optimizer", "--epochs", "--time-limit", "--batch-size",
                  "--lr", "--momentum", "--weight-decay", "--warmup-epochs", "--schedule",
                  "--lr-decay-epochs"]


def test_train_help_lists_the_recipe_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in RECIPE_OPTIONS:
        assert option in out, f"train --help lacks {option}"
    for name in ("paper-sgd", "from-scratch-adamw", "sgd,adam,adamw", "step,cosine"):
        assert name in out


def _cli_recipe(*argv, backbone_weights=None):
    from keras_ssd.cli.train import resolve_cli_recipe

    args = build_parser().parse_args(["train", "--data", "x", *argv])
    return resolve_cli_recipe(args, backbone_weights)


def test_cli_recipe_is_the_models_with_the_options_given():
    from keras_ssd import presets

    assert _cli_recipe("--model", "tiny") == presets.FROM_SCRATCH
    assert _cli_recipe("--model", "ssd300", backbone_weights="imagenet") == presets.PAPER_SGD
    assert _cli_recipe("--model", "ssd300") == presets.FROM_SCRATCH  # --backbone-weights none
    assert _cli_recipe("--model", "tiny", "--recipe", "paper-sgd") == presets.PAPER_SGD
    length = _cli_recipe("--model", "tiny", "--epochs", "3", "--batch-size", "4")
    assert length == presets.FROM_SCRATCH.replace(epochs=3, batch_size=4)
    sgd = _cli_recipe("--model", "tiny", "--optimizer", "sgd", "--lr", "0.01",
                      "--momentum", "0.8", "--weight-decay", "1e-4", "--warmup-epochs", "0")
    assert sgd == presets.FROM_SCRATCH.replace(
        name="from-scratch-adamw (changed)", optimizer="sgd", learning_rate=0.01,
        momentum=0.8, weight_decay=1e-4, warmup_epochs=0.0)
    assert _cli_recipe("--model", "tiny", "--lr-decay-epochs", "2,3").schedule == "step"
    assert _cli_recipe("--model", "tiny", "--lr-decay-epochs", "2,3",
                       "--schedule", "cosine").schedule == "cosine"


@pytest.mark.parametrize("option, value, message", [
    ("--time-limit", "0", "expected a positive number"),
    ("--time-limit", "-2", "expected a positive number"),
    ("--time-limit", "soon", "expected a positive number"),
    ("--optimizer", "rmsprop", "invalid choice: 'rmsprop'"),
    ("--schedule", "poly", "invalid choice: 'poly'"),
    ("--recipe", "fast", "invalid choice: 'fast'"),
])
def test_train_rejects_bad_recipe_options(capsys, synthetic_voc, option, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", synthetic_voc, "--model", "tiny", option, value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_train_decay_epochs_with_a_time_limit_need_epochs(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path):
    common = ["train", "--data", synthetic_voc, "--model", "tiny",
              "--classes", os.path.join(synthetic_voc, "labels.txt"),
              "--checkpoint-dir", str(tmp_path / "ckpt")]
    code, _, err = run_cli(*common, "--time-limit", "5", "--lr-decay-epochs", "2,3")
    assert_one_line_error(code, err, "--lr-decay-epochs with --time-limit needs --epochs",
                          status=2)
    code, _, err = run_cli(*common, "--epochs", "4", "--lr-decay-epochs", "2,5")
    assert_one_line_error(code, err, "--lr-decay-epochs values must lie between 0 and "
                                     "--epochs (4)", status=2)
    assert not (tmp_path / "ckpt").exists()


def _tiny_run(run_cli, synthetic_voc, tmp_path, *options):
    return run_cli("train", "--data", synthetic_voc, "--model", "tiny", "--workers", "0",
                   "--classes", os.path.join(synthetic_voc, "labels.txt"),
                   "--checkpoint-dir", str(tmp_path / "ckpt"), "--exist-ok", *options)


def test_train_adamw_decay_goes_to_the_optimizer_not_the_model(
        run_cli, synthetic_voc, tmp_path, fake_training):
    from keras_ssd import presets

    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path)
    assert code == 0, err
    assert f"recipe {presets.FROM_SCRATCH.describe()}\n" in out
    assert f"  ({presets.FROM_SCRATCH.why})\n" in out
    (call,) = fake_training
    assert call["model"].weight_decay == 0.0
    assert call["weight_decay"] == pytest.approx(5e-4)
    assert call["recipe"] == presets.FROM_SCRATCH
    assert call["epochs"] == 60 and call["time_limit"] is None
    assert call["lr_decay_epochs"] is None


def test_train_sgd_decay_is_the_models_l2_penalty(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--optimizer", "sgd")
    assert code == 0, err
    assert "recipe from-scratch-adamw (changed): sgd lr 0.003; momentum 0.9; " \
           "L2 on kernels 0.0005;" in out
    assert "(AdamW with warm-up" not in out  # the why of a recipe no longer used
    (call,) = fake_training
    assert call["model"].weight_decay == pytest.approx(5e-4)
    assert call["weight_decay"] == 0.0 and call["recipe"].optimizer == "sgd"
    code, _, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--optimizer", "adam",
                             "--weight-decay", "1e-3")
    assert code == 0, err
    assert fake_training[-1]["model"].weight_decay == pytest.approx(1e-3)
    assert fake_training[-1]["weight_decay"] == 0.0
    code, _, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--weight-decay", "1e-3")
    assert code == 0, err
    assert fake_training[-1]["model"].weight_decay == 0.0
    assert fake_training[-1]["weight_decay"] == pytest.approx(1e-3)


def test_train_time_limit_is_passed_in_seconds(
        run_cli, synthetic_voc, tmp_path, fake_training, probed_speed):
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--time-limit", "1.5",
                               "--epochs", "4", "--lr-decay-epochs", "2,3")
    assert code == 0, err
    assert "time limit: 1.5 min of training, at most 4 epochs\n" in out
    call = fake_training[-1]
    assert call["time_limit"] == pytest.approx(90.0) and call["epochs"] == 4
    assert call["lr_decay_epochs"] == [2.0, 3.0] and call["recipe"].schedule == "step"
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--time-limit", "2")
    assert code == 0, err
    assert "time limit: 2 min of training\n" in out
    # no --epochs: as many as fit (the recipe's length is not a cap)
    assert fake_training[-1]["epochs"] is None
    assert fake_training[-1]["time_limit"] == pytest.approx(120.0)


def test_train_sgd_run_saves_a_model_with_the_l2_penalty(run_cli, synthetic_voc, tmp_path):
    import zipfile

    from keras_ssd.saving import load_model

    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--optimizer", "sgd",
                               "--epochs", "1", "--batch-size", "6")
    assert code == 0, err
    assert "recipe from-scratch-adamw (changed): sgd" in out
    assert "1 epochs of batch 6" in out
    latest = tmp_path / "ckpt" / "latest.keras"
    with zipfile.ZipFile(latest) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["config"]["weight_decay"] == pytest.approx(5e-4)
    model = load_model(latest)
    import keras

    assert type(model.optimizer) is keras.optimizers.SGD
    assert model.optimizer.weight_decay is None
    assert int(model.optimizer.iterations) == 2


def test_train_time_limited_run_stops_and_saves(run_cli, synthetic_voc, tmp_path):
    # 0.6 s of budget: the first step (tracing) usually spends it; either way
    # the run ends within --epochs and leaves a checkpoint
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--time-limit", "0.01",
                               "--epochs", "2", "--batch-size", "6")
    assert code == 0, err
    assert "time limit: 0.01 min of training, at most 2 epochs" in out
    state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert 1 <= state["epoch"] <= 2
    assert (tmp_path / "ckpt" / "latest.keras").is_file()


def test_train_ignore_difficult_reaches_train_detector(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, _, err = _tiny_run(run_cli, synthetic_voc, tmp_path)
    assert code == 0, err
    assert fake_training[-1]["ignore_difficult"] is False  # Caffe: trained
    code, _, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--ignore-difficult")
    assert code == 0, err
    assert fake_training[-1]["ignore_difficult"] is True


def test_train_fits_defaults_to_the_data_prints_and_saves_them(
        run_cli, synthetic_voc, tmp_path, fake_training):
    import json

    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path)
    assert code == 0, err
    assert "defaults fitted to the dataset (images 12, boxes " in out
    for name in ("input size", "prior sizes", "max zoom-out"):
        assert f"\n  {name}: " in out
    saved = json.loads((tmp_path / "ckpt" / "fitted_defaults.json").read_text())
    (call,) = fake_training
    assert call["augmentation"] == {"max_expand_ratio": saved["max_expand_ratio"]}
    assert list(call["model"].config.min_sizes) == saved["config"]["min_sizes"]
    assert call["model"].config.image_shape[0] == saved["decisions"][0]["value"]


def test_train_given_values_and_no_fit_win_over_the_fitted_defaults(
        run_cli, synthetic_voc, tmp_path, fake_training):
    from keras_ssd.config import SSDConfig

    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--image-size", "192",
                               "--max-expand-ratio", "2")
    assert code == 0, err
    assert "  input size: 192 (given) - --image-size\n" in out
    assert "  max zoom-out: 2 (given) - --max-expand-ratio\n" in out
    assert fake_training[-1]["model"].input_shape == (None, 192, 192, 3)
    assert fake_training[-1]["augmentation"] == {"max_expand_ratio": 2.0}
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--no-fit")
    assert code == 0, err
    assert "defaults fitted" not in out
    preset = SSDConfig.from_preset("tiny", num_classes=1)
    assert list(fake_training[-1]["model"].config.min_sizes) == list(preset.min_sizes)
    assert fake_training[-1]["model"].input_shape == (None, 160, 160, 3)
    assert fake_training[-1]["augmentation"] is None


def _default_model(*argv):
    from keras_ssd.cli.train import default_model

    return default_model(build_parser().parse_args(["train", "--data", "x", *argv]))


def test_default_model_follows_the_kind_of_run():
    from keras_ssd import presets

    assert _default_model() == "ssd300"  # the paper's, from ImageNet VGG16
    assert _default_model("--time-limit", "10") == presets.FROM_SCRATCH_VARIANT
    assert _default_model("--time-limit", "10", "--backbone-weights", "none") == \
        presets.FROM_SCRATCH_VARIANT
    # a backbone file names the paper's network; --model and --preset win
    assert _default_model("--time-limit", "10", "--backbone-weights", "vgg.h5") == "ssd300"
    assert _default_model("--time-limit", "10", "--model", "ssd512") == "ssd512"
    assert _default_model("--time-limit", "10", "--preset", "ssdlite320_coco") == "ssdlite320"
    assert presets.get(presets.FROM_SCRATCH_VARIANT).pretrained_backbone is False


def test_time_limited_run_without_model_trains_the_from_scratch_default(
        run_cli, synthetic_voc, tmp_path, fake_training, probed_speed):
    from keras_ssd import presets

    code, out, err = run_cli("train", "--data", synthetic_voc, "--workers", "0",
                             "--classes", os.path.join(synthetic_voc, "labels.txt"),
                             "--checkpoint-dir", str(tmp_path / "ckpt"), "--time-limit", "1")
    assert code == 0, err
    assert f"model: {presets.FROM_SCRATCH_VARIANT} (a time-limited run" in out
    assert fake_training[-1]["model"].architecture == presets.FROM_SCRATCH_VARIANT
    assert fake_training[-1]["recipe"] == presets.FROM_SCRATCH


def test_train_outcome_names_a_partial_last_epoch(capsys, tmp_path):
    import types

    import keras

    from keras_ssd.cli.train import _print_outcome

    history = keras.callbacks.History()
    history.history = {"loss": [3.0, 2.0, 1.5]}
    history.planned_steps, history.steps_per_epoch = 2 * 40 + 7, 40
    args = types.SimpleNamespace(checkpoint_dir=str(tmp_path), data=[str(tmp_path)],
                                 val_data=None, val_split=None)
    _print_outcome(args, history, 120.0, "voc", "train")
    out = capsys.readouterr().out
    assert "finished 3 epochs (the last one 7 steps of 40) in 2.0 min; final loss 1.5000" \
        in out
    history.planned_steps = 3 * 40  # whole epochs: nothing to add
    _print_outcome(args, history, 120.0, "voc", "train")
    assert "finished 3 epochs in 2.0 min" in capsys.readouterr().out


def test_train_time_limit_fits_the_batch_to_the_measured_speed(
        run_cli, synthetic_voc, tmp_path, fake_training, probed_speed):
    probed_speed.speed = 2.0  # img/s: 2 min hold 240 images, 8 steps of the recipe's 32
    probed = probed_speed.calls
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--time-limit", "2")
    assert code == 0, err
    assert probed == [((None, 160, 160, 3), 32)]  # the preset's side, the recipe's batch
    assert "  training speed: 2.0 img/s - measured at 160 px, batch 32" in out
    assert "  batch size: 8 - the budget holds about 8 steps of the recipe's 32" in out
    (call,) = fake_training
    assert call["recipe"].batch_size == 8
    saved = json.loads((tmp_path / "ckpt" / "fitted_defaults.json").read_text())
    assert saved["batch_size"] == 8
    # the user's batch wins; no budget, no probe
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path, "--time-limit", "2",
                               "--batch-size", "4")
    assert code == 0, err
    assert "  batch size: 4 (given) - --batch-size" in out
    assert fake_training[-1]["recipe"].batch_size == 4
    assert probed[-1][1] == 4
    code, out, err = _tiny_run(run_cli, synthetic_voc, tmp_path)
    assert code == 0, err
    assert len(probed) == 2 and "training speed" not in out


def test_speed_probe_trains_a_copy_and_reports_images_per_second():
    from keras_ssd.models import build_model
    from keras_ssd.training.speed_probe import measure_training_speed

    model = build_model("tiny", num_classes=2)
    speed = measure_training_speed(model, 2, steps=1)
    assert speed > 0 and int(model.optimizer.iterations) == 2
    with pytest.raises(ValueError, match="batch_size and steps must be >= 1"):
        measure_training_speed(model, 0)


def test_speed_probe_on_a_dataset_counts_the_time_to_make_its_batches(
        synthetic_train, monkeypatch):
    from keras_ssd.models import build_model
    from keras_ssd.training import speed_probe

    dataset = synthetic_train()
    made = []
    real_batches = speed_probe._batches

    def spy(*args):
        made.append(real_batches(*args))
        return made[-1]

    monkeypatch.setattr(speed_probe, "_batches", spy)
    model = build_model("tiny", class_names=dataset.class_names)
    speed = speed_probe.measure_training_speed(model, 2, steps=1, dataset=dataset)
    ((batches, times),) = made
    assert len(batches) == 2 and all(t > 0 for t in times)
    x, y = batches[0]
    assert x.shape == (2, 160, 160, 3) and y.shape == (2, model.config.num_anchors, 5)
    assert (y[..., 4] > 0).any()  # the dataset's boxes, encoded
    assert 0 < speed < 2 / min(times)  # the loading time is part of the step


@pytest.fixture
def offline(monkeypatch):
    """Keras' downloads fail as they do without a network."""
    from keras.src.utils import file_utils

    def fail(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or "
                        "service not known")

    monkeypatch.setattr(file_utils, "get_file", fail)


@pytest.mark.parametrize("model, what", [
    ("ssd300", "keras.applications.VGG16 (include_top=True)"),
    ("mobilenet_v2", "keras.applications.MobileNetV2 (include_top=False)"),
])
def test_train_without_a_network_says_how_to_train_offline_in_one_line(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path, offline, model, what):
    code, _, err = run_cli("train", "--data", synthetic_voc, "--model", model,
                           "--epochs", "1", "--checkpoint-dir", str(tmp_path / "run"))
    assert_one_line_error(code, err, f"could not download the ImageNet weights of {what}",
                          "URL fetch failure on https://storage.googleapis.com/",
                          "--backbone-weights PATH", "--backbone-weights none", status=1)
