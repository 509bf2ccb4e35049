"""Time-limited training: the `TimeLimit` callback, `train_detector(time_limit=)`
(schedule refitted to the epochs that fit) and the checkpoint of a stopped run.

A fake clock replaces `time` in `keras_ssd.training.callbacks`: each training step
costs a set number of fake seconds, so the epoch counts are exact."""

import types

import keras
import numpy as np
import pytest

from keras_ssd.training import callbacks as callbacks_module
from keras_ssd.training.callbacks import TimeLimit
from keras_ssd.training.checkpoints import TrainingCheckpoint, read_state
from keras_ssd.training.fit import train_detector
from keras_ssd.training.schedules import WarmupCosineDecay, WarmupPiecewiseDecay


class FakeClock:
    """Stands in for the `time` module of callbacks.py: `perf_counter()` is `now`."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(callbacks_module, "time", clock)
    return clock


class Tick(keras.callbacks.Callback):
    """Advances the clock by `cost(epoch)` seconds at the start of every step."""

    def __init__(self, clock, cost):
        super().__init__()
        self.clock, self.cost, self.epoch = clock, cost, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.now += self.cost(self.epoch)


def _train(model, train_set, clock, cost, **kwargs):
    callbacks = [Tick(clock, cost)] + kwargs.pop("callbacks", [])
    return train_detector(model, train_set, batch_size=4, workers=0, verbose=0,
                          callbacks=callbacks, **kwargs)


# ------------------------------------------------------------ TimeLimit alone
def _drive(limit, clock, epochs, steps, cost=1.0, between=0.0):
    """Run `limit`'s hooks like fit would; stop as fit does. Returns epochs run."""
    model = types.SimpleNamespace(stop_training=False)
    limit.set_model(model)
    for epoch in range(epochs):
        limit.on_epoch_begin(epoch)
        for batch in range(steps):
            clock.now += cost(epoch, batch) if callable(cost) else cost
            limit.on_train_batch_end(batch)
            if model.stop_training:
                break
        limit.on_epoch_end(epoch)
        clock.now += between  # validation, checkpoint writing
        if model.stop_training:
            return epoch + 1
    return epochs


def test_time_limit_stops_in_the_step_that_spends_the_budget(clock):
    limit = TimeLimit(5)
    assert _drive(limit, clock, epochs=10, steps=3) == 2
    assert limit.model.stop_training
    assert limit.stopped_epoch == 1 and limit.spent == 5.0 and limit.remaining == 0.0


def test_time_between_epochs_does_not_count(clock):
    limit = TimeLimit(7)
    # 3 s of training per epoch, 100 s of validation after each
    assert _drive(limit, clock, epochs=10, steps=3, between=100.0) == 3
    assert limit.spent == 7.0 and limit.stopped_epoch == 2


def test_a_budget_that_outlasts_the_run_never_stops_it(clock, capsys):
    limit = TimeLimit(100, verbose=1)
    assert _drive(limit, clock, epochs=4, steps=3) == 4
    assert not limit.model.stop_training and limit.stopped_epoch is None
    assert limit.spent == 12.0 and limit.remaining == 88.0
    assert capsys.readouterr().out == ""


def test_stopping_prints_the_limit_and_the_epoch(clock, capsys):
    _drive(TimeLimit(120, verbose=1), clock, epochs=10, steps=3, cost=20.0)
    assert capsys.readouterr().out == "time limit of 2.0 min reached in epoch 2\n"


def test_epoch_estimate_leaves_out_the_slow_first_step(clock):
    limit = TimeLimit(1000)
    assert limit.step_seconds is None and limit.epoch_seconds_estimate(3) is None
    # first step 5 s (tracing), then 1 s each
    _drive(limit, clock, epochs=1, steps=4, cost=lambda e, b: 5.0 if b == 0 else 1.0)
    assert limit.step_seconds == 1.0
    assert limit.epoch_seconds_estimate(4) == 4.0
    # an epoch cut short: the estimate is the median step times the epoch
    assert limit.epoch_seconds_estimate(10) == 10.0

