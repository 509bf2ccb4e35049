"""One function to train an SSD on a detection dataset: `train_detector`.

It wires the pieces the way the paper trains: `SSDSequence` batches with
the SSD augmentation, `SSDLoss`, SGD with momentum under a warm-up +
piecewise-decay schedule (`WarmupPiecewiseDecay`), optional validation mAP
(`MeanAveragePrecision`), crash-safe checkpoints (`TrainingCheckpoint`), a
non-finite-loss stop and learning-rate logging. The `keras-ssd train`
command and the demo both call it; it is as useful from Python.
"""

import math
import os
import time

import keras

__all__ = ["make_optimizer", "train_detector", "decay_steps_from_epochs"]


def decay_steps_from_epochs(epochs, steps_per_epoch, lr_decay_epochs=None):
    """Optimizer steps at which the learning rate is cut by 10.

    Default: after 2/3 and 5/6 of the run, the paper's 80k and 100k of 120k
    iterations.
    """
    if lr_decay_epochs is None:
        lr_decay_epochs = (epochs * 2.0 / 3.0, epochs * 5.0 / 6.0)
    steps = sorted({int(round(float(e) * steps_per_epoch)) for e in lr_decay_epochs})
    return [s for s in steps if 0 < s < epochs * steps_per_epoch]


def make_optimizer(name="sgd", learning_rate=1e-3, momentum=0.9, total_steps=None,
                   warmup_steps=0, boundaries=None, warmup_factor=0.1):
    """SGD (momentum) or Adam under a linear warm-up then x0.1 step decay.

    Args:
        name: `"sgd"` (the paper) or `"adam"`.
        learning_rate: the rate after warm-up.
        momentum: SGD momentum (ignored by Adam).
        total_steps: length of the run in optimizer steps (for the default
            boundaries, 2/3 and 5/6 of it).
        warmup_steps: linear warm-up length.
        boundaries: optimizer steps where the rate is multiplied by 0.1.
        warmup_factor: fraction of the rate at step 0.

    Returns:
        A `keras.optimizers.Optimizer` whose rate is a `WarmupPiecewiseDecay`.
    """
    from keras_ssd.training.schedules import WarmupPiecewiseDecay

    if boundaries is None:
        boundaries = [] if not total_steps else [
            int(total_steps * 2 / 3), int(total_steps * 5 / 6)
        ]
    schedule = WarmupPiecewiseDecay(learning_rate, boundaries=boundaries,
                                    warmup_steps=int(warmup_steps),
                                    warmup_factor=warmup_factor)
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum)
    if name == "adam":
        return keras.optimizers.Adam(schedule)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


class _EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_seconds` (training time of the epoch, evaluation excluded)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


def train_detector(model, train_dataset, epochs, batch_size=32, learning_rate=1e-3,
                   optimizer="sgd", momentum=0.9, warmup_epochs=1.0, lr_decay_epochs=None,
                   val_dataset=None, eval_every=1, checkpoint_dir=None, initial_epoch=0,
                   augment=True, augmentation=None, workers=2, seed=0, callbacks=None,
                   jit_compile=None, verbose=1):
    """Train an SSD on a detection dataset.

    Args:
        model: an SSD model (`SSD300`, `SSDTiny`, ...). If it is already
            compiled with an optimizer (e.g. returned by
            `keras_ssd.training.checkpoints.resume`), that optimizer and its state are
            kept and `learning_rate`, `optimizer`, `momentum`, `warmup_epochs`
            and `lr_decay_epochs` are ignored.
        train_dataset: a detection dataset (`VOCDataset`, `COCODataset`, ...)
            with the model's classes.
        epochs: total number of epochs (including `initial_epoch` ones).
        batch_size: images per step.
        learning_rate: rate after warm-up; x0.1 at each `lr_decay_epochs`.
        optimizer: `"sgd"` (momentum, the paper) or `"adam"`.
        momentum: SGD momentum.
        warmup_epochs: linear warm-up from 0.1x the rate, in epochs (may be
            fractional).
        lr_decay_epochs: epochs after which the rate is multiplied by 0.1;
            default 2/3 and 5/6 of `epochs`.
        val_dataset: optional dataset for `val_mAP` (VOC07 11-point) every
            `eval_every` epochs and at the end.
        eval_every: int.
        checkpoint_dir: optional folder for `latest.keras`, `best.keras`
            (by `val_mAP` when there is a validation set) and `state.json`.
        initial_epoch: epoch to start from (resuming).
        augment: bool, the SSD data augmentation.
        augmentation: optional `SSDAugmentation` options dict.
        workers: data-loading threads (0 loads in the training thread).
        seed: int, for the shuffling and augmentation order.
        callbacks: extra Keras callbacks (they run after the built-in ones
            and see `val_mAP`, `learning_rate` and `epoch_seconds`).
        jit_compile: `None` for the measured default of
            `keras_ssd.accel.runtime` (no XLA on CPU).
        verbose: Keras verbosity (1: progress bar, 2: one line per epoch).

    Returns:
        The Keras `History`; `history.history` holds `loss`,
        `learning_rate`, `epoch_seconds` and, with a validation set,
        `val_mAP` per epoch.
    """
    from keras_ssd.training.callbacks import LearningRateLogger, MeanAveragePrecision, StopOnNaN
    from keras_ssd.training.checkpoints import TrainingCheckpoint
    from keras_ssd.data import SSDSequence
    from keras_ssd.losses import SSDLoss
    from keras_ssd.accel.runtime import apply_runtime_defaults, compile_defaults

    if int(epochs) < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if initial_epoch >= epochs:
        raise ValueError(
            f"nothing to do: the run is at epoch {initial_epoch} of {epochs}; raise --epochs"
        )
    loader = {"workers": int(workers), "use_multiprocessing": False} if workers else {}
    sequence = SSDSequence(train_dataset, model.config, batch_size=batch_size,
                           augment=augment, seed=seed, augmentation=augmentation, **loader)
    steps_per_epoch = len(sequence)
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        total = int(epochs) * steps_per_epoch
        opt = make_optimizer(
            optimizer, learning_rate, momentum, total_steps=total,
            warmup_steps=int(math.ceil(warmup_epochs * steps_per_epoch)),
            boundaries=decay_steps_from_epochs(epochs, steps_per_epoch, lr_decay_epochs),
        )
        model.compile(**compile_defaults(jit_compile, optimizer=opt, loss=SSDLoss()))
    else:
        # A resumed model keeps its optimizer; pin the fast jit setting for
        # this machine (the saved one may come from another device).
        apply_runtime_defaults(model, jit_compile)
    if initial_epoch:
        sequence.set_epoch(initial_epoch)

    cbs = [_EpochTimer()]
    if val_dataset is not None:
        cbs.append(MeanAveragePrecision(val_dataset, every=eval_every,
                                        batch_size=max(8, min(32, batch_size)),
                                        verbose=1 if verbose else 0))
    cbs += [LearningRateLogger(), StopOnNaN()]
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        cbs.append(TrainingCheckpoint(checkpoint_dir,
                                      monitor="val_mAP" if val_dataset is not None else None,
                                      verbose=1 if verbose else 0))
    cbs += list(callbacks or [])
    return model.fit(sequence, epochs=int(epochs), initial_epoch=int(initial_epoch),
                     callbacks=cbs, verbose=verbose, shuffle=False)
