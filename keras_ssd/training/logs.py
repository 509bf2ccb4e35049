"""What a training run leaves behind: TensorBoard logs, a CSV of the history
and a PNG of loss and mAP per epoch.

`train_detector` adds these to its callbacks when it has a run folder (its
`checkpoint_dir`):

    <checkpoint_dir>/logs/train/, logs/validation/   TensorBoard event files
    <checkpoint_dir>/history.csv                       one row per epoch
    <checkpoint_dir>/training.png                      loss and val mAP per epoch

All three survive a resume: TensorBoard writes new event files beside the
old ones (steps are epochs, so the curves continue), and `TrainingLog` keeps
the rows of the epochs before the resume point and drops the later ones,
exactly as `TrainingCheckpoint` trims `state.json`'s history, so the CSV and
`state.json` agree after a resume.

A log that cannot be written (read-only folder, full disk) gives one
warning and is switched off; training goes on.
"""

import csv
import io
import logging
import math
import os
import warnings

import keras
import numpy as np

from keras_ssd.training.checkpoints import (
    _commit,
    _discard,
    _tmp_path,
    atomic_write_text,
    read_state,
)

__all__ = [
    "TrainingLog",
    "make_tensorboard",
    "plot_history",
    "tensorboard_available",
]

logger = logging.getLogger("keras_ssd.training")

CSV_NAME = "history.csv"
PLOT_NAME = "training.png"
LOG_DIR_NAME = "logs"


def plot_history(history, path, title="SSD training"):
    """Write a PNG of the loss (and its parts) and validation mAP per epoch.

    Args:
        history: dict of per-epoch lists: `"loss"`, optionally `"val_loss"`,
            `"conf_loss"`, `"loc_loss"` and `"val_mAP"`; `None` entries (an
            epoch without evaluation) are left out.
        path: output PNG path.
        title: the plot's title.

    Returns:
        `path`, or `None` when matplotlib is not installed.

    Example:

    >>> plot_history({"loss": [3.0, 2.1], "val_mAP": [None, 0.4]}, "training.png")
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None

    def points(key):
        return [(e, float(v)) for e, v in enumerate(history.get(key, []) or [], start=1)
                if v is not None and math.isfinite(float(v))]

    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=100)
    styles = (("loss", "o-", "training loss"), ("val_loss", "o--", "validation loss"),
              ("conf_loss", ".:", "confidence part"),
              ("loc_loss", ".-.", "localisation part"))
    for key, style, label in styles:
        pts = points(key)
        if pts:
            ax_loss.plot([e for e, _ in pts], [v for _, v in pts], style, label=label,
                         color="tab:blue", alpha=1.0 if key == "loss" else 0.6)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("SSD loss", color="tab:blue")
    ax_loss.tick_params(axis="y", labelcolor="tab:blue")
    handles, labels = ax_loss.get_legend_handles_labels()
    maps = points("val_mAP")
    if maps:
        ax_map = ax_loss.twinx()
        ax_map.plot([e for e, _ in maps], [m for _, m in maps], "s-", color="tab:red",
                    label="val mAP@0.5 (VOC07)")
        ax_map.set_ylabel("mAP@0.5", color="tab:red")
        ax_map.set_ylim(0.0, 1.0)
        ax_map.tick_params(axis="y", labelcolor="tab:red")
        more_handles, more_labels = ax_map.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if len(labels) > 1:
        ax_loss.legend(handles, labels, loc="upper center", fontsize="small")
    ax_loss.set_title(title)
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def tensorboard_available():
    """Whether TensorBoard event files can be written here.

    Keras's `TensorBoard` callback writes through `tf.summary`, which needs
    TensorFlow (whatever the Keras backend) and the `tensorboard` package.

    Returns:
        `(True, None)`, or `(False, reason)`.
    """
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False, "the tensorboard package is not installed (pip install tensorboard)"
    try:
        import tensorflow as tf

        tf.summary.create_file_writer  # noqa: B018
    except (ImportError, AttributeError):
        return False, "TensorFlow's tf.summary is not available (pip install tensorflow)"
    return True, None


def _writable_dir(path):
    """Create `path` if needed; `None` when it is writable, else the reason."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        return str(e)
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable"
    return None


