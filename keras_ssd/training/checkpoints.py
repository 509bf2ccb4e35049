"""Crash-safe training checkpoints: atomic writes, latest/best files, resume.

A checkpoint directory holds

* `latest.keras`: the model (with optimizer state) after the last saved
  epoch;
* `best.keras`: the model at the best value of the monitored metric;
* `state.json`: epoch count, best value, metric history.

Every file is written to a temporary file in the same directory, flushed to
disk and renamed over the old one (`os.replace` is atomic on POSIX and
Windows), so a kill at any moment leaves either the old or the new file,
never a truncated one.

`latest.keras` and `state.json` cannot be renamed together. The saver
therefore commits in two phases: `state.json` first records the *pending*
save (its epoch and the optimizer's iteration count), then `latest.keras` is
replaced, then `state.json` is committed. `resume` reads the iteration count
stored in `latest.keras` and picks whichever of the committed or pending
epoch it belongs to.
"""

import glob
import json
import math
import os
import shutil
import tempfile
import uuid
import warnings
import weakref

import keras
import numpy as np

from keras_ssd.saving import load_model

LATEST = "latest.keras"
BEST = "best.keras"
STATE = "state.json"
_TMP_TAG = ".tmp-"
STATE_FORMAT = 1


def _fsync_dir(directory):
    """Flush a directory entry (the rename) to disk where the OS allows it."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(path):
    directory, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    # keep the extension: keras.Model.save insists on ".keras"
    return os.path.join(directory, f".{stem}{_TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")


def _commit(tmp, path):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _write_failed(path, error):
    """The `OSError` of a failed atomic write, naming the file it was for (not
    its temporary) and saying that the file keeps its previous content."""
    reason = (error.strerror or str(error)) if isinstance(error, OSError) else str(error)
    failed = OSError(f"cannot write {path} ({reason}); it keeps its previous content")
    failed.errno = getattr(error, "errno", None)  # ENOSPC stays ENOSPC
    return failed


def _discard(tmp):
    try:
        os.remove(tmp)
    except OSError:
        pass


def atomic_save_model(model, path):
    """Save `model` to `path` (a `.keras` file) atomically.

    The model is written to a temporary file beside `path`, fsynced, and
    renamed over `path`. If saving fails (or is interrupted) the temporary
    file is removed and `path` keeps its previous content.

    Args:
        model: a `keras.Model`.
        path: destination ending in `.keras`.
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"atomic_save_model: {path} must end with '.keras'")
    _atomic_write(path, model.save)


def _atomic_write(path, write):
    """`write(tmp)` to a temporary file beside `path`, then fsync and rename
    it over `path`; on any failure the temporary file goes and `path` keeps
    its previous content (an `OSError`, such as a full disk, a quota or a
    file size limit, is re-raised naming `path`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = _tmp_path(path)
    try:
        write(tmp)
        _commit(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise _write_failed(path, e) from e
    except BaseException:
        _discard(tmp)
        raise


def atomic_write_json(obj, path):
    """Write `obj` as JSON to `path` atomically (temp file, fsync, rename)."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, allow_nan=True)

    _atomic_write(os.fspath(path), write)


def atomic_write_text(text, path):
    """Write the str `text` to `path` atomically (temp file, fsync, rename).

    UTF-8, written exactly as given (no newline translation, so a CSV's
    `\r\n` stays). If writing fails (or is interrupted) the temporary file
    is removed and `path` keeps its previous content.
    """

    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    _atomic_write(os.fspath(path), write)


def remove_stale_temporaries(directory):
    """Delete temporary files a killed save left in `directory`.

    Returns:
        list of removed paths.
    """
    removed = []
    for path in glob.glob(os.path.join(glob.escape(os.fspath(directory)), f".*{_TMP_TAG}*")):
        _discard(path)
        removed.append(path)
    return removed


#: The largest epoch or step count a state file may record; anything
#: beyond is a damaged or forged file, not a run.
MAX_EPOCHS = 10**7
MAX_ITERATIONS = 10**15


class CheckpointStateError(ValueError):
    """A run folder's `state.json` is unreadable or holds a field of the wrong
    type or an absurd value; the message names the file and the field. The
    run's files are left as they are."""


