"""One function to train an SSD on a detection dataset: `train_detector`.

It wires the pieces together: `SSDSequence` batches with the SSD
augmentation, `SSDLoss`, the optimizer and learning-rate schedule of a
training *recipe* (`keras_ssd.presets.Recipe`), optional validation mAP
(`MeanAveragePrecision`), crash-safe checkpoints (`TrainingCheckpoint`), a
non-finite-loss stop, learning-rate logging and an optional wall-clock
budget (`time_limit`). The `keras-ssd train` command and the demo both call
it; it is as useful from Python.

Every option left at `None` comes from the recipe of the model's variant
(`keras_ssd.presets.recipe_for`): the SSD paper's SGD recipe for SSD300 and
SSD512 when their VGG16 starts from ImageNet weights, and AdamW with warm-up
and cosine decay for networks that start from random weights (the tiny
model, or any backbone built with `backbone_weights=None`). docs/training.md
gives the measurements behind both.
"""

import logging
import math
import os
import warnings

import keras

from keras_ssd import presets
from keras_ssd.training.callbacks import TimeLimit

__all__ = [
    "decay_steps_from_epochs",
    "make_optimizer",
    "resolve_recipe",
    "train_detector",
]

OPTIMIZERS = presets.OPTIMIZERS
SCHEDULES = presets.SCHEDULES

# Variables AdamW leaves undecayed: biases and batch-norm scales/offsets
# (decaying them only fights the normalisation).
_NO_DECAY = ("bias", "gamma", "beta", "moving_mean", "moving_variance")


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
                   warmup_steps=0, boundaries=None, warmup_factor=0.1,
                   schedule="step", weight_decay=0.0, final_lr_factor=0.0):
    """SGD (momentum), Adam or AdamW under a warm-up + decay schedule.

    Args:
        name: `"sgd"` (the paper), `"adam"` or `"adamw"`.
        learning_rate: the rate after warm-up.
        momentum: SGD momentum (ignored by Adam and AdamW).
        total_steps: length of the run in optimizer steps (the cosine's end,
            and the default step boundaries at 2/3 and 5/6 of it).
        warmup_steps: linear warm-up length.
        boundaries: `"step"` schedule: optimizer steps where the rate is
            multiplied by 0.1.
        warmup_factor: fraction of the rate at step 0.
        schedule: `"step"` (`WarmupPiecewiseDecay`) or `"cosine"`
            (`WarmupCosineDecay`, which needs `total_steps`).
        weight_decay: the optimizer's decoupled weight decay (AdamW's
            defining feature; also accepted by SGD and Adam, where Keras
            applies it the same decoupled way). Biases and batch-norm
            variables are excluded. The paper's coupled L2 penalty is a
            model option instead (`weight_decay=` of the model builders).
        final_lr_factor: `"cosine"`: the rate at the end, as a fraction.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: an unknown optimizer or schedule, or a cosine schedule
            without `total_steps`.
    """
    from keras_ssd.schedules import WarmupCosineDecay, WarmupPiecewiseDecay

    name = str(name).lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    weight_decay = float(weight_decay or 0.0)
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if schedule == "cosine":
        if not total_steps:
            raise ValueError("a cosine schedule needs total_steps (the length of the run)")
        lr = WarmupCosineDecay(learning_rate, total_steps=max(int(total_steps), int(warmup_steps), 1),
                               warmup_steps=int(warmup_steps), warmup_factor=warmup_factor,
                               final_factor=final_lr_factor)
    else:
        if boundaries is None:
            boundaries = [] if not total_steps else [
                int(total_steps * 2 / 3), int(total_steps * 5 / 6)
            ]
        lr = WarmupPiecewiseDecay(learning_rate, boundaries=boundaries,
                                  warmup_steps=int(warmup_steps),
                                  warmup_factor=warmup_factor)
    decay = weight_decay or None
    if name == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=momentum, weight_decay=decay)
    elif name == "adam":
        opt = keras.optimizers.Adam(lr, weight_decay=decay)
    else:
        opt = keras.optimizers.AdamW(lr, weight_decay=weight_decay)
    _exclude_from_decay(opt)
    return opt


