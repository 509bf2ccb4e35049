"""`keras-ssd train`: train an SSD on a Pascal VOC, COCO, YOLO or CSV dataset."""

import argparse
import os
import sys

from keras_ssd import presets
from keras_ssd.cli.args import (
    MODEL_CHOICES,
    CLIError,
    DefaultSplit,
    _model_name,
    _require_keras_backend,
    _non_negative_float,
    _non_negative_int,
    _positive_float,
    _positive_int,
    _quiet_tensorflow,
    _require_dataset,
    _require_out_folder,
    _unit_float,
    add_dataset_arguments,
    add_image_size_argument,
    add_on_error_argument,
    add_preset_argument,
    add_project_arguments,
    class_options,
    evaluation_reading,
    load_cli_dataset,
    require_datasets,
    require_preset,
    resolve_split,
)

HELP = "train an SSD on a Pascal VOC, COCO, YOLO or CSV dataset"

MULTI_WORKER_HELP = """\
multi-worker training (--distribute multi-worker):
  Start this command once per worker (N workers: N processes, on one machine or
  several), the same arguments everywhere, each with its own TF_CONFIG naming all
  workers (host:port, reachable from every worker) and its own index i = 0..N-1:

    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222", ...]},
                "task": {"type": "worker", "index": i}}' \\
    keras-ssd train --data DIR --model tiny --distribute multi-worker \\
        --batch-size 32 --seed 0 --checkpoint-dir SHARED_DIR

  - the same data at the same path and the same --seed on every worker;
  - --batch-size is the global batch, a multiple of the number of replicas (one
    per worker on CPU, one per GPU);
  - --checkpoint-dir: one folder all workers can read (shared on several
    machines); only worker 0, the chief, writes it (latest.keras, best.keras,
    state.json, logs), the others write to a temporary folder they remove;
  - workers wait for each other at start; if one fails or is killed, the others
    stop with an error too (non-zero status, within about a minute): start them
    all again with --resume.
  Under KERAS_BACKEND=jax the same TF_CONFIG starts jax.distributed (see
  docs/distributed.md for what runs there).
"""


def add_arguments(p):
    _add_data_arguments(p.add_argument_group("data"))
    _add_model_arguments(p.add_argument_group("model"))
    _add_optimisation_arguments(p)
    _add_run_arguments(p.add_argument_group("run"))
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = MULTI_WORKER_HELP
    p.set_defaults(_reparse=_apply_config, _subparser=p)


def _add_data_arguments(data):
    # --data is required, checked in run(): `--config ARGS.yaml` may provide it.
    add_dataset_arguments(
        data, required=False,
        data_help="; VOC folders may be repeated to train on several (VOC07+12: "
                  "--data VOC2007 --data VOC2012)",
        classes_help="a VOC folder's labels.txt, else the 20 VOC classes for VOC; the "
                     "dataset's own for COCO, YOLO and CSV). YOLO: must match data.yaml; "
                     "COCO: selects categories; CSV: the label order, or a "
                     "keras-retinanet class_name,id .csv file")
    add_on_error_argument(data)
    data.add_argument("--val-data", metavar="DIR",
                      help="dataset (same --format) to compute validation mAP on after "
                           "each --eval-every epochs (default: none)")
    data.add_argument("--val-split", default=DefaultSplit("test"),
                      help="split of --val-data (default: test for VOC, val for YOLO)")
    data.add_argument("--workers", type=_non_negative_int, default=2,
                      help="data-loading threads (0 = load in the training loop; "
                           "default: 2)")