def _is_count(value, limit):
    return type(value) is int and 0 <= value <= limit


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_state(path, state):
    """Raise `CheckpointStateError` naming the first malformed field."""

    def bad(field, value, expected):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise CheckpointStateError(
            f"checkpoint state {path}: field {field!r} is {shown}, expected {expected}; "
            "the file is damaged or not written by keras-ssd (the run's files were left "
            "untouched)")

    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointStateError(
            f"checkpoint state {path} is not a keras-ssd checkpoint state")
    fmt = state.get("format", STATE_FORMAT)
    if fmt != STATE_FORMAT or type(fmt) is not int:
        bad("format", fmt, f"{STATE_FORMAT}")
    epochs = f"an integer 0..{MAX_EPOCHS}"
    steps = f"null or an integer 0..{MAX_ITERATIONS}"
    if not _is_count(state["epoch"], MAX_EPOCHS):
        bad("epoch", state["epoch"], epochs)
    iterations = state.get("iterations")
    if iterations is not None and not _is_count(iterations, MAX_ITERATIONS):
        bad("iterations", iterations, steps)
    pending = state.get("pending")
    if pending is not None:
        if not isinstance(pending, dict):
            bad("pending", pending, "null or an object with 'epoch' and 'iterations'")
        if not _is_count(pending.get("epoch"), MAX_EPOCHS):
            bad("pending.epoch", pending.get("epoch"), epochs)
        it = pending.get("iterations")
        if it is not None and not _is_count(it, MAX_ITERATIONS):
            bad("pending.iterations", it, steps)
    monitor = state.get("monitor")
    if monitor is not None and not isinstance(monitor, str):
        bad("monitor", monitor, "null or a metric name")
    if state.get("mode", "max") not in ("max", "min"):
        bad("mode", state.get("mode"), "'max' or 'min'")
    best = state.get("best")
    if best is not None and not _is_number(best):
        bad("best", best, "null or a number")
    best_epoch = state.get("best_epoch")
    if best_epoch is not None and not _is_count(best_epoch, MAX_EPOCHS):
        bad("best_epoch", best_epoch, f"null or {epochs}")
    history = state.get("history", {})
    if not isinstance(history, dict):
        bad("history", history, "an object of metric name -> list of numbers")
    for key, series in history.items():
        if (not isinstance(series, list) or len(series) > MAX_EPOCHS
                or not all(v is None or _is_number(v) for v in series)):
            bad(f"history.{key}", series, "a list of numbers (null for a missing value)")


def read_state(directory):
    """The parsed `state.json` of a checkpoint directory, or None if absent.

    Every field is checked (types, ranges) before anything uses it.

    Raises:
        CheckpointStateError (a `ValueError`): the file exists but is
            unreadable, or not a keras-ssd state file, or a field has the
            wrong type or an absurd value; the message names the file and
            the field.
    """
    path = os.path.join(os.fspath(directory), STATE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as e:  # ValueError: JSON, or an integer too long
        raise CheckpointStateError(f"checkpoint state {path} is unreadable: {e}") from None
    except RecursionError:
        raise CheckpointStateError(
            f"checkpoint state {path} is unreadable: nested too deeply") from None
    _check_state(path, state)
    return state


def find_latest_checkpoint(directory):
    """Path of `latest.keras` in `directory`, or None when there is none."""
    path = os.path.join(os.fspath(directory), LATEST)
    return path if os.path.isfile(path) else None


def _optimizer_iterations(model):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "iterations"):
        return None
    try:
        return int(keras.ops.convert_to_numpy(optimizer.iterations))
    except Exception:  # an optimizer that was never built
        return None