def _exclude_from_decay(optimizer):
    """Keep biases and batch-norm variables out of `optimizer`'s weight decay.

    Keras does not save this choice with the optimizer, so one restored from
    a checkpoint (already built, which `exclude_from_weight_decay` is meant
    to refuse) needs it again. An exclusion set by the caller is kept.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # loss scaling
    if not getattr(optimizer, "weight_decay", None):
        return
    if (getattr(optimizer, "_exclude_from_weight_decay_pattern", None) is not None
            or getattr(optimizer, "_exclude_from_weight_decay", None)):
        return
    built = optimizer.built
    optimizer.built = False
    try:
        optimizer.exclude_from_weight_decay(var_names=list(_NO_DECAY))
    finally:
        optimizer.built = built


def resolve_recipe(model=None, recipe=None, **overrides):
    """The recipe a run uses: a base recipe with the caller's choices on top.

    Args:
        model: a keras-ssd model; its variant (`model.architecture`) and
            whether its backbone started from pretrained weights pick the
            base recipe (`keras_ssd.presets.recipe_for`). Other models get
            the from-scratch recipe.
        recipe: a `Recipe` or the name of one (`keras_ssd.presets.RECIPES`)
            to use as the base instead.
        **overrides: `Recipe` fields; `None` values are ignored.

    Returns:
        A `keras_ssd.presets.Recipe` (from `keras_ssd.presets.resolve_recipe`,
        the rule `keras-ssd train` uses too).
    """
    return presets.resolve_recipe(
        recipe, variant=getattr(model, "architecture", None),
        pretrained=getattr(model, "pretrained_backbone", None),
        pretrained_preset=getattr(model, "pretrained_preset", None), **overrides)


def _retime_schedule(model, epochs, steps_per_epoch, lr_decay_epochs):
    """Stretch or shrink the schedule of `model`'s optimizer to `epochs` epochs
    (a float: the last one may be partial)."""
    from keras_ssd.schedules import WarmupCosineDecay, WarmupPiecewiseDecay

    model.train_function = None  # trace again with the new schedule
    schedule = getattr(model.optimizer, "_learning_rate", None)
    total = int(round(epochs * steps_per_epoch))
    if isinstance(schedule, WarmupCosineDecay):
        schedule.total_steps = max(total, schedule.warmup_steps, 1)
    elif isinstance(schedule, WarmupPiecewiseDecay):
        schedule.boundaries = decay_steps_from_epochs(epochs, steps_per_epoch, lr_decay_epochs)


def _run_logs(checkpoint_dir, log_dir, csv, plot):
    """The TensorBoard and `TrainingLog` callbacks of a run folder."""
    from keras_ssd.training.logs import (CSV_NAME, LOG_DIR_NAME, PLOT_NAME, TrainingLog,
                                         make_tensorboard)

    def where(option, name):
        if option is False or option is None:
            return None
        if option is True:
            return None if checkpoint_dir is None else os.path.join(checkpoint_dir, name)
        return os.fspath(option)

    cbs = []
    tb_dir = where(True if log_dir is None else log_dir, LOG_DIR_NAME)
    if tb_dir is not None:
        tensorboard = make_tensorboard(tb_dir)
        if tensorboard is not None:
            cbs.append(tensorboard)
    csv_path, plot_path = where(csv, CSV_NAME), where(plot, PLOT_NAME)
    if csv_path is not None or plot_path is not None:
        cbs.append(TrainingLog(csv_path, plot_path, state_dir=checkpoint_dir))
    return cbs


def train_detector(model, train_dataset, epochs=None, batch_size=None, learning_rate=None,
                   optimizer=None, momentum=None, warmup_epochs=None, lr_decay_epochs=None,
                   val_dataset=None, eval_every=1, checkpoint_dir=None, initial_epoch=0,
                   augment=True, augmentation=None, workers=2, seed=0, callbacks=None,
                   jit_compile=None, verbose=1, weight_decay=None, schedule=None,
                   recipe=None, time_limit=None, log_dir=None, csv=True, plot=True,
                   val_loss=True, ignore_difficult=False, on_error="raise"):
    """Train an SSD on a detection dataset.

    Every optimisation option left at `None` comes from the recipe (see
    `resolve_recipe`): by default the one of the model's variant.

    Args:
        model: an SSD model (`SSD300`, `SSDTiny`, ...). If it is already
            compiled with an optimizer (e.g. returned by
            `keras_ssd.training.checkpoints.resume`), that optimizer and its
            state are kept and the optimisation options are ignored (if it
            has weight decay and no exclusion of its own, biases and
            batch-norm variables are excluded again: Keras does not save that).
        train_dataset: a detection dataset (`VOCDataset`, `COCODataset`, ...)
            with the model's classes.
        epochs: total number of epochs (including `initial_epoch` ones);
            default the recipe's, or as many as fit in `time_limit`.
        batch_size: images per step (default: the recipe's).
        learning_rate: rate after warm-up.
        optimizer: `"sgd"` (momentum, the paper), `"adam"` or `"adamw"`.
        momentum: SGD momentum.
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        lr_decay_epochs: `"step"` schedule: epochs after which the rate is
            multiplied by 0.1; default 2/3 and 5/6 of `epochs`. Giving them
            selects the step schedule when `schedule` is not given.
        val_dataset: optional dataset for `val_mAP` (VOC07 11-point) every
            `eval_every` epochs and at the end.
        eval_every: int.
        checkpoint_dir: optional folder for `latest.keras`, `best.keras`
            (by `val_mAP` when there is a validation set) and `state.json`.
        initial_epoch: epoch to start from (resuming).
        augment: bool, the SSD data augmentation.
        augmentation: optional `SSDAugmentation` options, on top of the
            recipe's.
        workers: data-loading threads (0 loads in the training thread).
        seed: int, for the shuffling and augmentation order.
        callbacks: extra Keras callbacks (they run after the built-in ones
            and see `val_mAP`, `learning_rate` and `epoch_seconds`).
        jit_compile: `None` for the measured default of
            `keras_ssd.accel.runtime` (no XLA on CPU).
        verbose: Keras verbosity (1: progress bar, 2: one line per epoch).
        weight_decay: the optimizer's decoupled weight decay. Default: the
            recipe's for AdamW (`Recipe.optimizer_weight_decay`), 0 for SGD
            and Adam, whose decay (the paper's) is the model's L2 penalty,
            set when the model is built (the builders' default is the
            recipe's, `Recipe.model_weight_decay`). So the decay is never
            applied twice: a model that already has an L2 penalty gets no
            AdamW decay by default either. Pass 0 (and build the model with
            `weight_decay=0`) to train without any.
        schedule: `"step"` or `"cosine"`.
        recipe: a `Recipe` or recipe name to start from instead of the
            model's.
        time_limit: optional training-time budget in seconds (validation
            excluded). The first epoch measures the speed; the schedule is
            then fitted to the number of epochs that fit in the budget (at
            most `epochs` when given), and training stops at the limit
            either way.
        val_loss: with a `val_dataset`, also compute `val_loss` and its
            parts (`val_conf_loss`, `val_loc_loss`) on it every `eval_every`
            epochs (one more pass over it, without augmentation).
        log_dir: TensorBoard folder (`train/` and `validation/` event
            files: loss, `conf_loss`, `loc_loss`, learning rate, `val_mAP`).
            `None`: `<checkpoint_dir>/logs` when there is a `checkpoint_dir`,
            else none; `False`: none. Skipped with a logged message when
            TensorBoard is not installed.
        csv: the history as CSV, one row per epoch: `True` for
            `<checkpoint_dir>/history.csv` (when there is a
            `checkpoint_dir`), a path, or `False`.
        plot: a PNG of loss and `val_mAP` per epoch, rewritten every epoch
            (needs matplotlib): `True` for `<checkpoint_dir>/training.png`,
            a path, or `False`. On resume (`initial_epoch` > 0) the CSV and
            the plot keep the earlier epochs (see
            `keras_ssd.training.logs.TrainingLog`); a log that cannot be
            written warns and training goes on.
        ignore_difficult: VOC "difficult" objects: trained as ordinary
            positives by default (as Caffe SSD does); `True` marks the
            priors they match "ignore" (-1: neither positive nor negative).
            COCO crowd regions are never positives either way (see
            `SSDSequence` and docs/data.md).
        on_error: `SSDSequence`'s: `"raise"` stops at an image that fails
            to load mid-run, naming it; `"skip"` logs it and uses the next
            record instead.

    Returns:
        The Keras `History`; `history.history` holds `loss`, its parts
        `conf_loss` and `loc_loss` (`conf_loss + loc_loss == loss`; plus
        `reg_loss` for a model with a weight penalty), `learning_rate`,
        `epoch_seconds` and, with a validation set, `val_mAP` per epoch
        (and `val_loss`, `val_conf_loss`, `val_loc_loss` unless
        `val_loss=False`). `history.recipe` is the `Recipe` used (`None`
        for a model that came compiled).
    """
    _check_trainable(model)
    compiled = (getattr(model, "optimizer", None) is not None
                and getattr(model, "compiled", False))
    used, weight_decay = _run_recipe(
        model, recipe, compiled, weight_decay, lr_decay_epochs, dict(
            optimizer=optimizer, learning_rate=learning_rate, momentum=momentum,
            warmup_epochs=warmup_epochs, schedule=schedule, epochs=epochs,
            batch_size=batch_size))
    time_limit = _check_time_limit(time_limit)
    max_epochs = _max_epochs(epochs, time_limit, used, initial_epoch)
    loader = {"workers": int(workers), "use_multiprocessing": False} if workers else {}
    loader["on_error"] = on_error  # SSDSequence's, for the training and validation data
    sequence = _training_data(model, train_dataset, used, augment, augmentation, seed,
                              ignore_difficult, loader, initial_epoch)
    steps_per_epoch = len(sequence)
    # Before the first epoch has been timed, a time-limited run plans for
    # the recipe's length (or `epochs`); `TimeLimit.fit` refits it after.
    planned = max_epochs if max_epochs is not None else int(used.epochs)
    _compile(model, compiled, used, weight_decay, planned, steps_per_epoch, lr_decay_epochs,
             jit_compile)
    limit = TimeLimit(time_limit, verbose=1 if verbose else 0) if time_limit else None
    fit = dict(verbose=verbose, shuffle=False, callbacks=_callbacks(
        model, used, limit, val_dataset, eval_every, checkpoint_dir, log_dir, csv, plot,
        verbose, callbacks))
    if val_dataset is not None and val_loss:
        fit.update(_validation_data(model, val_dataset, used, eval_every, ignore_difficult,
                                    loader))
    if limit is None:
        history = model.fit(sequence, epochs=planned, initial_epoch=int(initial_epoch), **fit)
        history.recipe = None if compiled else used
        return history
    retime = None if compiled else (lambda total: _retime_schedule(
        model, total / steps_per_epoch, steps_per_epoch, lr_decay_epochs))
    history, planned_steps = limit.fit(model, sequence, int(initial_epoch), max_epochs,
                                       steps_per_epoch, planned, retime, **fit)
    # `epochs`: the length the schedule was last fitted to, its last epoch
    # possibly shorter (`planned_steps`, the schedule's length in steps)
    history.planned_steps, history.steps_per_epoch = planned_steps, steps_per_epoch
    history.recipe = None if compiled else used.replace(
        epochs=int(math.ceil(planned_steps / steps_per_epoch)))
    history.time_limit = limit
    return history


def _check_trainable(model):
    if getattr(getattr(model, "config", None), "class_subset", None) is not None:
        raise ValueError(
            f"train_detector: model {model.name!r} is a class-subset detector (it reports "
            f"{model.config.detection_names} of a network trained on more classes) and "
            "cannot be trained; fine-tune new heads instead: "
            "SSD300.from_preset(NAME, class_names=[...])")


def _run_recipe(model, recipe, compiled, weight_decay, lr_decay_epochs, overrides):
    """`(recipe, the optimizer's decoupled weight decay)` of the run: by
    default the recipe's for AdamW unless the model already has an L2
    penalty, 0 for SGD and Adam."""
    if overrides["schedule"] is None and lr_decay_epochs is not None:
        overrides["schedule"] = "step"
    used = resolve_recipe(model, recipe, **overrides)
    model_l2 = float(getattr(model, "weight_decay", 0.0) or 0.0)
    if weight_decay is None:
        weight_decay = used.optimizer_weight_decay
        if weight_decay and model_l2 and not compiled:
            logging.getLogger("keras_ssd").info(
                "train_detector: %s already has an L2 penalty of %g on its kernels; "
                "no decoupled decay on top", getattr(model, "name", "the model"), model_l2)
            weight_decay = 0.0
    elif weight_decay and model_l2 and not compiled:
        warnings.warn(f"train_detector: weight_decay={weight_decay:g} in the optimizer on "
                      f"top of the model's own L2 penalty of {model_l2:g}: the kernels "
                      "decay twice; build the model with weight_decay=0 to avoid it",
                      stacklevel=3)
    if used.optimizer == "adamw":
        used = used.replace(weight_decay=float(weight_decay))
    return used, weight_decay


def _check_time_limit(time_limit):
    if time_limit is None:
        return None
    time_limit = float(time_limit)
    if not math.isfinite(time_limit) or time_limit <= 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    return time_limit


def _max_epochs(epochs, time_limit, used, initial_epoch):
    """The run's last epoch: `epochs`, else the recipe's (`None` with a
    time limit: as many as fit)."""
    if epochs is None:
        max_epochs = None if time_limit is not None else int(used.epochs)
    else:
        max_epochs = int(epochs)
    if max_epochs is not None and max_epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if max_epochs is not None and initial_epoch >= max_epochs:
        raise ValueError(
            f"nothing to do: the run is at epoch {initial_epoch} of {max_epochs}; raise --epochs"
        )
    return max_epochs


def _training_data(model, dataset, used, augment, augmentation, seed, ignore_difficult,
                   loader, initial_epoch):
    """The augmented `SSDSequence` of the training set (this process's share)."""
    from keras_ssd.data import SSDSequence
    from keras_ssd.training.distribute import process_share

    options = dict(used.augmentation)
    options.update(augmentation or {})
    sequence = SSDSequence(dataset, model.config, batch_size=int(used.batch_size),
                           augment=augment, seed=seed, augmentation=options or None,
                           cache_images="auto", ignore_difficult=ignore_difficult,
                           **loader)
    if initial_epoch:
        sequence.set_epoch(initial_epoch)
    return process_share(sequence)  # JAX multi-process: this process's rows


def _validation_data(model, dataset, used, eval_every, ignore_difficult, loader):
    """`fit`'s `validation_data` and `validation_freq` for `val_loss`."""
    from keras_ssd.data import SSDSequence
    from keras_ssd.training.distribute import process_share

    sequence = SSDSequence(dataset, model.config, batch_size=int(used.batch_size),
                           augment=False, shuffle=False, ignore_difficult=ignore_difficult,
                           **loader)
    return {"validation_data": process_share(sequence), "validation_freq": int(eval_every)}


def _compile(model, compiled, used, weight_decay, planned, steps_per_epoch, lr_decay_epochs,
             jit_compile):
    """Compile with the recipe's optimizer and schedule, or, for a model that
    came compiled (resumed), keep its optimizer and pin this machine's jit
    setting (the saved one may come from another device)."""
    from keras_ssd.accel.runtime import apply_runtime_defaults, compile_defaults
    from keras_ssd.losses import SSDLoss

    if compiled:
        _exclude_from_decay(model.optimizer)
        apply_runtime_defaults(model, jit_compile)
        return
    opt = make_optimizer(
        used.optimizer, used.learning_rate, used.momentum,
        total_steps=planned * steps_per_epoch,
        warmup_steps=int(math.ceil(used.warmup_epochs * steps_per_epoch)),
        boundaries=decay_steps_from_epochs(planned, steps_per_epoch, lr_decay_epochs),
        warmup_factor=used.warmup_factor, schedule=used.schedule,
        weight_decay=weight_decay,
        final_lr_factor=used.final_lr_factor,
    )
    model.compile(**compile_defaults(jit_compile, optimizer=opt, loss=SSDLoss()))


def _callbacks(model, used, limit, val_dataset, eval_every, checkpoint_dir, log_dir, csv,
               plot, verbose, extra):
    """The built-in callbacks in the order they must run (each reads what
    the ones before it add to the logs), then the caller's."""
    from keras_ssd.training.callbacks import (
        EpochTimer, LearningRateLogger, LossPartsRemainder, MeanAveragePrecision,
        ProgressLineBreak, StopOnNaN, TrainingCheckpoint,
    )
    from keras_ssd.training.distribute import is_chief

    say = 1 if verbose else 0
    cbs = [ProgressLineBreak(verbose), EpochTimer()] + ([limit] if limit else [])
    if model.losses:  # a weight penalty: loss = conf_loss + loc_loss + reg_loss
        cbs.append(LossPartsRemainder())
    if val_dataset is not None:
        cbs.append(MeanAveragePrecision(val_dataset, every=eval_every, verbose=say,
                                        batch_size=max(8, min(32, int(used.batch_size)))))
    cbs += [LearningRateLogger(), StopOnNaN()]
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        cbs.append(TrainingCheckpoint(checkpoint_dir, verbose=say,
                                      monitor="val_mAP" if val_dataset is not None else None))
    if is_chief(getattr(model, "distribute_strategy", None)):  # logs: the chief's only
        cbs += _run_logs(checkpoint_dir, log_dir, csv, plot)
    return cbs + list(extra or [])