def _add_model_arguments(model):
    model.add_argument("--model", type=_model_name, default=None,
                       metavar="{" + ",".join(MODEL_CHOICES) + "}",
                       help="SSD variant (default: ssd300 from ImageNet VGG16; with "
                            f"--time-limit, {presets.FROM_SCRATCH_VARIANT} from scratch; "
                            "with --preset, the preset's)")
    model.add_argument("--backbone-weights", default=None, metavar="{imagenet,none,PATH}",
                       help="backbone initialisation: 'imagenet' (Keras downloads the "
                            "weights), 'none' (random) or a .h5/.weights.h5 file "
                            "(default: imagenet; ignored by models without a pretrained "
                            "backbone)")
    add_preset_argument(model,
                       help="fine-tune a pretrained detector (downloaded and converted "
                            "once): new class heads for the dataset's classes, the rest of "
                            "the network kept; its recipe is finetune-sgd")
    model.add_argument("--freeze", choices=("none", "conv1-conv2", "backbone"),
                       default="none",
                       help="with --preset: layers that do not train: conv1-conv2 (the "
                            "Caffe recipe), backbone (conv1_1..fc7) or none (default). "
                            "Stored in the model: --resume keeps them frozen")
    add_image_size_argument(model, training=True)
    model.add_argument("--letterbox", action="store_true",
                       help="keep each image's aspect ratio: scale it to fit the input "
                            "and pad with the mean pixel (default: stretch it, as the "
                            "paper does). Stored in the model: evaluate and predict then "
                            "letterbox too")


def _add_optimisation_arguments(p):
    opt = p.add_argument_group(
        "optimisation",
        "Every option left unset comes from the model's recipe: the SSD paper's SGD "
        "for SSD300/SSD512 from ImageNet VGG16, AdamW with warm-up and cosine decay "
        "for a network that starts from random weights (the tiny model, or "
        "--backbone-weights none). The run prints the recipe it uses; "
        "docs/training.md says why each default is what it is.")
    opt.add_argument("--recipe", choices=sorted(presets.RECIPES), default=None,
                     help="start from this recipe instead of the model's")
    opt.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                     help="sgd (with momentum), adam or adamw")
    opt.add_argument("--epochs", type=_positive_int, default=None,
                     help="training epochs (with --time-limit: at most this many)")
    opt.add_argument("--time-limit", type=_positive_float, default=None, metavar="MINUTES",
                     help="train for this many minutes of training time (validation "
                          "excluded): the first epoch measures the speed, the "
                          "learning-rate schedule is fitted to the epochs that fit, and "
                          "the run stops and saves at the limit")
    opt.add_argument("--batch-size", type=_positive_int, default=None,
                     help="images per step")
    opt.add_argument("--lr", type=_positive_float, default=None,
                     help="learning rate after warm-up")
    opt.add_argument("--momentum", type=_unit_float, default=None,
                     help="SGD momentum")
    opt.add_argument("--weight-decay", type=_non_negative_float, default=None,
                     help="weight decay: an L2 penalty on convolution kernels for sgd "
                          "and adam (as in the paper), decoupled for adamw (kernels only)")
    opt.add_argument("--warmup-epochs", type=_non_negative_float, default=None,
                     help="linear learning-rate warm-up length in epochs")
    opt.add_argument("--schedule", choices=("step", "cosine"), default=None,
                     help="step: x0.1 at --lr-decay-epochs; cosine: decay to a small "
                          "floor at the end of the run")
    opt.add_argument("--lr-decay-epochs", default=None, metavar="E1,E2",
                     help="step schedule: epochs after which the learning rate is "
                          "multiplied by 0.1 (default: at 2/3 and 5/6 of the run, as "
                          "80k and 100k of 120k iterations)")