def resume(directory, custom_objects=None, compile=True, missing_ok=False):
    """Load the latest checkpoint of a run so that training can continue.

    Args:
        directory: the checkpoint directory a `TrainingCheckpoint` wrote.
        custom_objects: optional dict passed to `keras.saving.load_model`.
        compile: bool, restore the compiled state (loss, optimizer and its
            slots); needed to continue training.
        missing_ok: bool, when the directory has no checkpoint return
            `(None, 0)` instead of raising.

    Returns:
        `(model, initial_epoch)`: continue with
        `model.fit(..., initial_epoch=initial_epoch, epochs=total_epochs)`.

    Raises:
        FileNotFoundError: no `latest.keras` in `directory` (unless
            `missing_ok`).
        ValueError: the state file is unreadable or disagrees with the model
            file.
    """
    directory = os.fspath(directory)
    path = find_latest_checkpoint(directory)
    if path is None:
        if missing_ok:
            return None, 0
        raise FileNotFoundError(
            f"no checkpoint to resume from: {os.path.join(directory, LATEST)} does not exist"
        )
    try:
        model = load_model(path, custom_objects=custom_objects, compile=compile)
    except Exception as e:
        raise ValueError(f"cannot load checkpoint {path}: {e}") from e
    state = read_state(directory)
    if state is None:
        warnings.warn(
            f"{directory} has {LATEST} but no {STATE}; resuming at epoch 0",
            stacklevel=2,
        )
        return model, 0
    iterations = _optimizer_iterations(model)
    pending = state.get("pending")
    if iterations is None or iterations == state.get("iterations"):
        epoch = int(state["epoch"])
    elif pending and iterations == pending.get("iterations"):
        # killed after latest.keras was replaced, before state.json was
        # committed: the model file is the newer one.
        epoch = int(pending["epoch"])
    else:
        raise ValueError(
            f"checkpoint {path} holds optimizer step {iterations} but {STATE} "
            f"records step {state.get('iterations')} (epoch {state['epoch']}); the "
            "files belong to different runs"
        )
    return model, epoch


def _is_better(value, best, mode):
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best if mode == "max" else value < best


def _to_float(value):
    try:
        value = float(np.asarray(value))
    except (TypeError, ValueError):
        return None
    return value


