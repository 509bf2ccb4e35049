"""LearningRateLogger, StepLearningRate, StopOnNaN, and callback ordering."""

import keras
import numpy as np
import pytest

from keras_ssd.training.callbacks import (
    LearningRateLogger,
    NonFiniteLossError,
    StepLearningRate,
    StopOnNaN,
)
from keras_ssd.training.schedules import WarmupPiecewiseDecay

pytestmark = pytest.mark.backend


def _model(lr):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    return model


X = np.ones((8, 2), "float32")
Y = np.ones((8, 1), "float32")


def test_learning_rate_logger_records_schedule_in_history():
    schedule = WarmupPiecewiseDecay(0.1, boundaries=(4, 8), decay=0.1)
    model = _model(schedule)
    # 4 steps per epoch: after epoch 1 step=4 -> 0.01; after epoch 2 -> 0.001
    history = model.fit(X, Y, batch_size=2, epochs=3, verbose=0, callbacks=[LearningRateLogger()])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.001, 0.001])


def test_step_learning_rate_drives_a_float_optimizer():
    schedule = WarmupPiecewiseDecay(0.1, boundaries=(4,), decay=0.5, warmup_steps=2, warmup_factor=0.5)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate))

    model = _model(1.0)
    model.fit(X, Y, batch_size=2, epochs=2, verbose=0, callbacks=[StepLearningRate(schedule), Spy()])
    expected = [float(schedule(i)) for i in range(8)]
    assert seen == pytest.approx(expected)
    assert expected[0] == pytest.approx(0.05) and expected[-1] == pytest.approx(0.05)


def test_step_learning_rate_refuses_double_schedule():
    model = _model(WarmupPiecewiseDecay(0.1))
    with pytest.raises(ValueError, match="not both"):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[StepLearningRate(WarmupPiecewiseDecay(0.1))])


class _NaNAt(keras.callbacks.Callback):
    """Poison the weights so the loss becomes NaN from a given batch on."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            w = self.model.layers[0].kernel
            w.assign(np.full(w.shape, np.nan, "float32"))


def test_stop_on_nan_stops_and_names_epoch_and_batch(capsys):
    model = _model(0.01)
    stopper = StopOnNaN()
    history = model.fit(
        X, Y, batch_size=2, epochs=5, verbose=0, callbacks=[_NaNAt(1, 2), stopper]
    )
    assert len(history.epoch) == 2  # stopped during the second epoch
    assert "epoch 2, batch 2" in stopper.message
    assert "loss became nan" in stopper.message
    assert "epoch 2, batch 2" in capsys.readouterr().out


def test_stop_on_nan_can_raise():
    model = _model(0.01)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 0"):
        model.fit(X, Y, batch_size=2, epochs=2, verbose=0, callbacks=[_NaNAt(0, 0), StopOnNaN(raise_error=True)])


def test_finite_loss_does_not_stop():
    model = _model(0.01)
    stopper = StopOnNaN()
    history = model.fit(X, Y, batch_size=2, epochs=3, verbose=0, callbacks=[stopper])
    assert len(history.epoch) == 3 and stopper.message is None


def test_values_added_by_earlier_callbacks_reach_later_ones_and_history():
    class Adds(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_mAP"] = 0.1 * (epoch + 1)

    seen = []

    class Reads(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs.get("val_mAP"))

    model = _model(0.01)
    stop = keras.callbacks.EarlyStopping(monitor="val_mAP", mode="max", patience=0)
    history = model.fit(X, Y, epochs=2, verbose=0, callbacks=[Adds(), Reads(), stop])
    assert seen == pytest.approx([0.1, 0.2])
    assert history.history["val_mAP"] == pytest.approx([0.1, 0.2])


# ------------------------------------------------ MeanAveragePrecision
def test_mean_average_precision_feeds_val_map_to_checkpoint_and_history(tmp_path,
                                                                     toy_dataset):
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.training.callbacks import MeanAveragePrecision, TrainingCheckpoint
    from keras_ssd.training.checkpoints import read_state
    from keras_ssd.targets import TargetEncoder
    from keras_ssd.evaluation import evaluate
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSDTiny

    ds = toy_dataset(sizes=[(160, 160), (120, 90), (90, 120)])
    keras.utils.set_random_seed(0)
    model = SSDTiny(num_classes=2)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss())
    encoder = TargetEncoder(generate_anchors(model.config))
    x = np.stack(
        [np.asarray(ds.load_image(i)[:1, :1]).repeat(160, 0).repeat(160, 1) for i in range(3)]
    ).astype("float32")
    y = np.stack(
        [
            encoder(r["boxes"] / np.array([r["width"], r["height"]] * 2, "float32"), r["labels"])
            for r in ds.records
        ]
    )
    evaluated = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            evaluated.append("val_mAP" in logs)

    m = MeanAveragePrecision(ds, every=2, batch_size=2, top_k=20, verbose=0)
    ckpt = TrainingCheckpoint(tmp_path, monitor="val_mAP", verbose=0)
    history = model.fit(x, y, batch_size=3, epochs=3, verbose=0, callbacks=[m, Count(), ckpt])
    # evaluated at epoch 2 (every 2) and at the last epoch (3)
    assert evaluated == [False, True, True]
    assert len(history.history["val_mAP"]) == 2
    final = evaluate(model, ds, batch_size=2, top_k=20, verbose=0)
    assert history.history["val_mAP"][-1] == pytest.approx(final["mAP"])
    assert m.last_result["mAP"] == pytest.approx(final["mAP"])
    state = read_state(tmp_path)
    assert state["best"] == pytest.approx(max(history.history["val_mAP"]))
    assert (tmp_path / "best.keras").exists()
    # the model's own decoder served (0.01 / 0.45 / 200 covers top_k=20): kept
    assert model.prediction_decoder.top_k == 200


def test_mean_average_precision_rejects_bad_every():
    from keras_ssd.training.callbacks import MeanAveragePrecision

    with pytest.raises(ValueError, match="every"):
        MeanAveragePrecision([], every=0)


def test_mean_average_precision_scores_the_epoch_a_run_stops_in(toy_dataset):
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSDTiny
    from keras_ssd.targets import TargetEncoder
    from keras_ssd.training.callbacks import MeanAveragePrecision

    ds = toy_dataset(sizes=[(160, 160), (120, 90)])
    keras.utils.set_random_seed(0)
    model = SSDTiny(num_classes=2)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=SSDLoss())
    encoder = TargetEncoder(generate_anchors(model.config))
    x = np.zeros((2, 160, 160, 3), "float32")
    y = np.stack([encoder(r["boxes"] / np.array([r["width"], r["height"]] * 2, "float32"),
                          r["labels"]) for r in ds.records])

    class StopInSecondEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self._epoch == 1:
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

    evaluated = []

    class Seen(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            evaluated.append("val_mAP" in logs)

    m = MeanAveragePrecision(ds, every=10, batch_size=2, top_k=20, verbose=0)
    model.fit(x, y, batch_size=2, epochs=6, verbose=0,
              callbacks=[StopInSecondEpoch(), m, Seen()])
    # every=10 would score only epoch 6; the run stops in epoch 2 and that one is scored
    assert evaluated == [False, True]
