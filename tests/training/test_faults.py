"""Faults during a run: a hostile or damaged `state.json`, a write that fails
(full disk, quota, file size limit) while a checkpoint, the state file or the
logs are written, Ctrl-C during an epoch, an image that becomes unreadable
mid-epoch. Each ends with one error naming the file (or a counted warning),
the last complete epoch's files intact, and `--resume` continuing."""

import json
import os
import resource
import shutil
import signal
import time

import keras
import numpy as np
import pytest
from test_checkpoints import _data, _model

from keras_ssd.training.checkpoints import (
    CheckpointStateError,
    TrainingCheckpoint,
    read_state,
    resume,
)
from keras_ssd.training.logs import TrainingLog

FIT = dict(batch_size=8, shuffle=False, verbose=0)


def _checkpoint(folder):
    return TrainingCheckpoint(folder, monitor="loss", mode="min", verbose=0)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder after 2 epochs of the small dense model."""
    folder = tmp_path_factory.mktemp("run")
    x, y = _data()
    _model().fit(x, y, epochs=2, callbacks=[_checkpoint(folder)], **FIT)
    return folder


def _files(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


# ------------------------------------------------------------------ state.json
@pytest.mark.parametrize(
    "field,value",
    [
        ("epoch", "1e999"),
        ("epoch", "[1]"),
        ("epoch", '"2"'),
        ("epoch", "-1"),
        ("epoch", "2.5"),
        ("epoch", "true"),
        ("epoch", "1" * 5000),
        ("iterations", '"8"'),
        ("pending", "[2, 8]"),
        ("pending", '{"epoch": 1e999, "iterations": 8}'),
        ("best", '"low"'),
        ("best_epoch", "-3"),
        ("mode", '"sideways"'),
        ("monitor", "7"),
        ("history", "[1, 2]"),
        ("history", '{"loss": 3}'),
        ("history", '{"loss": ["a"]}'),
        ("format", "2"),
    ],
)
def test_a_state_file_with_a_wrong_type_or_absurd_value_is_one_error_naming_the_field(
    run_folder, tmp_path, field, value
):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    text = (folder / "state.json").read_text()
    state = json.loads(text)
    marker = "__VALUE__"
    state[field] = marker
    (folder / "state.json").write_text(json.dumps(state).replace(f'"{marker}"', value))
    before = _files(folder)
    name = "epoch" if value == "1" * 5000 else field
    pattern = (
        r"state\.json is unreadable"
        if value == "1" * 5000
        else rf"state\.json: field '{name}(\.\w+)?' is "
    )
    for attempt in (lambda: read_state(folder), lambda: resume(folder)):
        with pytest.raises(CheckpointStateError, match=pattern):
            attempt()
    assert _files(folder) == before  # nothing touched


def test_a_resumed_fit_with_a_broken_state_file_stops_before_writing(run_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    state = json.loads((folder / "state.json").read_text())
    state["history"] = {"loss": "oops"}
    (folder / "state.json").write_text(json.dumps(state))
    before = _files(folder)
    x, y = _data()
    with pytest.raises(CheckpointStateError, match=r"field 'history\.loss'"):
        _model().fit(
            x, y, epochs=3, initial_epoch=2, callbacks=[_checkpoint(folder)], **FIT
        )
    assert _files(folder) == before


# ------------------------------------------------------------------ writes fail
class _DiskFull(keras.callbacks.Callback):
    """From the end of epoch `at` on, every file this process writes may hold
    at most `limit` bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it
    fails with EFBIG as a full disk fails with ENOSPC). Listed before the
    checkpoint callback, so its saves of that epoch already fail."""

    def __init__(self, at, limit):
        super().__init__()
        self.at, self.limit = at, limit

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, _HARD))


_SOFT, _HARD = resource.getrlimit(resource.RLIMIT_FSIZE)


@pytest.fixture
def restore_file_size_limit():
    handler = signal.getsignal(signal.SIGXFSZ)
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, (_SOFT, _HARD))
    signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("limit,failing", [(4096, "latest.keras"), (64, "state.json")])
def test_a_failing_write_keeps_the_previous_checkpoint_and_resume_continues(
    tmp_path, restore_file_size_limit, limit, failing
):
    x, y = _data()
    folder = tmp_path / "run"
    try:
        with pytest.raises(OSError) as info:
            _model().fit(
                x, y, epochs=3, callbacks=[_DiskFull(1, limit), _checkpoint(folder)], **FIT
            )
    finally:
        # Space is back before pytest writes anything (its report of this
        # test is written before the fixture's teardown runs).
        resource.setrlimit(resource.RLIMIT_FSIZE, (_SOFT, _HARD))
    message = str(info.value)
    assert f"cannot write {folder / failing} (File too large)" in message, message
    assert "keeps its previous content" in message
    assert not [n for n in os.listdir(folder) if ".tmp-" in n]
    model, epoch = resume(folder)
    assert epoch == 1 and int(model.optimizer.iterations) == 4
    model.fit(x, y, epochs=3, initial_epoch=epoch, callbacks=[_checkpoint(folder)], **FIT)
    assert (
        read_state(folder)["epoch"] == 3 and len(read_state(folder)["history"]["loss"]) == 3
    )


def test_a_log_file_that_cannot_be_written_warns_once_and_training_goes_on(
    tmp_path, restore_file_size_limit
):
    x, y = _data()
    log = TrainingLog(csv_path=tmp_path / "log.csv")
    with pytest.warns(
        RuntimeWarning,
        match=r"TrainingLog: cannot write \S*log\.csv \(File "
        r"too large\); it keeps its previous content; "
        r"CSV switched off",
    ):
        try:
            _model().fit(x, y, epochs=3, callbacks=[_DiskFull(0, 1), log], **FIT)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (_SOFT, _HARD))
    assert len(log.history["loss"]) == 3


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_mid_epoch_keeps_the_last_complete_epoch_and_resume_continues(
    synthetic_voc, tmp_path, monkeypatch, capsys
):
    """`keras-ssd train` in-process, a real SIGINT raised in the middle of the
    second epoch (after its second batch): one error line, status 130, the
    first epoch's files kept, `--resume` finishes the run. (In-process, so
    that no second TensorFlow start-up is paid; the signal is a real one.)"""
    from keras_ssd.cli import main

    def interrupt(self, batch, logs=None):
        if self._started and self.state["epoch"] == 1 and batch == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(TrainingCheckpoint, "on_train_batch_end", interrupt, raising=False)
    folder = tmp_path / "ckpt"
    args = [
        "train",
        "--data",
        synthetic_voc,
        "--split",
        "trainval",
        "--classes",
        os.path.join(synthetic_voc, "labels.txt"),
        "--model",
        "tiny",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--no-augment",
        "--lr",
        "0.001",
        "--checkpoint-dir",
        str(folder),
        "--seed",
        "0",
    ]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = time.monotonic()
        code = main(args + ["--epochs", "3"])
        took = time.monotonic() - started
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert code == 130
    assert [line for line in err.splitlines() if "error" in line] == [
        "keras-ssd train: error: interrupted"
    ], err
    state = read_state(folder)
    assert state["epoch"] == 1 and state["pending"] is None
    assert len(state["history"]["loss"]) == 1  # nothing of the interrupted epoch
    monkeypatch.undo()
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert "at epoch 1" in capsys.readouterr().out
    assert read_state(folder)["epoch"] == 2
    print(f"SIGINT run: {took:.1f} s in all")


# ----------------------------------------------------------- images mid-epoch
@pytest.fixture
def yolo_set(tmp_path):
    """A 3-image YOLO set, read (sizes checked) before any image goes bad."""
    from PIL import Image

    from keras_ssd.data import YOLODataset

    for name in ("a", "b", "c"):
        os.makedirs(tmp_path / "images", exist_ok=True)
        os.makedirs(tmp_path / "labels", exist_ok=True)
        Image.new("RGB", (40, 40), (200, 10, 10)).save(tmp_path / "images" / f"{name}.png")
        (tmp_path / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    return YOLODataset(str(tmp_path), class_names=["thing"], check_images="decode")


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_an_image_unreadable_mid_epoch_is_skipped_and_counted_or_stops_naming_it(
    yolo_set, tiny_config, caplog, damage
):
    from keras_ssd.data import DataError, SSDSequence

    config = tiny_config(num_classes=1, class_names=["thing"])
    bad = yolo_set[1]["image_path"]
    if damage == "delete":
        os.remove(bad)
    else:
        with open(bad, "r+b") as f:
            f.truncate(40)
    raising = SSDSequence(yolo_set, config, batch_size=3, shuffle=False)
    with pytest.raises(DataError, match=rf"{os.path.basename(bad)}.*record 1, batch 0"):
        raising[0]
    skipping = SSDSequence(yolo_set, config, batch_size=3, shuffle=False, on_error="skip")
    with caplog.at_level("WARNING", logger="keras_ssd.data"):
        images, _ = skipping[0]
    assert skipping.load_errors == 1
    assert [r for r in caplog.records if os.path.basename(bad) in r.getMessage()]
    # the bad record was replaced by the next one, never a blank or stale image
    np.testing.assert_array_equal(images[1], images[2])
    assert images[1].std() > 0 or images[1].mean() != 0
