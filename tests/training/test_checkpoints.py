"""Atomic checkpoints, best/latest selection and exact resume."""

import json
import os

import keras
import numpy as np
import pytest

from keras_ssd.training.checkpoints import (
    BEST,
    LATEST,
    STATE,
    TrainingCheckpoint,
    atomic_save_model,
    atomic_write_json,
    find_latest_checkpoint,
    read_state,
    resume,
)
from keras_ssd.training.schedules import WarmupPiecewiseDecay

pytestmark = pytest.mark.backend


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 2))).astype("float32")
    return x, y


def _model(seed=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="tanh")(inputs)
    outputs = keras.layers.Dense(2)(h)
    model = keras.Model(inputs, outputs)
    # the schedule changes rate mid-run: resume must restore the step count
    schedule = WarmupPiecewiseDecay(0.05, boundaries=(10, 20), warmup_steps=4)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


class _Crash(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated crash")


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path):
    x, y = _data()
    fit = dict(batch_size=8, shuffle=False, verbose=0)

    straight = _model()
    straight.fit(x, y, epochs=4, callbacks=[TrainingCheckpoint(tmp_path / "a", monitor="loss", mode="min", verbose=0)], **fit)

    crashed = _model()
    ckpt = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(
            x, y, epochs=4,
            callbacks=[TrainingCheckpoint(ckpt, monitor="loss", mode="min", verbose=0), _Crash(2)],
            **fit,
        )
    del crashed
    model, initial_epoch = resume(ckpt)
    assert initial_epoch == 2
    assert int(model.optimizer.iterations) == 2 * 4
    history = model.fit(
        x, y, epochs=4, initial_epoch=initial_epoch,
        callbacks=[TrainingCheckpoint(ckpt, monitor="loss", mode="min", verbose=0)], **fit,
    )
    assert history.epoch == [2, 3]
    for a, b in zip(_weights(straight), _weights(model)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # the resumed run's state continues the first one
    state = read_state(ckpt)
    assert state["epoch"] == 4
    assert len(state["history"]["loss"]) == 4
    assert state["history"]["loss"] == pytest.approx(read_state(tmp_path / "a")["history"]["loss"], rel=1e-5)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="latest.keras does not exist"):
        resume(tmp_path)
    assert resume(tmp_path, missing_ok=True) == (None, 0)
    assert find_latest_checkpoint(tmp_path) is None


def test_best_follows_monitored_metric_and_latest_every_n(tmp_path):
    model = _model()
    cb = TrainingCheckpoint(tmp_path, save_every=2, monitor="val_mAP", mode="max", verbose=0)
    cb.set_model(model)
    cb.set_params({"epochs": 5})
    cb.on_train_begin()
    maps = [0.1, 0.3, 0.2, None, 0.25]
    weights_at = {}
    for epoch, m in enumerate(maps):
        cb.on_epoch_begin(epoch)
        model.layers[-1].bias.assign(np.full((2,), epoch, "float32"))
        weights_at[epoch + 1] = epoch
        logs = {"loss": 1.0 / (epoch + 1)}
        if m is not None:
            logs["val_mAP"] = m
        cb.on_epoch_end(epoch, logs)
    state = read_state(tmp_path)
    assert state["best"] == pytest.approx(0.3) and state["best_epoch"] == 2
    # latest at epochs 2, 4 and the last (5)
    assert state["epoch"] == 5
    assert state["history"]["val_mAP"] == [0.1, 0.3, 0.2, None, 0.25]
    best = keras.saving.load_model(tmp_path / BEST)
    np.testing.assert_array_equal(np.array(best.layers[-1].bias), [1, 1])
    latest = keras.saving.load_model(tmp_path / LATEST)
    np.testing.assert_array_equal(np.array(latest.layers[-1].bias), [4, 4])
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]


def test_mode_min_and_nonfinite_loss_never_saved(tmp_path):
    model = _model()
    cb = TrainingCheckpoint(tmp_path, monitor="val_loss", mode="min", verbose=0)
    cb.set_model(model)
    cb.set_params({"epochs": 3})
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    cb.on_epoch_end(0, {"loss": 1.0, "val_loss": 2.0})
    cb.on_epoch_end(1, {"loss": 0.5, "val_loss": 1.0})
    with pytest.warns(UserWarning, match="epoch 3 has loss nan"):
        cb.on_epoch_end(2, {"loss": float("nan"), "val_loss": 0.1})
    state = read_state(tmp_path)
    assert state["epoch"] == 2 and state["best"] == 1.0 and state["best_epoch"] == 2
    # strict JSON: the non-finite loss is stored as null
    with open(tmp_path / STATE) as f:
        assert "NaN" not in f.read()