class _GuardedTensorBoard(keras.callbacks.TensorBoard):
    """Keras's `TensorBoard` that warns once and stops logging on an error."""

    def _guard(self, name, *args, **kwargs):
        if getattr(self, "_broken", False):
            return None
        try:
            return getattr(super(), name)(*args, **kwargs)
        except Exception as e:  # a writer that cannot write must not stop training
            self._broken = True
            warnings.warn(f"TensorBoard logs in {self.log_dir} switched off: {e}",
                          RuntimeWarning, stacklevel=2)
            return None

    def on_train_begin(self, logs=None):
        self._guard("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._guard("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._guard("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._guard("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._guard("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._guard("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._guard("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._guard("on_test_end", logs)


def make_tensorboard(log_dir, **kwargs):
    """A Keras `TensorBoard` callback writing into `log_dir`, or `None`.

    Epoch scalars: every log entry (loss, `conf_loss`, `loc_loss`,
    `learning_rate`, ...) under `log_dir/train`, the `val_` ones (loss,
    parts, `val_mAP` as `epoch_mAP`) under `log_dir/validation`. When
    TensorBoard is not installed, or `log_dir` cannot be created or written,
    it logs (missing package) or warns (folder) why and returns `None`; an
    error while writing later switches the callback off with a warning.

    Args:
        log_dir: the folder.
        **kwargs: other `keras.callbacks.TensorBoard` options (default:
            `write_graph=False`).

    Returns:
        The callback, or `None`.
    """
    ok, reason = tensorboard_available()
    if not ok:
        logger.warning("TensorBoard logs skipped: %s", reason)
        return None
    problem = _writable_dir(log_dir)
    if problem is not None:
        warnings.warn(f"TensorBoard logs skipped: cannot write to {log_dir}: {problem}",
                      RuntimeWarning, stacklevel=2)
        return None
    kwargs.setdefault("write_graph", False)
    return _GuardedTensorBoard(log_dir=os.fspath(log_dir), **kwargs)


def _number(value):
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return None
    return value


def _read_csv(path):
    """`{key: [value or None per epoch]}` from a `TrainingLog` CSV."""
    with open(path, "r", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    history = {}
    for i, row in enumerate(rows):
        for key, text in row.items():
            if key in (None, "epoch"):
                continue
            series = history.setdefault(key, [None] * i)
            series.extend([None] * (i - len(series)))
            series.append(None if text in ("", None) else float(text))
    for series in history.values():
        series.extend([None] * (len(rows) - len(series)))
    return history


class TrainingLog(keras.callbacks.Callback):
    """Keep the whole run's history in a CSV and a PNG, rewritten every epoch.

    The CSV has one row per epoch, `epoch` (1 = the first) then every
    numeric log entry in name order; an epoch without an entry (no
    evaluation that epoch) leaves its cell empty, a non-finite value is
    written as `nan`. Columns that appear late (`val_mAP` with
    `eval_every=2`) are added to all rows. Both files are written to a
    temporary file and renamed, so a kill never leaves half a file.

    On a resumed run (the first epoch is > 0) the history of the earlier
    epochs comes from the existing CSV, or from `state.json` in
    `state_dir` when there is no CSV; epochs at or after the resume point
    are dropped, as `TrainingCheckpoint` does with `state.json`. Several
    `fit` calls on one callback (the time-limited `train_detector`) extend
    the same history.

    A file that cannot be written gives one warning; that file is then
    skipped and training goes on.

    Args:
        csv_path: the CSV file, or `None` for none.
        plot_path: the PNG file, or `None` for none (also none without
            matplotlib).
        state_dir: a checkpoint folder to take the earlier history from on
            resume when there is no CSV yet.
        title: the plot's title.

    Attributes:
        history: `{key: [value or None per epoch]}` of the whole run.

    Example:

    >>> log = TrainingLog("run/history.csv", "run/training.png")
    >>> model.fit(data, epochs=10, callbacks=[LearningRateLogger(), log])
    """

    def __init__(self, csv_path=None, plot_path=None, state_dir=None, title="SSD training"):
        super().__init__()
        self.csv_path = None if csv_path is None else os.fspath(csv_path)
        self.plot_path = None if plot_path is None else os.fspath(plot_path)
        self.state_dir = None if state_dir is None else os.fspath(state_dir)
        self.title = title
        self.history = None
        self._broken = set()

    def _warn(self, what, path, error):
        if what in self._broken:
            return
        self._broken.add(what)
        # atomic_write_text's errors already name the file
        problem = str(error) if str(path) in str(error) else f"cannot write {path}: {error}"
        warnings.warn(f"TrainingLog: {problem}; {what} switched off, training goes on",
                      RuntimeWarning, stacklevel=3)

    def _earlier_history(self, epoch):
        history = None
        if self.csv_path is not None and os.path.isfile(self.csv_path):
            try:
                history = _read_csv(self.csv_path)
            except (OSError, ValueError, csv.Error) as e:
                warnings.warn(f"TrainingLog: cannot read {self.csv_path} ({e}); its "
                              "earlier rows are replaced", RuntimeWarning, stacklevel=3)
        if history is None and self.state_dir is not None:
            try:
                state = read_state(self.state_dir)
            except ValueError:
                state = None
            if state is not None:
                history = {k: list(v) for k, v in state.get("history", {}).items()}
        history = history or {}
        return {k: (list(v) + [None] * epoch)[:epoch] for k, v in history.items()}

    def on_epoch_begin(self, epoch, logs=None):
        if self.history is None:
            self.history = self._earlier_history(epoch) if epoch > 0 else {}

    def on_epoch_end(self, epoch, logs=None):
        if self.history is None:
            self.on_epoch_begin(epoch)
        history = self.history
        for series in history.values():  # a gap (time limit) or a new epoch
            series.extend([None] * (epoch + 1 - len(series)))
            del series[epoch + 1:]
        for key, value in sorted((logs or {}).items()):
            value = _number(value)
            if value is None:
                continue
            series = history.setdefault(key, [None] * (epoch + 1))
            series[epoch] = value
        if self.csv_path is not None and "CSV" not in self._broken:
            try:
                self._write(self.csv_path, self._csv_text())
            except OSError as e:
                self._warn("CSV", self.csv_path, e)
        if self.plot_path is not None and "plot" not in self._broken:
            try:
                self._write_plot()
            except (OSError, RuntimeError, ValueError) as e:
                self._warn("plot", self.plot_path, e)

    def _csv_text(self):
        keys = sorted(self.history)
        epochs = max((len(v) for v in self.history.values()), default=0)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["epoch"] + keys)
        for i in range(epochs):
            row = [i + 1]
            for key in keys:
                value = self.history[key][i]
                row.append("" if value is None else
                           ("nan" if not math.isfinite(value) else repr(value)))
            writer.writerow(row)
        return out.getvalue()

    @staticmethod
    def _write(path, text):
        atomic_write_text(text, path)

    def _write_plot(self):
        directory = os.path.dirname(os.path.abspath(self.plot_path))
        os.makedirs(directory, exist_ok=True)
        tmp = _tmp_path(self.plot_path)
        try:
            if plot_history(self.history, tmp, title=self.title) is None:
                self._broken.add("plot")  # no matplotlib: nothing to refresh
                logger.warning("%s skipped: matplotlib is not installed "
                               "(pip install matplotlib)", self.plot_path)
                return
            _commit(tmp, self.plot_path)
        except BaseException:
            _discard(tmp)
            raise