def _add_run_arguments(run):
    run.add_argument("--config", metavar="ARGS.yaml",
                     help="repeat a run: read the arguments from the args.yaml of its "
                          "folder (options given on the command line win)")
    add_project_arguments(run, "train", "run")
    run.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                     help="write the run to exactly this folder instead (latest.keras, "
                          "best.keras, args.yaml, logs/, history.csv, training.png); "
                          "a folder that holds another run's files needs --resume or "
                          "--exist-ok")
    run.add_argument("--exist-ok", action="store_true",
                     help="write into an existing run folder (--checkpoint-dir, or "
                          "PROJECT/NAME itself), replacing its files")
    run.add_argument("--no-logs", dest="logs", action="store_false",
                     help="write no TensorBoard logs, history.csv or training.png")
    run.add_argument("--resume", action="store_true",
                     help="continue from the latest checkpoint in --checkpoint-dir "
                          "(default: the newest PROJECT/NAME* folder with a "
                          "latest.keras), optimizer state and epoch count included")
    run.add_argument("--early-stopping", type=_positive_int, default=None, metavar="N",
                     help="stop when val_mAP (with --val-data, else the training loss) "
                          "has not improved for N evaluations")
    run.add_argument("--mixed-precision", action="store_true",
                     help="mixed precision: float16 on GPU; on CPU bfloat16 only where "
                          "the CPU computes it natively (else float32, with a note)")
    run.add_argument("--eval-every", type=_positive_int, default=1, metavar="N",
                     help="evaluate --val-data every N epochs (default: 1)")
    run.add_argument("--no-augment", dest="augment", action="store_false",
                     help="disable the SSD data augmentation")
    run.add_argument("--no-fit", dest="fit_defaults", action="store_false",
                     help="keep the preset's input size, prior sizes and zoom-out instead "
                          "of fitting them to the training set's boxes (a from-scratch "
                          "model fits them by default; see docs/training.md)")
    run.add_argument("--max-expand-ratio", type=_positive_float, default=None,
                     metavar="R",
                     help="largest zoom-out (SSD's expand) ratio, >= 1 (1 = none; "
                          "default: 4, or less when the dataset's small objects would "
                          "shrink below the smallest prior)")
    run.add_argument("--ignore-difficult", action="store_true",
                     help="VOC: ignore the priors of 'difficult' objects in the loss "
                          "(default: train them as ordinary objects, as Caffe SSD does). "
                          "COCO crowd regions are always ignored")
    run.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run.add_argument("--distribute", choices=("none", "mirrored", "multi-worker"),
                     default="none",
                     help="distribution strategy: none (one device, default), mirrored "
                          "(all GPUs of this machine; DataParallel under JAX) or "
                          "multi-worker (several processes or machines, each started "
                          "with its own TF_CONFIG: see 'multi-worker training' below). "
                          "--batch-size is the global batch. See docs/distributed.md")


#: Options `args.yaml` does not record: where this run writes and how it
#: starts, which a repeat chooses afresh.
NOT_RECORDED = ("config", "checkpoint_dir", "exist_ok", "resume", "verbose", "command")


def recorded_args(args):
    """The options of `args` that `args.yaml` records."""
    return {k: v for k, v in vars(args).items()
            if not k.startswith("_") and k not in NOT_RECORDED
            and k != "hard_exit_on_error"}


def _apply_config(parser, argv, args):
    """`--config ARGS.yaml`: its `args` become the defaults, then `argv` is
    parsed again (so options on the command line win)."""
    if args.config is None:
        return args
    from keras_ssd.runs import read_run_args

    if not os.path.isfile(args.config):
        raise CLIError(f"--config: file not found: {args.config}", status=2)
    try:
        values = read_run_args(args.config)
    except ValueError as e:
        raise CLIError(f"--config: {e}", status=2) from None
    known = set(recorded_args(args))
    unknown = sorted(set(values) - known)
    if unknown:
        raise CLIError(f"--config {args.config}: unknown options {', '.join(unknown)} "
                       "(not an args.yaml of keras-ssd train?)", status=2)
    if isinstance(values.get("image_size"), list):
        values["image_size"] = tuple(values["image_size"])
    sub = args._subparser
    sub.set_defaults(**values)
    again = parser.parse_args(argv)
    if isinstance(again.data, list) and isinstance(values.get("data"), list) \
            and again.data is not values["data"] and again.data[:len(values["data"])] \
            == values["data"]:
        # argparse appends --data given on the command line to the default
        # list: the command line replaces it instead.
        again.data = again.data[len(values["data"]):]
    return again


def _parse_epochs_list(text, epochs):
    try:
        values = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--lr-decay-epochs must be comma-separated numbers, got {text!r}",
                       status=2) from None
    if any(not 0 < v < epochs for v in values):
        raise CLIError(f"--lr-decay-epochs values must lie between 0 and --epochs ({epochs}), "
                       f"got {text!r}", status=2)
    return values


def default_model(args):
    """`--model`, or the variant a run that names none trains.

    A time-limited run (`--time-limit`, minutes on a CPU) trains the
    from-scratch default `presets.FROM_SCRATCH_VARIANT`, the variant measured
    best per CPU-second on the learning suite (docs/training.md): SSD300's
    paper recipe needs some 120k iterations that no such budget holds. A
    pretrained backbone file or `--preset` keeps its own architecture; every
    other run trains the paper's SSD300.
    """
    if args.model is not None:
        return args.model
    preset = presets.find_pretrained(getattr(args, "preset", None) or "")
    if preset is not None:
        return preset.architecture
    weights = getattr(args, "backbone_weights", None)
    if (args.time_limit is not None and not getattr(args, "resume", False)
            and weights in (None, "none")):
        print(f"model: {presets.FROM_SCRATCH_VARIANT} (a time-limited run trains the "
              "from-scratch default; --model to choose another)")
        return presets.FROM_SCRATCH_VARIANT
    return "ssd300"