def test_failed_save_keeps_previous_checkpoint_intact(tmp_path, monkeypatch):
    model = _model()
    path = tmp_path / LATEST
    atomic_save_model(model, path)
    before = open(path, "rb").read()
    old_weights = _weights(model)
    model.layers[-1].bias.assign(np.full((2,), 7.0, "float32"))

    real_save = keras.Model.save

    def save_then_die(self, filepath, *args, **kwargs):
        # write part of a file, then die as a kill would
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(keras.Model, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        atomic_save_model(model, path)
    monkeypatch.setattr(keras.Model, "save", real_save)

    assert open(path, "rb").read() == before
    restored = keras.saving.load_model(path)
    for a, b in zip(old_weights, _weights(restored)):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path) == [LATEST]


def test_failed_json_write_keeps_previous_state(tmp_path, monkeypatch):
    path = tmp_path / STATE
    atomic_write_json({"epoch": 1}, path)

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json({"epoch": 2, "bad": Unserialisable()}, path)
    assert json.load(open(path)) == {"epoch": 1}
    assert os.listdir(tmp_path) == [STATE]


def test_kill_between_model_and_state_commit_resumes_at_the_newer_epoch(tmp_path, monkeypatch):
    x, y = _data()
    model = _model()
    cb = TrainingCheckpoint(tmp_path, monitor=None, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, callbacks=[cb])
    # next epoch: latest.keras is replaced, then the process dies before the
    # final state.json commit
    import keras_ssd.training.checkpoints as ck

    real_write = ck.atomic_write_json
    calls = []

    def write_once_then_die(obj, p):
        calls.append(obj.get("pending"))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed before the state commit")
        real_write(obj, p)

    monkeypatch.setattr(ck, "atomic_write_json", write_once_then_die)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, initial_epoch=1, batch_size=8, shuffle=False, verbose=0, callbacks=[cb])
    monkeypatch.setattr(ck, "atomic_write_json", real_write)
    assert read_state(tmp_path)["epoch"] == 1  # state lags behind the model
    resumed, initial_epoch = resume(tmp_path)
    assert initial_epoch == 2
    assert int(resumed.optimizer.iterations) == 8


def test_stale_temporary_files_are_removed_at_train_begin(tmp_path):
    stale = tmp_path / ".latest.tmp-123-abcd.keras"
    stale.write_bytes(b"partial")
    other = tmp_path / "notes.txt"
    other.write_text("keep")
    cb = TrainingCheckpoint(tmp_path, verbose=0)
    cb.on_train_begin()
    assert not stale.exists() and other.exists()


def test_resume_rejects_state_from_another_run(tmp_path):
    x, y = _data()
    model = _model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[TrainingCheckpoint(tmp_path, monitor=None, verbose=0)])
    state = read_state(tmp_path)
    state["iterations"] = 999
    atomic_write_json(state, tmp_path / STATE)
    with pytest.raises(ValueError, match="different runs"):
        resume(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="save_every"):
        TrainingCheckpoint("x", save_every=0)
    with pytest.raises(ValueError, match="mode"):
        TrainingCheckpoint("x", mode="best")
    with pytest.raises(ValueError, match="must end with '.keras'"):
        atomic_save_model(_model(), "model.h5")


def test_atomic_write_text_writes_exactly_and_keeps_the_old_file_on_failure(tmp_path):
    from keras_ssd.training.checkpoints import atomic_write_text

    path = tmp_path / "sub" / "history.csv"
    atomic_write_text("epoch,loss\r\n1,0.5\r\n", path)
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n"
    with pytest.raises(TypeError):
        atomic_write_text(b"not text", path)
    assert path.read_bytes() == b"epoch,loss\r\n1,0.5\r\n"
    assert os.listdir(path.parent) == ["history.csv"]  # no temporary left behind
