"""The in-process pieces of multi-worker training: each process's share of a
global batch, and the Keras patch leaving single-process training alone."""

import keras
import numpy as np
import pytest

from keras_ssd.training import distribute

pytestmark = pytest.mark.backend


class _Batches(keras.utils.PyDataset):
    def __init__(self):
        super().__init__()
        self.epoch = 0

    def __len__(self):
        return 3

    def __getitem__(self, i):
        rows = np.arange(4) + 10 * i + 100 * self.epoch
        return rows.astype("float32")[:, None], {"y": rows}

    def on_epoch_end(self):
        self.epoch += 1

    def set_epoch(self, epoch):
        self.epoch = epoch


def test_process_share_keeps_this_process_rows_in_order():
    shares = [distribute._ProcessShare(_Batches(), p, 2) for p in range(2)]
    x0, y0 = shares[0][1]
    x1, y1 = shares[1][1]
    assert x0[:, 0].tolist() == [10, 11] and x1[:, 0].tolist() == [12, 13]
    assert y1["y"].tolist() == [12, 13]
    assert len(shares[0]) == 3
    shares[1].on_epoch_end()
    assert shares[1][0][0][:, 0].tolist() == [102, 103]
    shares[1].set_epoch(5)
    assert shares[1][2][0][:, 0].tolist() == [522, 523]


def test_process_share_refuses_an_uneven_split():
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        distribute._ProcessShare(_Batches(), 0, 3)[0]


def test_process_share_is_a_no_op_in_one_process():
    batches = _Batches()
    assert distribute.process_share(batches) is batches


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="a patch of the TensorFlow trainer")
def test_keras_patch_leaves_one_process_training_unchanged():
    def run():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        model.compile(optimizer="sgd", loss="mse")
        x = np.arange(24, dtype="float32").reshape(8, 3) / 24
        history = model.fit(x, x[:, :2], epochs=2, batch_size=4, verbose=0, shuffle=False)
        return history.history["loss"], [w.copy() for w in model.get_weights()]

    before = run()
    assert distribute.patch_keras_multi_worker() is True
    assert distribute.patch_keras_multi_worker() is True  # once
    after = run()
    assert before[0] == after[0]
    assert all(np.array_equal(a, b) for a, b in zip(before[1], after[1]))
    assert not distribute._is_multi_worker(distribute.get_strategy("none"))
