"""Keras callbacks for SSD training: mAP validation, learning-rate logging,
non-finite loss stop, the loss parts, epoch timing, the time budget, and
(defined beside what they write, importable from here) crash-safe
checkpoints, the run's history log and the progress-line break.

Callback order matters: Keras calls the callbacks of `fit` in list order
and hands them the same `logs` dict, so a callback that *adds* a value
(`MeanAveragePrecision` adds `val_mAP`, `LearningRateLogger` adds
`learning_rate`) must come before the ones that read it
(`TrainingCheckpoint`, `keras.callbacks.ModelCheckpoint`, `EarlyStopping`,
`TensorBoard`, `CSVLogger`). Keras appends its own `History` and progress
bar after the user's callbacks, so they always see the added values.

>>> callbacks = [
...     MeanAveragePrecision(val_dataset, every=5),
...     LearningRateLogger(),
...     StopOnNaN(),
...     TrainingCheckpoint("checkpoints", monitor="val_mAP"),
...     keras.callbacks.TensorBoard("logs"),
... ]
"""

import math
import time

import keras
import numpy as np

from keras_ssd.training.checkpoints import TrainingCheckpoint, resume  # noqa: F401
from keras_ssd.training.lines import ProgressLineBreak, print_line  # noqa: F401
from keras_ssd.training.logs import TrainingLog  # noqa: F401


def _current_learning_rate(optimizer):
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))


class LearningRateLogger(keras.callbacks.Callback):
    """Put the optimizer's current learning rate into the epoch logs.

    Works with a constant rate and with any `LearningRateSchedule` (the rate
    is evaluated at the optimizer's current step), so History, CSVLogger and
    TensorBoard record it.

    Args:
        key: name of the log entry (default `"learning_rate"`, the name
            Keras's own `LearningRateScheduler` uses).
    """

    def __init__(self, key="learning_rate"):
        super().__init__()
        self.key = key

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.key] = _current_learning_rate(self.model.optimizer)


# The name the training brief uses.
LRLogger = LearningRateLogger


class StepLearningRate(keras.callbacks.Callback):
    """Drive a float learning rate from a schedule, one optimizer step at a time.

    The schedule-as-callback form of `WarmupPiecewiseDecay` (or any
    `LearningRateSchedule` / callable of the step): before each training
    batch the optimizer's learning rate is set to `schedule(iterations)`.
    Use it when the optimizer was built with a float learning rate (e.g.
    to keep a loaded model's optimizer and change the recipe). The optimizer
    step counter survives `resume`, so the schedule continues where it was.

    Args:
        schedule: callable mapping the optimizer step (int) to a rate.
    """

    def __init__(self, schedule):
        super().__init__()
        if not callable(schedule):
            raise ValueError(
                f"StepLearningRate: schedule must be callable, got {type(schedule).__name__}"
            )
        self.schedule = schedule

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        if isinstance(
            optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
        ):
            raise ValueError(
                "StepLearningRate: the optimizer already has a LearningRateSchedule; "
                "pass the schedule to the optimizer or use this callback, not both"
            )
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        optimizer.learning_rate = float(keras.ops.convert_to_numpy(self.schedule(step)))


class NonFiniteLossError(RuntimeError):
    """Raised by `StopOnNaN(raise_error=True)` when the loss is NaN or inf."""


class StopOnNaN(keras.callbacks.Callback):
    """Stop training when the loss becomes NaN or infinite, saying where.

    The message names the epoch (1-based, as Keras prints it), the batch and
    the value, and suggests the usual causes. By default training stops
    gracefully (`model.stop_training = True`, so `on_train_end` of the other
    callbacks still runs; `TrainingCheckpoint` never saves a non-finite
    epoch); with `raise_error=True` a `NonFiniteLossError` is raised instead.

    Args:
        monitor: log entry to check (default `"loss"`).
        raise_error: bool, raise `NonFiniteLossError` instead of stopping.

    Attributes:
        message: the message of the last stop, or None.
    """

    def __init__(self, monitor="loss", raise_error=False):
        super().__init__()
        self.monitor = monitor
        self.raise_error = raise_error
        self.message = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        value = float(np.asarray(value))
        if math.isfinite(value):
            return
        self.message = (
            f"{self.monitor} became {value} at epoch {self._epoch + 1}, batch {batch}; "
            "training stopped. Usual causes: learning rate too high (try a warm-up "
            "or a lower rate), boxes with zero width or height in the data, or "
            "images not preprocessed as the model expects."
        )
        if self.raise_error:
            raise NonFiniteLossError(self.message)
        print_line(self.message)
        self.model.stop_training = True