def _check_backbone_weights(value, model_name):
    key = str(value).lower()
    pretrained = presets.get(model_name).pretrained_backbone
    if key in ("none", "imagenet"):
        if not pretrained and key == "imagenet":
            return None  # e.g. the tiny backbone has no pretrained weights
        return None if key == "none" else "imagenet"
    if not pretrained:
        raise CLIError(f"--backbone-weights: the {model_name} model has no pretrained "
                       "backbone; use none", status=2)
    if not os.path.isfile(value):
        raise CLIError(f"--backbone-weights: weights file not found: {value} "
                       "(expected imagenet, none or a .h5 file)", status=2)
    return value


def run(args):
    if not args.data:
        raise CLIError("the following arguments are required: --data (or --config "
                       "ARGS.yaml)", status=2)
    # Check everything a typo can break before TensorFlow is imported.
    fmt = require_datasets(args.data, args.format, args.split)
    val_fmt = (_require_dataset(args.val_data, args.format, args.val_split, "--val-data")
               if args.val_data else None)
    split = resolve_split(fmt, args.split)
    if args.classes is None and fmt == "voc":
        beside = os.path.join(args.data[0], "labels.txt")
        if os.path.isfile(beside):
            args.classes = beside
            print(f"classes: {beside} (give --classes to choose others)")
    class_names, class_file = class_options(args.classes, fmt)
    args.model = default_model(args)
    preset = _check_preset(args)
    backbone_weights = (None if preset is not None
                        else _check_backbone_weights(args.backbone_weights or "imagenet",
                                                     args.model))
    recipe = resolve_cli_recipe(args, backbone_weights)
    if args.lr_decay_epochs is not None and args.time_limit is not None and args.epochs is None:
        raise CLIError("--lr-decay-epochs with --time-limit needs --epochs (the epochs "
                       "are counted against it)", status=2)
    decay_epochs = (None if args.lr_decay_epochs is None
                    else _parse_epochs_list(args.lr_decay_epochs, recipe.epochs))
    # A missing Keras backend is refused before anything is written (the run
    # folder, its lock).
    _require_keras_backend()
    folder = _choose_run_dir(args)
    # The data is read before TensorFlow too (numpy and Pillow only).
    train_set = load_cli_dataset(args.data, fmt, split, class_names, "--data", class_file,
                                 on_error=args.on_error)
    class_names = list(train_set.class_names)
    val_set = None
    val_split = None
    if args.val_data:
        val_split = resolve_split(val_fmt, args.val_split, evaluation=True)
        val_set = load_cli_dataset(args.val_data, val_fmt, val_split, class_names,
                                   "--val-data", **evaluation_reading(args.on_error))
    if len(train_set) == 0:
        raise CLIError(f"--data: split {split or args.data[0]!r} lists no images")
    from keras_ssd.runs import (RunLock, RunLockedError, dataset_summary,
                                format_dataset_summary, make_run_dir, write_run_args)

    summaries = {"train": dataset_summary(train_set, split)}
    if val_set is not None:
        summaries["val"] = dataset_summary(val_set, val_split)
    if folder is None:
        folder = make_run_dir(args.project, args.name)
    args.checkpoint_dir = folder
    lock = None
    if _writes_run_folder(args):
        try:
            lock = RunLock(folder).acquire()
        except RunLockedError as e:
            raise CLIError(str(e)) from None
    try:
        print(f"run folder: {folder}")
        for title, summary in summaries.items():
            print(format_dataset_summary(summary, title=title))
        if _writes_run_folder(args) and not (args.resume and os.path.isfile(
                os.path.join(folder, "args.yaml"))):
            import dataclasses

            recorded = {**recorded_args(args), "split": split,
                        "classes": ",".join(class_names)}
            if args.val_data:
                recorded["val_split"] = val_split
            write_run_args(folder, recorded,
                           recipe=dataclasses.asdict(recipe), dataset=summaries,
                           extra={"run_dir": os.path.abspath(folder), "format": fmt})
        return _run_training(args, fmt, split, train_set, val_set, class_names,
                             backbone_weights, decay_epochs, recipe)
    finally:
        if lock is not None:
            lock.release()


