"""What a training run leaves behind: the loss's confidence and localisation
parts as `fit` metrics (summing to the loss, train and validation), and the
run folder's TensorBoard logs, `history.csv` and `training.png`, kept across
a resume."""

import csv
import glob
import os

import keras
import numpy as np
import pytest

from keras_ssd.losses import SSDLoss
from keras_ssd.training import logs as logs_module
from keras_ssd.training.checkpoints import read_state, resume
from keras_ssd.training.fit import train_detector
from keras_ssd.training.logs import TrainingLog, plot_history, tensorboard_available

pytestmark = pytest.mark.backend

PARTS = ("conf_loss", "loc_loss")


def small_ssd(tiny_config, seed=0, l2=None):
    """A 32-px two-map `SSD` on a two-convolution backbone for the 4
    synthetic classes (88 priors)."""
    from keras_ssd.data import SYNTHETIC_CLASSES
    from keras_ssd.models import SSD

    config = tiny_config(num_classes=4, class_names=list(SYNTHETIC_CLASSES))
    keras.utils.set_random_seed(seed)
    reg = None if l2 is None else keras.regularizers.L2(l2)
    images = keras.Input((32, 32, 3))
    fine = keras.layers.Conv2D(8, 3, strides=8, padding="same", activation="relu",
                               kernel_regularizer=reg)(images)
    coarse = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(fine)
    backbone = keras.Model(images, {"fine": fine, "coarse": coarse}, name="two_maps")
    return SSD(config, backbone=backbone, name="small")