def test_second_plan_times_the_rest_from_the_mean_epoch_not_the_median(clock):
    # first epoch 10 s (tracing); then a phase of 4 epochs of 10 steps at 0.47,
    # 0.49, 0.60 and 0.60 s: 4.7 + 4.9 + 6.0 + 6.0 = 21.6 s, mean 5.4, while
    # the median of the four (6.0) would leave a tenth of the budget unused
    limit = TimeLimit(300)
    per_step = [1.0, 0.47, 0.49, 0.60, 0.60]
    _drive(limit, clock, 1, 10, cost=1.0)
    limit.start_phase()
    assert limit.mean_epoch_seconds() is None
    model = types.SimpleNamespace(stop_training=False)
    limit.set_model(model)
    for epoch in range(1, 5):
        limit.on_epoch_begin(epoch)
        for batch in range(10):
            clock.now += per_step[epoch]
            limit.on_train_batch_end(batch)
        limit.on_epoch_end(epoch)
    assert limit.mean_epoch_seconds() == pytest.approx(5.4)
    remaining = 300 - 10.0 - 21.6
    assert limit.remaining == pytest.approx(remaining)
    assert limit.plan(50, None, 10, replan=1) == 50 + int(0.97 * remaining * 10 / 5.4)



@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_time_limit_rejects_a_bad_budget(seconds):
    with pytest.raises(ValueError, match="TimeLimit: seconds must be positive"):
        TimeLimit(seconds)


# ------------------------------------------------------------ train_detector
def test_schedule_is_refitted_to_the_steps_that_fit(stand_in_ssd, train_set, clock):
    model = stand_in_ssd()
    # 1 s per step, 3 steps per epoch: after epoch 1, 27 s remain; 97% of
    # them hold 26 more steps: 8 whole epochs and a last one of 2 steps
    history = _train(model, train_set, clock, lambda epoch: 1.0, time_limit=30)
    assert len(history.history["loss"]) == 10 and history.epoch == list(range(10))
    assert history.history["epoch_seconds"] == [3.0] * 9 + [2.0]
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, WarmupCosineDecay)
    assert schedule.total_steps == 29 == int(model.optimizer.iterations)
    assert history.planned_steps == 29 and history.steps_per_epoch == 3
    assert history.recipe.name == "from-scratch-adamw" and history.recipe.epochs == 10
    # the run ends on the cosine's floor, not cut short
    assert history.history["learning_rate"][-1] == pytest.approx(3e-3 * 0.01)
    assert not model.stop_training
    assert history.time_limit.spent == 29.0


def test_a_budget_is_planned_in_steps_not_whole_epochs(clock):
    limit = TimeLimit(100.0)
    # one epoch of 10 steps at 4 s a step: 60 s remain, 97% of them hold 14
    # more steps, though not two more whole epochs
    _drive(limit, clock, epochs=1, steps=10, cost=4.0)
    assert limit.plan(10, None, 10, replan=0) == 10 + 14
    assert limit.plan(10, 20, 10, replan=0) == 20  # `epochs` caps it
    # a budget already spent plans nothing
    _drive(limit, clock, epochs=2, steps=10, cost=4.0)
    assert limit.plan(20, None, 10, replan=0) is None


def test_epochs_cap_a_time_limited_run(stand_in_ssd, train_set, clock):
    model = stand_in_ssd()
    history = _train(model, train_set, clock, lambda epoch: 1.0, time_limit=30, epochs=4)
    assert len(history.history["loss"]) == 4 and history.recipe.epochs == 4
    assert model.optimizer._learning_rate.total_steps == 12
    assert history.history["learning_rate"][-1] == pytest.approx(3e-5)


def test_step_schedule_boundaries_follow_the_refitted_run(stand_in_ssd, train_set, clock):
    model = stand_in_ssd()
    history = _train(model, train_set, clock, lambda epoch: 1.0, time_limit=30,
                     recipe="paper-sgd")
    assert len(history.history["loss"]) == 10 and history.recipe.name == "paper-sgd"
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, WarmupPiecewiseDecay)
    assert schedule.boundaries == [19, 24]  # 2/3 and 5/6 of the 29 steps planned
    # explicit decay epochs past the end of the fitted run are dropped
    model = stand_in_ssd()
    history = _train(model, train_set, clock, lambda epoch: 1.0, time_limit=30,
                     recipe="paper-sgd", epochs=5, lr_decay_epochs=[2, 20])
    assert len(history.history["loss"]) == 5
    assert model.optimizer._learning_rate.boundaries == [6]