#: Files whose presence marks a folder as holding a run.
RUN_FILES = ("latest.keras", "best.keras", "state.json", "args.yaml", "history.csv")


def _writes_run_folder(args):
    """False for a multi-worker run's non-chief workers (they write elsewhere)."""
    if args.distribute != "multi-worker":
        return True
    from keras_ssd.training.distribute import parse_tf_config

    try:
        cluster = parse_tf_config()
    except ValueError:
        return True  # the strategy reports the bad TF_CONFIG later
    return cluster is None or int(cluster.get("task_index", 0)) == 0


def _newest_run(project, name):
    """The run folder `project/name*` with the newest latest.keras, or None."""
    import glob

    pattern = os.path.join(glob.escape(project), glob.escape(name) + "*")
    found = [d for d in glob.glob(pattern)
             if os.path.isfile(os.path.join(d, "latest.keras"))
             and (os.path.basename(d)[len(name):].isdigit() or os.path.basename(d) == name)]
    if not found:
        return None
    return max(found, key=lambda d: os.path.getmtime(os.path.join(d, "latest.keras")))


def _choose_run_dir(args):
    """The run folder, checked; None for a fresh one (created after the checks)."""
    if args.checkpoint_dir is None and args.distribute == "multi-worker":
        raise CLIError("--distribute multi-worker needs --checkpoint-dir (one folder "
                       "that every worker names)", status=2)
    if args.checkpoint_dir is not None:
        folder = args.checkpoint_dir
        option = "--checkpoint-dir"
    elif args.resume:
        folder = _newest_run(args.project, args.name)
        if folder is None:
            base = os.path.join(args.project, args.name)
            raise CLIError(f"--resume: no run folder {base}*"
                           " with a latest.keras to resume; name it with --checkpoint-dir",
                           status=2)
        option = "--resume"
    elif args.exist_ok:
        folder = os.path.join(args.project, args.name)
        option = "--project/--name"
    else:
        _require_out_folder(args.project, "--project")
        return None
    _require_out_folder(folder, option)
    latest = os.path.join(folder, "latest.keras")
    if args.resume and not os.path.isfile(latest):
        raise CLIError(f"--resume: no checkpoint to resume from ({latest} not found)",
                       status=2)
    if not args.resume and not args.exist_ok and _writes_run_folder(args):
        held = [n for n in RUN_FILES if os.path.exists(os.path.join(folder, n))]
        if held:
            raise CLIError(f"{option} {folder} holds another run's files "
                           f"({', '.join(held)}): "
                           "continue it with --resume, replace them with --exist-ok, or "
                           f"leave out --checkpoint-dir for a fresh folder under "
                           f"{args.project}/", status=2)
    return folder


def _run_training(args, fmt, split, train_set, val_set, class_names, backbone_weights,
                  decay_epochs, recipe):
    latest = os.path.join(args.checkpoint_dir, "latest.keras")
    _quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        import warnings

        from keras_ssd.accel.runtime import set_mixed_precision

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            policy = set_mixed_precision(True)
        print(f"mixed precision: {policy}"
              + (" (this CPU has no native bfloat16, AVX512_BF16 or AMX: emulated "
                 "bfloat16 would be no faster)" if caught and policy == "float32" else ""))
    from keras_ssd.training.distribute import check_global_batch_size, get_strategy, strategy_scope

    try:
        strategy = get_strategy(args.distribute)
        if args.distribute == "multi-worker" and _several_workers():
            # From here a failed worker leaves at once (see cli/main.py), not
            # at interpreter shutdown, where collective-op threads can hold it.
            args.hard_exit_on_error = True
            _default_sigterm()
        check_global_batch_size(recipe.batch_size, strategy)
    except ValueError as e:
        raise CLIError(f"--distribute {args.distribute}: {e}", status=2) from None
    with strategy_scope(strategy):
        return _train_in_scope(args, strategy, train_set, val_set, class_names,
                               backbone_weights, decay_epochs, latest, recipe, fmt, split)