class TrainingCheckpoint(keras.callbacks.Callback):
    """Write `latest.keras` every N epochs and `best.keras` on improvement.

    All files are written atomically (see the module docstring), so a kill
    during saving never leaves a broken checkpoint. A `state.json` beside
    them records the epoch, the best value and the history of every logged
    metric; `resume(directory)` uses it to continue the run.

    The callback reads the monitored value from `logs` in `on_epoch_end`, so
    a callback that adds it (e.g. `MeanAveragePrecision` adding `val_mAP`)
    must come before this one in the `callbacks` list. Epochs where the
    metric is missing (evaluation every N epochs) do not update the best.
    Epochs whose loss is not finite are never saved.

    Multi-worker training (`MultiWorkerMirroredStrategy`, JAX multi-process):
    only the chief (`keras_ssd.training.distribute.is_chief`) writes into
    `directory`. Every other worker saves the same files into a temporary
    folder of its own (`write_directory`), removed when `fit` ends (or the
    process exits), so that all workers run the same saving code and no two
    write one file.

    Args:
        directory: checkpoint directory (created if needed).
        save_every: int, save `latest.keras` every this many epochs (and
            always at the last epoch of `fit`).
        monitor: name of the metric selecting `best.keras` (None: no best).
        mode: `"max"` or `"min"`.
        save_best: bool, write `best.keras`.
        verbose: 0 or 1, print a line per save.

    Example:

    >>> callbacks = [MeanAveragePrecision(val_ds), TrainingCheckpoint("ckpt")]
    >>> model.fit(train, epochs=10, callbacks=callbacks)
    >>> model, initial_epoch = resume("ckpt")  # after a crash
    >>> model.fit(train, epochs=10, initial_epoch=initial_epoch, callbacks=callbacks)
    """

    def __init__(
        self,
        directory,
        save_every=1,
        monitor="val_mAP",
        mode="max",
        save_best=True,
        verbose=1,
    ):
        super().__init__()
        if isinstance(save_every, bool) or int(save_every) != save_every or save_every < 1:
            raise ValueError(
                f"TrainingCheckpoint: save_every must be a positive int, got {save_every!r}"
            )
        if mode not in ("max", "min"):
            raise ValueError(f"TrainingCheckpoint: mode must be 'max' or 'min', got {mode!r}")
        self.directory = os.fspath(directory)
        self.save_every = int(save_every)
        self.monitor = monitor
        self.mode = mode
        self.save_best = bool(save_best) and monitor is not None
        self.verbose = verbose
        self.state = None
        self._started = False
        self._scratch = None

    @property
    def write_directory(self):
        """Where this process writes: `directory`, or a non-chief worker's
        temporary folder during `fit`."""
        return self._scratch.name if self._scratch is not None else self.directory

    @property
    def latest_path(self):
        return os.path.join(self.write_directory, LATEST)

    @property
    def best_path(self):
        return os.path.join(self.write_directory, BEST)

    @property
    def state_path(self):
        return os.path.join(self.write_directory, STATE)

    def _fresh_state(self):
        return {
            "format": STATE_FORMAT,
            "epoch": 0,
            "iterations": None,
            "pending": None,
            "monitor": self.monitor,
            "mode": self.mode,
            "best": None,
            "best_epoch": None,
            "history": {},
        }

    def on_train_begin(self, logs=None):
        from keras_ssd.training.distribute import is_chief

        self._drop_scratch()
        if is_chief(getattr(self.model, "distribute_strategy", None)):
            os.makedirs(self.directory, exist_ok=True)
            remove_stale_temporaries(self.directory)
        else:
            self._scratch = _ScratchFolder()
        self._started = False

    def on_train_end(self, logs=None):
        self._drop_scratch()

    def _drop_scratch(self):
        if self._scratch is not None:
            self._scratch.remove()
            self._scratch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._started:
            return
        self._started = True
        state = read_state(self.directory) if epoch > 0 else None
        if state is None:
            state = self._fresh_state()
        else:
            # resumed run: forget anything recorded after the resume point
            state["history"] = {
                k: list(v)[:epoch] for k, v in state.get("history", {}).items()
            }
            state["pending"] = None
            if state.get("monitor") != self.monitor:
                state["best"], state["best_epoch"] = None, None
            state["monitor"], state["mode"] = self.monitor, self.mode
        self.state = state

    def _log(self, message):
        if self.verbose:
            from keras_ssd.training.lines import print_line

            print_line(message)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.state is None:
            self.on_epoch_begin(epoch)
        state = self.state
        for key, value in logs.items():
            value = _to_float(value)
            if value is None:
                continue
            if not math.isfinite(value):
                value = None  # keep state.json strict JSON
            series = state["history"].setdefault(key, [])
            series.extend([None] * (epoch - len(series)))
            series.append(value)
        loss = _to_float(logs.get("loss"))
        if loss is not None and not math.isfinite(loss):
            warnings.warn(
                f"TrainingCheckpoint: epoch {epoch + 1} has loss {loss}; not saving it",
                stacklevel=2,
            )
            return
        total = (self.params or {}).get("epochs")
        due = ((epoch + 1) % self.save_every == 0
               or (total is not None and epoch + 1 == total)
               # the run stops here (time limit, early stopping): keep its work
               or bool(getattr(self.model, "stop_training", False)))
        value = _to_float(logs.get(self.monitor)) if self.save_best else None
        improved = (
            value is not None
            and math.isfinite(value)
            and _is_better(value, state["best"], self.mode)
        )
        if not due and not improved:
            return
        iterations = _optimizer_iterations(self.model)
        if due:
            state["pending"] = {"epoch": epoch + 1, "iterations": iterations}
            atomic_write_json(state, self.state_path)
            atomic_save_model(self.model, self.latest_path)
            state["epoch"] = epoch + 1
            state["iterations"] = iterations
            state["pending"] = None
            self._log(f"Epoch {epoch + 1}: saved {self.latest_path}")
        if improved:
            atomic_save_model(self.model, self.best_path)
            previous = state["best"]
            state["best"], state["best_epoch"] = value, epoch + 1
            self._log(
                f"Epoch {epoch + 1}: {self.monitor} improved from "
                f"{'none' if previous is None else format(previous, '.5f')} to "
                f"{value:.5f}, saved {self.best_path}"
            )
        atomic_write_json(state, self.state_path)


class _ScratchFolder:
    """A temporary folder removed by `remove()`, at garbage collection or at
    interpreter exit, whichever comes first (not after SIGKILL)."""

    def __init__(self):
        self.name = tempfile.mkdtemp(prefix="keras-ssd-worker-")
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.name, True)

    def remove(self):
        self._finalizer()