class MeanAveragePrecision(keras.callbacks.Callback):
    """Evaluate VOC mAP on a validation dataset every N epochs.

    Adds `logs[name]` (default `"val_mAP"`) in `on_epoch_end`, so put this
    callback before `TrainingCheckpoint`, `ModelCheckpoint`, `EarlyStopping`
    and `TensorBoard` in the `callbacks` list. On epochs it skips the entry
    is absent (Keras's checkpoint and early-stopping callbacks then warn and
    wait for the next evaluation); it always evaluates at the last epoch.

    Detection runs through `evaluate`, so through the model's own `predict`
    (its `prediction_decoder`), as `predict_image` does.

    Args:
        dataset: validation dataset (records interface: `len`, `ds[i]`,
            `load_image(i)`, `class_names`).
        every: int, evaluate every this many epochs.
        batch_size: int, inference batch size.
        confidence_threshold, iou_threshold, top_k: decoding options.
        use_07_metric: bool, 11-point (VOC2007) or area AP.
        name: log entry name.
        log_per_class: bool, also add `"{name}/{class}"` entries.
        max_images: optional int, evaluate only the first images (quick
            checks).
        verbose: 0 (silent), 1 (a summary line) or 2 (also a progress bar).

    Attributes:
        last_result: the dict `evaluate` returned last time.
    """

    def __init__(
        self,
        dataset,
        every=1,
        batch_size=8,
        confidence_threshold=0.01,
        iou_threshold=0.45,
        top_k=200,
        use_07_metric=True,
        name="val_mAP",
        log_per_class=False,
        max_images=None,
        verbose=1,
    ):
        super().__init__()
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"MeanAveragePrecision: every must be a positive int, got {every!r}")
        self.dataset = dataset
        self.every = int(every)
        self.batch_size = batch_size
        self.confidence_threshold = confidence_threshold
        self.iou_threshold = iou_threshold
        self.top_k = top_k
        self.use_07_metric = use_07_metric
        self.name = name
        self.log_per_class = log_per_class
        self.max_images = max_images
        self.verbose = verbose
        self.last_result = None

    def _due(self, epoch):
        total = (self.params or {}).get("epochs")
        return ((epoch + 1) % self.every == 0 or (total is not None and epoch + 1 == total)
                # the run stops here (time limit, early stopping): score what it leaves
                or bool(getattr(self.model, "stop_training", False)))

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        from keras_ssd.evaluation.evaluate import evaluate

        result = evaluate(
            self.model,
            self.dataset,
            confidence_threshold=self.confidence_threshold,
            iou_threshold=self.iou_threshold,
            top_k=self.top_k,
            batch_size=self.batch_size,
            use_07_metric=self.use_07_metric,
            max_images=self.max_images,
            verbose=1 if self.verbose >= 2 else 0,
        )
        self.last_result = result
        if logs is not None:
            logs[self.name] = result["mAP"]
            if self.log_per_class:
                for cls, ap in result["AP_by_name"].items():
                    logs[f"{self.name}/{cls}"] = ap
        if self.verbose:
            print_line(f"Epoch {epoch + 1}: {self.name} = {result['mAP']:.4f}")