def _fit_defaults(args, train_set, class_names, backbone_weights, recipe):
    """`FittedDefaults` of a from-scratch run, or None where they do not
    apply (`--no-fit`, pretrained backbone, letterboxed input). With
    `--time-limit` on one device, the training speed is measured first, so
    the input size and the batch fit the budget too."""
    from keras_ssd.models import build_model
    from keras_ssd.training.fitted_defaults import fit_defaults

    pretrained = (presets.get(args.model).pretrained_backbone
                  and backbone_weights is not None)
    if (not getattr(args, "fit_defaults", True) or pretrained or args.letterbox
            or isinstance(args.image_size, tuple)):
        return None
    preset_model = build_model(args.model, class_names=class_names)
    base = preset_model.config
    if not base.is_square:
        return None
    base_batch = args.batch_size or recipe.batch_size
    speed = None
    if args.time_limit is not None and getattr(args, "distribute", "none") in (None, "none"):
        import keras

        from keras_ssd.training.speed_probe import measure_training_speed

        # the preset-sized build serves as the probe's throw-away copy
        speed = measure_training_speed(preset_model, base_batch, dataset=train_set,
                                       augmentation=recipe.augmentation,
                                       on_error=args.on_error)
        # the model to train starts from the same weights as without the probe
        keras.utils.set_random_seed(args.seed)
    try:
        return fit_defaults(
            train_set, base,
            lambda side: build_model(args.model, class_names=class_names,
                                     image_size=side).config,
            image_size=args.image_size, max_expand_ratio=args.max_expand_ratio,
            budget_seconds=None if args.time_limit is None else 60.0 * args.time_limit,
            images_per_second=speed, base_batch=base_batch, batch_size=args.batch_size)
    except ValueError as e:  # e.g. no box at all: the preset's defaults
        print(f"defaults not fitted: {e}")
        return None


def _check_preset(args):
    """`--preset` (and `--freeze`) before TensorFlow: the `PretrainedPreset` or None."""
    name = getattr(args, "preset", None)
    if name is None:
        if getattr(args, "freeze", "none") != "none":
            raise CLIError("--freeze goes with --preset (a pretrained detector)", status=2)
        return None
    preset = require_preset(name)
    if args.model != preset.architecture:
        raise CLIError(f"--preset {preset.name} is an {preset.architecture} model, not "
                       f"--model {args.model}", status=2)
    for option, value in (("--image-size", getattr(args, "image_size", None)),
                          ("--letterbox", getattr(args, "letterbox", False) or None)):
        if value is not None:
            raise CLIError(f"{option} does not go with --preset (the converted detector "
                           "keeps its source's input)", status=2)
    return preset


def _several_workers():
    """Whether TF_CONFIG (or KERAS_DISTRIBUTION_NUM_PROCESSES) names more
    than one worker."""
    from keras_ssd.training.distribute import parse_tf_config

    cluster = parse_tf_config()
    if cluster is not None and len(cluster["workers"]) > 1:
        return True
    try:
        return int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1) > 1
    except ValueError:
        return False