def test_run_stops_at_the_limit_and_saves_that_epoch(stand_in_ssd, train_set, clock,
                                                     tmp_path):
    model = stand_in_ssd()
    # epoch 1 measures 1 s a step; later steps take 4 s, so the run planned
    # for 3 epochs spends its 10 s after 2 steps of epoch 2
    ckpt = TrainingCheckpoint(tmp_path, save_every=5, verbose=0)
    history = _train(model, train_set, clock, lambda epoch: 1.0 if epoch == 0 else 4.0,
                     time_limit=10, callbacks=[ckpt])
    assert model.stop_training
    assert len(history.history["loss"]) == 2 and history.epoch == [0, 1]
    assert history.history["epoch_seconds"] == [3.0, 8.0]
    assert history.time_limit.stopped_epoch == 1 and history.time_limit.spent == 11.0
    assert int(model.optimizer.iterations) == 3 + 2
    assert model.optimizer._learning_rate.total_steps == 3 * 3
    assert history.recipe.epochs == 3  # the length the schedule was fitted to
    # save_every=5 would skip epoch 2; the stop saves it
    state = read_state(tmp_path)
    assert state["epoch"] == 2 and state["iterations"] == 5
    assert (tmp_path / "latest.keras").is_file()


def test_a_budget_shorter_than_one_epoch_stops_in_it(stand_in_ssd, train_set, clock,
                                                     tmp_path):
    model = stand_in_ssd()
    history = _train(model, train_set, clock, lambda epoch: 1.0, time_limit=2,
                     checkpoint_dir=str(tmp_path))
    assert model.stop_training and len(history.history["loss"]) == 1
    assert int(model.optimizer.iterations) == 2
    assert read_state(tmp_path)["epoch"] == 1


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf")])
def test_train_detector_rejects_a_bad_time_limit(stand_in_ssd, train_set, seconds):
    model = stand_in_ssd()
    with pytest.raises(ValueError, match="time_limit must be a positive number of seconds"):
        train_detector(model, train_set, batch_size=4, workers=0, verbose=0,
                       time_limit=seconds)
    assert not model.compiled


# ------------------------------------------------------------ checkpoint
def test_checkpoint_saves_the_epoch_a_run_stops_at(tmp_path):
    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = np.ones((4, 2), "float32")
    ckpt = TrainingCheckpoint(tmp_path, save_every=10, verbose=0)
    history = model.fit(x, x[:, :1], batch_size=2, epochs=5, verbose=0,
                        callbacks=[StopAfter(), ckpt])
    assert history.epoch == [0, 1]
    state = read_state(tmp_path)
    assert state["epoch"] == 2 and state["iterations"] == 4
    assert (tmp_path / "latest.keras").is_file()


def test_a_slow_first_epoch_is_corrected_after_a_quarter_of_the_plan(clock, train_set,
                                                                       stand_in_ssd):
    # epoch 1: every step 3 s (a busy machine, the image cache filling); later 1 s.
    model = stand_in_ssd()
    history = _train(model, train_set, clock, lambda epoch: 3.0 if epoch == 0 else 1.0,
                     time_limit=99)
    # after epoch 1 (9 s) the plan is 1 + int(0.97 * 90 / 9) = 10 epochs, a quarter
    # of the 9 more is 2; those 2 run at 3 s an epoch, so the plan becomes
    # 3 + int(0.97 * 84 / 3) = 30 epochs, and the schedule ends there
    assert len(history.history["loss"]) == 30
    assert history.recipe.epochs == 30
    assert model.optimizer._learning_rate.total_steps == 30 * 3
    assert int(model.optimizer.iterations) == 30 * 3
    assert history.time_limit.spent == 9.0 + 29 * 3.0