class EarlyStoppingOnEvaluations(keras.callbacks.EarlyStopping):
    """`keras.callbacks.EarlyStopping` that counts only the epochs where the
    monitored value was computed (`MeanAveragePrecision` with `every` > 1
    logs `val_mAP` every few epochs), without a warning on the others.

    Args:
        monitor: the log entry (default `"val_mAP"`).
        patience: evaluations without improvement before training stops.
        mode: `"max"`, `"min"` or `"auto"` (max for names holding "mAP" or
            "AP", else min).
        **kwargs: passed to `keras.callbacks.EarlyStopping`.

    Example:

    >>> stop = EarlyStoppingOnEvaluations("val_mAP", patience=5)
    """

    def __init__(self, monitor="val_mAP", patience=5, mode="auto", **kwargs):
        if mode == "auto":
            mode = "max" if "AP" in monitor else "min"
        kwargs.setdefault("verbose", 1)
        super().__init__(monitor=monitor, patience=patience, mode=mode, **kwargs)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or value != value:
            return
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_line(f"Epoch {self.stopped_epoch + 1}: early stopping, {self.monitor} "
                       f"did not improve for {self.patience} evaluations (best "
                       f"{float(self.best):.4f})")


__all__ = [
    "EarlyStoppingOnEvaluations",
    "LearningRateLogger",
    "LRLogger",
    "MeanAveragePrecision",
    "NonFiniteLossError",
    "StepLearningRate",
    "StopOnNaN",
    "TrainingCheckpoint",
    "resume",
]


