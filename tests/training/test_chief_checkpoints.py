"""Chief-aware checkpoints: a worker that is not the chief writes its
checkpoints into a temporary folder of its own, removed after `fit`."""

import os

import keras
import numpy as np
import pytest

from keras_ssd.training import distribute
from keras_ssd.training.checkpoints import LATEST, STATE, TrainingCheckpoint

pytestmark = pytest.mark.backend


def _fit(tmp_path, callbacks, epochs=2):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x = np.ones((8, 3), "float32")
    model.fit(x, x[:, :1], epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks)
    return model


class _Where(keras.callbacks.Callback):
    """Records where the checkpoint callback wrote during the run."""

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint, self.seen = checkpoint, []

    def on_epoch_end(self, epoch, logs=None):
        folder = self.checkpoint.write_directory
        self.seen.append((folder, sorted(os.listdir(folder))))


@pytest.fixture
def not_chief(monkeypatch):
    monkeypatch.setattr(distribute, "is_chief", lambda strategy=None: False)


def test_single_process_is_the_chief():
    assert distribute.is_chief(None) is True


def test_other_worker_writes_to_a_temporary_folder_it_removes(
        tmp_path, not_chief, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    checkpoint = TrainingCheckpoint(tmp_path / "shared", monitor=None, verbose=0)
    where = _Where(checkpoint)

    _fit(tmp_path, [checkpoint, where])  # Keras calls them in this order
    folders = {folder for folder, _ in where.seen}
    assert len(folders) == 1
    folder = folders.pop()
    assert os.path.dirname(folder) == str(tmp_path / "tmp")
    assert os.path.basename(folder).startswith("keras-ssd-worker-")
    assert all({LATEST, STATE} <= set(names) for _, names in where.seen)
    assert not os.path.exists(folder)  # removed at the end of fit
    assert not os.path.exists(tmp_path / "shared" / LATEST)
    assert checkpoint.write_directory == str(tmp_path / "shared")


def test_chief_writes_the_checkpoint_folder(tmp_path):
    checkpoint = TrainingCheckpoint(tmp_path / "shared", monitor=None, verbose=0)
    _fit(tmp_path, [checkpoint])
    assert {LATEST, STATE} <= set(os.listdir(tmp_path / "shared"))
    assert checkpoint.latest_path == str(tmp_path / "shared" / LATEST)