def _default_sigterm():
    """Let SIGTERM end this process again.

    TensorFlow's coordination service (started by a multi-worker strategy)
    installs a SIGTERM handler that only records a preemption notice for
    `tf.distribute.experimental.PreemptionCheckpointHandler`, which this
    command does not use: a worker then ignored `kill` until SIGKILL.
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def resolve_cli_recipe(args, backbone_weights):
    """The recipe of this run: the model's (or `--recipe`), with the options given.

    Decided before TensorFlow is imported, so a bad combination fails fast.
    """
    schedule = args.schedule
    if schedule is None and args.lr_decay_epochs is not None:
        schedule = "step"
    return presets.resolve_recipe(
        args.recipe, variant=args.model, pretrained=backbone_weights is not None,
        pretrained_preset=getattr(args, "preset", None),
        optimizer=args.optimizer, learning_rate=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, schedule=schedule,
        epochs=args.epochs, batch_size=args.batch_size)


def _train_in_scope(args, strategy, train_set, val_set, class_names, backbone_weights,
                    decay_epochs, latest, recipe, fmt, split):
    import time

    from keras_ssd.training.distribute import prepare_model
    from keras_ssd.training.fit import train_detector

    fitted = None
    if args.resume:
        model, initial_epoch = _resumed_model(args, class_names, latest)
    else:
        initial_epoch = 0
        model, fitted = _new_model(args, train_set, class_names, backbone_weights, recipe)
        if fitted is not None and fitted.batch_size not in (None, recipe.batch_size):
            recipe = recipe.replace(batch_size=fitted.batch_size)
    model = prepare_model(model, strategy)
    _print_plan(args, model, train_set, val_set, recipe)
    augmentation = None
    if fitted is not None:
        print("\n".join(fitted.describe()))
        os.makedirs(args.checkpoint_dir, exist_ok=True)
        fitted.save(os.path.join(args.checkpoint_dir, "fitted_defaults.json"))
        augmentation = {"max_expand_ratio": fitted.max_expand_ratio}
    elif args.max_expand_ratio is not None:
        augmentation = {"max_expand_ratio": args.max_expand_ratio}
    start = time.perf_counter()
    history = train_detector(
        model, train_set, epochs=(args.epochs if args.time_limit is not None
                                  else recipe.epochs),
        lr_decay_epochs=decay_epochs, val_dataset=val_set, eval_every=args.eval_every,
        checkpoint_dir=args.checkpoint_dir, initial_epoch=initial_epoch,
        augment=args.augment, augmentation=augmentation, workers=args.workers,
        seed=args.seed,
        # A progress bar on a terminal; one line per epoch into a file or pipe.
        verbose=1 if _isatty(sys.stdout) else 2,
        ignore_difficult=args.ignore_difficult, on_error=args.on_error,
        recipe=recipe, weight_decay=recipe.optimizer_weight_decay,
        time_limit=None if args.time_limit is None else 60.0 * args.time_limit,
        callbacks=_early_stopping(args, val_set),
        **({} if args.logs else {"log_dir": False, "csv": False, "plot": False}),
    )
    _print_outcome(args, history, time.perf_counter() - start, fmt, split)
    return 0


def _resumed_model(args, class_names, latest):
    """The model and epoch of `--resume`, checked against this run's options."""
    from keras_ssd.training.checkpoints import resume

    model, initial_epoch = resume(args.checkpoint_dir)
    if list(model.config.names) != list(class_names):
        raise CLIError(f"--resume: the checkpoint in {args.checkpoint_dir} was trained on "
                       f"classes {model.config.names}, not {class_names}")
    for option, value, own in (
            ("--image-size", args.image_size, model.config.image_size),
            ("--letterbox", args.letterbox or None, model.config.letterbox)):
        if value is not None and value != own:
            raise CLIError(f"--resume: the checkpoint in {args.checkpoint_dir} has "
                           f"{option.lstrip('-')} {own}, not {value}", status=2)
    print(f"resuming {latest} at epoch {initial_epoch}")
    return model, initial_epoch


def _new_model(args, train_set, class_names, backbone_weights, recipe):
    """`(model, fitted defaults or None)`: a preset with new heads, or a
    fresh `--model`, its priors fitted to the data unless `--no-fit`."""
    from keras_ssd.models import build_model

    # SGD and Adam: the paper's L2 penalty, built into the kernels (it
    # passes through the momentum, as in Caffe). AdamW: decoupled, in
    # the optimizer.
    kwargs = {"weight_decay": recipe.model_weight_decay}
    if getattr(args, "preset", None) is not None:
        from keras_ssd.models.pretrained import from_preset

        model = from_preset(args.preset, class_names=class_names,
                            freeze=None if args.freeze == "none" else args.freeze, **kwargs)
        print(f"fine-tuning preset {args.preset} with new heads for {class_names}"
              + (f", {args.freeze} frozen" if args.freeze != "none" else ""))
        return model, None
    if presets.get(args.model).pretrained_backbone:
        kwargs["backbone_weights"] = backbone_weights
    if args.letterbox:
        kwargs["letterbox"] = True
    fitted = _fit_defaults(args, train_set, class_names, backbone_weights, recipe)
    if fitted is not None:
        kwargs["config"] = fitted.config
    elif args.image_size is not None:
        kwargs["image_size"] = args.image_size
    return build_model(args.model, class_names=class_names, **kwargs), fitted