class LossPartsRemainder(keras.callbacks.Callback):
    """Adds `reg_loss = loss - conf_loss - loc_loss` (and its `val_` twin).

    For a model with a weight penalty (`weight_decay` of the model builders:
    L2 on the kernels), `fit`'s `loss` is the SSD loss plus that penalty, so
    the two parts of `SSDLoss` alone do not add up to it; this entry is the
    penalty, so that `conf_loss + loc_loss + reg_loss == loss` in every log.
    `train_detector` adds it when the model has regularisation losses.
    """

    def _fill(self, logs, prefix=""):
        if logs is None:
            return
        try:
            total = float(np.asarray(logs[prefix + "loss"]))
            conf = float(np.asarray(logs[prefix + "conf_loss"]))
            loc = float(np.asarray(logs[prefix + "loc_loss"]))
        except (KeyError, TypeError, ValueError):
            return
        logs[prefix + "reg_loss"] = total - conf - loc

    def on_train_batch_end(self, batch, logs=None):
        self._fill(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._fill(logs)
        self._fill(logs, "val_")


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (training time of the epoch, evaluation excluded)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._last = self._start

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = self._last - self._start


class TimeLimit(keras.callbacks.Callback):
    """Stops training once its training time reaches `seconds`.

    Only time inside epochs counts (from the start of an epoch to its last
    batch), so validation and checkpoint writing at the end of an epoch come
    on top of the budget. The check runs after every batch; a stopped epoch
    still ends normally, so `TrainingCheckpoint` saves it.

    It also records the time per step of the steps after the first
    (`step_seconds`: the first includes tracing), which `train_detector`
    uses to fit the run's schedule into the budget.

    Args:
        seconds: the budget, > 0.
        verbose: print a line when it stops the run.
    """

    def __init__(self, seconds, verbose=0):
        super().__init__()
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"TimeLimit: seconds must be positive, got {seconds!r}")
        self.seconds = seconds
        self.verbose = verbose
        self.spent = 0.0
        self.stopped_epoch = None
        self.epoch_times = []
        self._steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._epoch_spent = 0.0
        self._epoch_steps = 0
        self._steps = []

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if not self._epoch_steps:
            self._epoch_first_step = now
        self._epoch_steps += 1
        self._steps.append(now)
        self._epoch_spent = now - self._epoch_start
        if self.spent + self._epoch_spent >= self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.spent += self._epoch_spent
        self.epoch_times.append(self._epoch_spent)
        if self.model.stop_training and self.spent >= self.seconds:
            self.stopped_epoch = epoch
            if self.verbose:
                print_line(f"time limit of {self.seconds / 60:.1f} min reached in epoch "
                           f"{epoch + 1}")

    @property
    def step_seconds(self):
        """Median time of the recorded steps after the first, or `None`."""
        gaps = sorted(b - a for a, b in zip(self._steps, self._steps[1:]))
        return gaps[len(gaps) // 2] if gaps else None

    def epoch_seconds_estimate(self, steps_per_epoch):
        """Expected training time of a later epoch, from the last one timed.

        The last epoch's time with its first step (tracing, loader start-up)
        replaced by a median step, or `None` before any step.
        """
        step = self.step_seconds
        if step is None or not self._steps:
            return None
        first = self._epoch_first_step - self._epoch_start
        if self._epoch_steps >= steps_per_epoch:
            return max(step * steps_per_epoch, self._epoch_spent - first + step)
        return step * steps_per_epoch

    def start_phase(self):
        """Forget the epoch times so far (a new `fit` call begins)."""
        self.epoch_times = []

    def mean_epoch_seconds(self):
        """Mean training time of the epochs since `start_phase`, or `None`.

        The mean, not the median: the budget is spent on the sum of the
        epochs to come, and the mean times the count estimates that sum
        without bias. (A phase starts after the first epoch, so tracing is
        not in it.)
        """
        times = list(self.epoch_times)
        return sum(times) / len(times) if times else None

    @property
    def remaining(self):
        """Seconds of the budget not spent yet."""
        return max(0.0, self.seconds - self.spent)

    def plan(self, done_steps, max_steps, steps_per_epoch, replan):
        """The optimizer steps the run can reach in the budget left, or `None`.

        The first plan (`replan=0`) times a later epoch from the last one
        (`epoch_seconds_estimate`); the second from the mean of the epochs
        since `start_phase` (`mean_epoch_seconds`). The plan is in steps, not whole epochs:
        on a slow machine one epoch can be a fifth of a short budget, and
        rounding down to whole epochs left it unused. A 3% margin lets the
        fitted schedule end inside the budget instead of being cut.
        """
        per_epoch = (self.epoch_seconds_estimate(steps_per_epoch) if replan == 0
                     else self.mean_epoch_seconds())
        if not per_epoch:
            return None
        more = int(0.97 * self.remaining * steps_per_epoch / per_epoch)
        total = done_steps + more
        if max_steps is not None:
            total = min(max_steps, total)
        return total if total > done_steps else None

    def fit(self, model, data, initial_epoch, max_epochs, steps_per_epoch, planned,
            retime=None, **fit_kwargs):
        """`model.fit` within the budget (this callback must be in `fit_kwargs`'
        callbacks); returns `(history, steps the schedule was last fitted to)`.

        One epoch measures the speed and the run is planned from it, in
        optimizer steps; after a quarter of the planned epochs it is planned
        again from their mean time (the first epoch also fills the image
        cache and traces, and may meet a busier machine), then it goes to its
        end: whole epochs, then the steps that remain as a last, shorter
        epoch. `retime(total_steps)` refits the learning-rate schedule
        (`None`: keep it). `planned` is the epochs planned before the first.
        """
        history = model.fit(data, epochs=initial_epoch + 1, initial_epoch=initial_epoch,
                            **fit_kwargs)
        logs = {k: list(v) for k, v in history.history.items()}
        done = initial_epoch + len(logs.get("loss", []))
        planned_steps = planned * steps_per_epoch
        max_steps = None if max_epochs is None else max_epochs * steps_per_epoch

        def run(stop_at, steps=None):
            nonlocal done
            rest = model.fit(data, epochs=stop_at, initial_epoch=done,
                             steps_per_epoch=steps, **fit_kwargs)
            for key, values in rest.history.items():
                logs.setdefault(key, [None] * (done - initial_epoch))
                logs[key].extend(values)
            history.epoch = list(history.epoch) + list(rest.epoch)
            done += len(rest.history.get("loss", []))

        for replan in range(2):
            total = None if model.stop_training else self.plan(
                done * steps_per_epoch, max_steps, steps_per_epoch, replan)
            if total is None:
                break
            if retime is not None:
                retime(total)
            planned_steps = total
            self.start_phase()
            whole, part = divmod(total, steps_per_epoch)
            if replan == 0 and whole - done > 2:
                # a quarter of the plan, then plan again from its epochs
                run(done + max(2, (whole - done) // 4))
                continue
            if whole > done:
                run(whole)
            if part and not model.stop_training and done == whole:
                run(whole + 1, steps=part)
            break
        history.history = logs
        return history, planned_steps