@pytest.fixture(scope="module")
def splits(synthetic_voc):
    """The synthetic set: 12 trainval images (3 steps of 4), 4 test images."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    return (VOCDataset(synthetic_voc, split="trainval", class_names=SYNTHETIC_CLASSES),
            VOCDataset(synthetic_voc, split="test", class_names=SYNTHETIC_CLASSES))


def _train(model, train_set, **kwargs):
    kwargs.setdefault("epochs", 2)
    return train_detector(model, train_set, batch_size=4, workers=0, verbose=0,
                          augment=False, **kwargs)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _event_tags(folder):
    """Scalar tags in a TensorBoard folder's event files."""
    import tensorflow as tf

    tags = set()
    for path in glob.glob(str(folder / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def _targets(batch=3, priors=40, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([-1, 0, 0, 0, 1, 2], size=(batch, priors)).astype("float32")
    labels[-1] = 0  # an image without positives
    y_true = np.concatenate([rng.normal(size=(batch, priors, 4)), labels[..., None]], -1)
    y_pred = rng.normal(size=(batch, priors, 4 + classes + 1))
    return y_true.astype("float32"), y_pred.astype("float32")


# ------------------------------------------------------------ the loss's parts
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_parts_of_a_batch_add_up_to_the_loss(alpha):
    y_true, y_pred = _targets()
    loss = SSDLoss(alpha=alpha)
    conf, loc = (float(v) for v in loss.parts(y_true, y_pred))
    assert conf + loc == pytest.approx(float(loss(y_true, y_pred)), rel=1e-6)
    # the localisation part carries alpha; the confidence part does not
    conf1, loc1 = (float(v) for v in SSDLoss(alpha=1.0).parts(y_true, y_pred))
    assert (conf, loc) == pytest.approx((conf1, alpha * loc1), rel=1e-6)
    assert conf > 0 and loc > 0


def test_parts_follow_a_batch_mean_reduction():
    y_true, y_pred = _targets()
    loss = SSDLoss(reduction="sum_over_batch_size")
    total, conf, loc = (float(v) for v in loss.loss_and_parts(y_true, y_pred))
    assert total == pytest.approx(float(loss(y_true, y_pred)), rel=1e-6)
    assert conf + loc == pytest.approx(total, rel=1e-6)
    summed = [float(v) for v in SSDLoss().parts(y_true, y_pred)]
    assert (conf, loc) == pytest.approx((summed[0] / 3, summed[1] / 3), rel=1e-6)
    with pytest.raises(ValueError, match="leaves one value per image"):
        SSDLoss(reduction="none").loss_and_parts(y_true, y_pred)


def test_the_model_computes_its_loss_and_parts_from_one_mining(tiny_config, monkeypatch):
    calls = []
    original = SSDLoss.components

    def counting(self, y_true, y_pred):
        calls.append(1)
        return original(self, y_true, y_pred)

    model = small_ssd(tiny_config)
    model.compile("sgd", loss=SSDLoss(alpha=0.5))
    assert [m.name for m in model.metrics][:3] == ["loss", "conf_loss", "loc_loss"]
    monkeypatch.setattr(SSDLoss, "components", counting)
    y_true, y_pred = _targets(priors=88)
    total = model.compute_loss(y=y_true, y_pred=y_pred)
    assert len(calls) == 1
    expected = float(SSDLoss(alpha=0.5)(y_true, y_pred))
    assert float(total) == pytest.approx(expected, rel=1e-6)
    conf, loc = (float(m.result()) for m in model.metrics[1:3])
    assert [conf, loc] == pytest.approx(
        [float(v) for v in SSDLoss(alpha=0.5).parts(y_true, y_pred)], rel=1e-6)
    # batches are weighted by their size, as Keras weighs its loss tracker
    other_true, other_pred = _targets(batch=1, priors=88, seed=3)
    model.compute_loss(y=other_true, y_pred=other_pred)
    other = float(SSDLoss(alpha=0.5).parts(other_true, other_pred)[0])
    weighted = (3 * conf + other) / 4
    assert float(model.metrics[1].result()) == pytest.approx(weighted, rel=1e-6)


def test_a_model_compiled_with_another_loss_reports_no_parts(tiny_config):
    model = small_ssd(tiny_config)
    model.compile("sgd", loss="mse")
    assert "conf_loss" not in [m.name for m in model.metrics]
    y_true, y_pred = _targets(priors=88)
    expected = float(keras.losses.MeanSquaredError()(y_pred[..., :5], y_pred[..., :5]))
    assert float(model.compute_loss(y=y_pred, y_pred=y_pred)) == expected == 0.0
    model.compile("sgd", loss=SSDLoss())  # compiled again: the parts come back
    assert [m.name for m in model.metrics][1:3] == ["conf_loss", "loc_loss"]


class _BatchLogs(keras.callbacks.Callback):
    """Records the logs of every training batch (what the progress bar shows)."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append({k: float(v) for k, v in (logs or {}).items()})


def test_fit_logs_the_parts_summing_to_the_loss_train_and_validation(tiny_config, splits):
    train_set, val_set = splits
    spy = _BatchLogs()
    history = _train(small_ssd(tiny_config), train_set, val_dataset=val_set,
                     callbacks=[spy]).history
    for prefix in ("", "val_"):
        total = np.array(history[prefix + "loss"])
        parts = (np.array(history[prefix + "conf_loss"])
                 + np.array(history[prefix + "loc_loss"]))
        np.testing.assert_allclose(parts, total, rtol=1e-5)
        assert len(total) == 2
    assert "reg_loss" not in history  # no weight penalty in this model
    # every batch's running means (the progress bar) add up too
    assert len(spy.batches) == 6
    for logs in spy.batches:
        assert logs["conf_loss"] + logs["loc_loss"] == pytest.approx(logs["loss"], rel=1e-5)


def test_a_weight_penalty_is_reported_as_reg_loss(tiny_config, splits):
    train_set, _ = splits
    model = small_ssd(tiny_config, l2=0.05)
    history = _train(model, train_set, epochs=1).history
    reg = history["reg_loss"][0]
    assert reg > 0
    assert (history["conf_loss"][0] + history["loc_loss"][0] + reg
            == pytest.approx(history["loss"][0], rel=1e-6))


def test_val_loss_can_be_left_out(tiny_config, splits):
    train_set, val_set = splits
    history = _train(small_ssd(tiny_config), train_set, epochs=1, val_dataset=val_set,
                     val_loss=False).history
    assert "val_mAP" in history and not any(k.startswith("val_") and k != "val_mAP"
                                            for k in history)


# ------------------------------------------------------------ the run folder
def test_a_run_folder_holds_the_csv_the_plot_and_tensorboard_logs(tiny_config, splits,
                                                                   tmp_path, caplog):
    train_set, val_set = splits
    run = tmp_path / "run"
    history = _train(small_ssd(tiny_config), train_set, val_dataset=val_set,
                     checkpoint_dir=str(run)).history
    rows = _rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for key in ("loss", "conf_loss", "loc_loss", "val_loss", "val_conf_loss",
                "val_loc_loss", "val_mAP", "learning_rate"):
        np.testing.assert_allclose([float(r[key]) for r in rows], history[key], rtol=1e-6)
    pytest.importorskip("matplotlib")
    from PIL import Image

    assert Image.open(run / "training.png").size[0] > 300
    available, reason = tensorboard_available()
    if available:
        assert _event_tags(run / "logs" / "train") >= {
            "epoch_loss", "epoch_conf_loss", "epoch_loc_loss", "epoch_learning_rate"}
        assert _event_tags(run / "logs" / "validation") >= {
            "epoch_loss", "epoch_conf_loss", "epoch_loc_loss", "epoch_mAP"}
    else:
        assert not (run / "logs").exists()
        assert "TensorBoard logs skipped" in caplog.text and reason in caplog.text


def test_without_a_checkpoint_dir_nothing_is_written_unless_asked(tiny_config, splits,
                                                                  tmp_path, monkeypatch):
    train_set, _ = splits
    monkeypatch.chdir(tmp_path)
    _train(small_ssd(tiny_config), train_set, epochs=1)
    assert os.listdir(tmp_path) == []
    _train(small_ssd(tiny_config), train_set, epochs=1, csv=str(tmp_path / "mine.csv"),
           plot=False, log_dir=False)
    assert os.listdir(tmp_path) == ["mine.csv"] and len(_rows(tmp_path / "mine.csv")) == 1


def test_resume_appends_and_the_csv_matches_state_json(tiny_config, splits, tmp_path):
    train_set, val_set = splits
    run = str(tmp_path / "run")
    _train(small_ssd(tiny_config), train_set, val_dataset=val_set, checkpoint_dir=run)
    first = _rows(os.path.join(run, "history.csv"))
    # a row the checkpoint never saw (killed after the log, before the save)
    with open(os.path.join(run, "history.csv"), "a", encoding="utf-8") as f:
        f.write("3" + "," * (len(first[0]) - 1) + "\n")
    model, initial_epoch = resume(run)
    assert initial_epoch == 2
    history = _train(model, train_set, epochs=3, val_dataset=val_set, checkpoint_dir=run,
                     initial_epoch=initial_epoch).history
    rows = _rows(os.path.join(run, "history.csv"))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[:2] == first  # earlier epochs kept as they were
    assert float(rows[2]["loss"]) == pytest.approx(history["loss"][0], rel=1e-6)
    state = read_state(run)
    for key in ("loss", "conf_loss", "loc_loss", "val_loss", "val_mAP"):
        np.testing.assert_allclose([float(r[key]) for r in rows], state["history"][key],
                                   rtol=1e-6)
    # the resumed model reports its parts too (its compiled SSDLoss)
    assert history["conf_loss"][0] + history["loc_loss"][0] == pytest.approx(
        history["loss"][0], rel=1e-5)


def test_a_time_limited_run_logs_all_of_its_fits(tiny_config, splits, tmp_path,
                                                 monkeypatch):
    """A time limit runs `fit` up to three times on the same callbacks (one
    epoch to time, a quarter of the plan, the rest): the logs hold every
    epoch once."""
    train_set, _ = splits
    run = tmp_path / "run"
    fits = []
    original = keras.Model.fit

    def counting_fit(self, *args, **kwargs):
        fits.append(kwargs.get("initial_epoch"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counting_fit)
    history = _train(small_ssd(tiny_config), train_set, epochs=6, time_limit=3600,
                     checkpoint_dir=str(run)).history
    assert len(fits) >= 2, fits  # 3 here: [0, 1, 3]
    rows = _rows(run / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], history["loss"], rtol=1e-6)
    if tensorboard_available()[0]:
        import tensorflow as tf

        steps = sorted(event.step
                       for path in glob.glob(str(run / "logs" / "train" / "events.*"))
                       for event in tf.compat.v1.train.summary_iterator(path)
                       for value in event.summary.value if value.tag == "epoch_loss")
        assert steps == [0, 1, 2, 3, 4, 5]


def test_a_model_compiled_elsewhere_reports_the_parts_and_keeps_its_optimizer(
        tiny_config, splits):
    train_set, _ = splits
    model = small_ssd(tiny_config)
    optimizer = keras.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, loss=SSDLoss())
    history = _train(model, train_set, epochs=1).history
    assert model.optimizer is optimizer and set(PARTS) <= set(history)


def test_the_log_history_survives_a_second_fit_on_the_same_callback(tmp_path):
    """train_detector's time limit runs `fit` twice with the same callbacks."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
    log = TrainingLog(tmp_path / "h.csv", None)
    first = model.fit(x, y, epochs=2, verbose=0, callbacks=[log]).history["loss"]
    second = model.fit(x, y, epochs=4, initial_epoch=2, verbose=0,
                       callbacks=[log]).history["loss"]
    rows = _rows(tmp_path / "h.csv")
    assert [float(r["loss"]) for r in rows] == pytest.approx(first + second)


def test_a_resume_without_a_csv_takes_the_earlier_epochs_from_state_json(tmp_path):
    (tmp_path / "state.json").write_text(
        '{"epoch": 2, "history": {"loss": [3.0, 2.0, 1.0], "val_mAP": [null, 0.5]}}')
    log = TrainingLog(tmp_path / "history.csv", None, state_dir=tmp_path)
    log.on_epoch_begin(2)
    log.on_epoch_end(2, {"loss": 1.5, "val_mAP": 0.6, "note": "text is left out"})
    rows = _rows(tmp_path / "history.csv")
    assert [(r["epoch"], r["loss"], r["val_mAP"]) for r in rows] == [
        ("1", "3.0", ""), ("2", "2.0", "0.5"), ("3", "1.5", "0.6")]
    assert "note" not in rows[0]


def test_late_columns_fill_earlier_rows_and_nan_is_written(tmp_path):
    log = TrainingLog(tmp_path / "h.csv", None)
    log.on_epoch_begin(0)
    log.on_epoch_end(0, {"loss": float("nan")})
    log.on_epoch_end(1, {"loss": 2.0, "val_mAP": 0.25})
    rows = _rows(tmp_path / "h.csv")
    assert [(r["loss"], r["val_mAP"]) for r in rows] == [("nan", ""), ("2.0", "0.25")]


def test_an_unwritable_log_place_warns_and_training_goes_on(tiny_config, splits, tmp_path,
                                                            monkeypatch):
    train_set, _ = splits
    blocker = tmp_path / "a_file"  # a file where a folder should be: even root cannot
    blocker.write_text("not a folder")
    monkeypatch.setattr(logs_module, "tensorboard_available", lambda: (True, None))
    with pytest.warns(RuntimeWarning) as caught:
        history = _train(small_ssd(tiny_config), train_set, log_dir=str(blocker / "tb"),
                         csv=str(blocker / "h.csv"), plot=str(blocker / "p.png")).history
    assert len(history["loss"]) == 2
    messages = [str(w.message) for w in caught]
    assert any("TensorBoard logs skipped" in m for m in messages)
    assert sum("h.csv" in m for m in messages) == 1  # one warning per log, not per epoch
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        assert sum("p.png" in m for m in messages) == 1
    assert blocker.read_text() == "not a folder"


def test_a_tensorboard_writer_that_fails_later_is_switched_off(tmp_path, monkeypatch):
    import warnings

    calls = []

    def broken(self, epoch, logs=None):
        calls.append(epoch)
        raise OSError("disk full")

    monkeypatch.setattr(keras.callbacks.TensorBoard, "on_epoch_end", broken)
    board = logs_module._GuardedTensorBoard(log_dir=str(tmp_path))
    with pytest.warns(RuntimeWarning, match="disk full"):
        board.on_epoch_end(0, {"loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        board.on_epoch_end(1, {"loss": 1.0})  # switched off: no call, no warning
    assert calls == [0]


def test_plot_history_draws_the_parts_and_skips_missing_entries(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = plot_history({"loss": [3.0, 2.0], "conf_loss": [2.0, 1.5],
                         "loc_loss": [1.0, 0.5], "val_loss": [None, 2.5],
                         "val_mAP": [None, float("nan")]},
                        str(tmp_path / "p.png"), title="t")
    assert Image.open(path).size == (700, 400)


MIRRORED_SCRIPT = '''
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from keras_ssd.config import SSDConfig
from keras_ssd.losses import SSDLoss
from keras_ssd.models import SSD
config = SSDConfig(num_classes=2, image_size=16, feature_map_sizes=[2], steps=[8],
                   min_sizes=[8], max_sizes=[12], aspect_ratios=[[2, 3]])  # 24 priors
rng = np.random.default_rng(0)
labels = rng.choice([0, 0, 0, 1, 2, -1], size=(8, 24)).astype("float32")
labels[:4, :20] = 0  # the replicas see different numbers of positives
y = np.concatenate([rng.normal(size=(8, 24, 4)), labels[..., None]], -1).astype("float32")
x = rng.uniform(0, 255, size=(8, 16, 16, 3)).astype("float32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    images = keras.Input((16, 16, 3))
    maps = keras.layers.Conv2D(4, 3, strides=8, padding="same")(images)
    model = SSD(config, backbone=keras.Model(images, {"map": maps}))
    model.compile("sgd", loss=SSDLoss())
history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False,
                    validation_data=(x, y)).history
json.dump({"replicas": strategy.num_replicas_in_sync,
           **{k: float(v[0]) for k, v in history.items()}}, open(sys.argv[1], "w"))
'''


def test_parts_sum_to_the_loss_under_a_mirrored_strategy(tmp_path):
    """Two replicas with different positive counts: the parts are tracked as
    Keras tracks the loss (scaled to the global batch)."""
    import json
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "out.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["replicas"] == 2
    for prefix in ("", "val_"):
        assert result[prefix + "conf_loss"] + result[prefix + "loc_loss"] == pytest.approx(
            result[prefix + "loss"], rel=1e-5)