def _print_plan(args, model, train_set, val_set, recipe):
    print(f"training {model.name} ({model.count_params():,} parameters, "
          f"{'x'.join(str(v) for v in model.config.image_shape)} px"
          f"{' letterboxed' if model.config.letterbox else ''}, "
          f"{model.config.num_anchors} priors) on "
          f"{len(train_set)} images of {', '.join(args.data)}"
          + (f"; validating on {len(val_set)} images" if val_set is not None else ""))
    if args.resume:
        print("recipe: the checkpoint's optimizer and schedule continue")
    else:
        print(f"recipe {recipe.describe()}")
        if recipe.why and "(changed)" not in recipe.name:
            print(f"  ({recipe.why})")
    if args.time_limit is not None:
        print(f"time limit: {args.time_limit:g} min of training"
              + (f", at most {args.epochs} epochs" if args.epochs else ""))


def _print_outcome(args, history, seconds, fmt, split):
    logs = history.history
    steps = getattr(history, "planned_steps", None)
    per_epoch = getattr(history, "steps_per_epoch", None)
    # a time-limited run ends on the steps left after its last whole epoch
    part = (f" (the last one {steps % per_epoch} steps of {per_epoch})"
            if steps and per_epoch and steps % per_epoch and len(logs.get("loss", []))
            == -(-steps // per_epoch) else "")
    print(f"\nfinished {len(logs.get('loss', []))} epochs{part} in {seconds / 60:.1f} min; "
          f"final loss {logs['loss'][-1]:.4f}" if logs.get("loss") else "no epoch ran")
    maps = [m for m in logs.get("val_mAP", []) if m is not None]
    if maps:
        print(f"validation mAP (VOC07): last {maps[-1]:.4f}, best {max(maps):.4f}")
    print(f"checkpoints: {os.path.join(args.checkpoint_dir, 'latest.keras')}"
          + (f", {os.path.join(args.checkpoint_dir, 'best.keras')}" if maps else ""))
    model_file = os.path.join(args.checkpoint_dir, "best.keras" if maps else "latest.keras")
    print(f"next: keras-ssd evaluate {_evaluate_hint(args, fmt, split)} --model-file "
          f"{model_file}")


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _early_stopping(args, val_set):
    if args.early_stopping is None:
        return None
    from keras_ssd.training.callbacks import EarlyStoppingOnEvaluations

    monitor = "val_mAP" if val_set is not None else "loss"
    print(f"early stopping: after {args.early_stopping} evaluations of {monitor} without "
          "improvement")
    return [EarlyStoppingOnEvaluations(monitor=monitor, patience=args.early_stopping)]


def _yolo_splits(root):
    """The split names a YOLO dataset has: data.yaml's keys, else images/ folders."""
    from keras_ssd.data.yolo import read_yolo_yaml

    yaml_path = root if os.path.isfile(root) else None
    for name in ("data.yaml", "data.yml"):
        if yaml_path is None and os.path.isfile(os.path.join(root, name)):
            yaml_path = os.path.join(root, name)
    try:
        if yaml_path is not None:
            return set(read_yolo_yaml(yaml_path)["splits"])
        return {n for n in os.listdir(os.path.join(root, "images"))
                if os.path.isdir(os.path.join(root, "images", n))}
    except (OSError, ValueError):
        return set()


def _evaluate_hint(args, fmt, split):
    """`--data ... [--split ...]` of the evaluation that fits this run's data:
    its --val-data, else a held-out split the training data really has."""
    if args.val_data:
        val_split = resolve_split(fmt, args.val_split, evaluation=True)
        return f"--data {args.val_data}" + (f" --split {val_split}" if val_split else "")
    root = args.data[-1]
    if fmt == "voc":
        for candidate in ("test", "val"):
            if candidate != split and os.path.isfile(
                    os.path.join(root, "ImageSets", "Main", f"{candidate}.txt")):
                return f"--data {root} --split {candidate}"
        return f"--data {root} --split {split}  (no held-out split: this scores the " \
               "training images)"
    if fmt == "yolo":
        splits = [s for s in ("val", "test") if s in _yolo_splits(root) and s != split]
        if splits:
            return f"--data {root} --split {splits[0]}"
        return f"--data {root} --split {split}  (data.yaml names no val or test split)"
    return "--data HELD_OUT_DATA"
