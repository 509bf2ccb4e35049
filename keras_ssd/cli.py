"""The `keras-ssd` command line: train, evaluate, predict and demo.

Every subcommand checks its arguments (folders, files, class lists) before
importing TensorFlow, so a typo fails in a fraction of a second. Errors a
user can fix (bad arguments, bad data, a file that is not a keras-ssd model)
are printed as one line, `keras-ssd <command>: error: <what>`, with exit
status 2 (usage) or 1 (everything else); set `KERAS_SSD_TRACEBACK=1` to see
the full traceback instead.

New subcommands plug in through `SUBCOMMANDS`: a `(name, add_arguments,
run)` entry whose `add_arguments(subparser)` declares the options and whose
`run(args)` returns the exit status.
"""

import argparse
import os
import sys

from keras_ssd import presets
from keras_ssd.version import __version__

#: The 20 Pascal VOC classes, in the devkit's order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

#: `--model` choices: the variants of `keras_ssd.presets`.
MODEL_CHOICES = presets.names()


def _model_name(text):
    """`--model` type: a variant name or alias -> its canonical name."""
    preset = presets.find(text)
    if preset is None:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(MODEL_CHOICES)})")
    return preset.name

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status `status`."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- arguments
def parse_classes(value):
    """`--classes`: a comma-separated list, or a text file with one name per line.

    Returns a list of unique, non-empty names. A value that names an existing
    file is read as a file; a value that looks like a file name (has a path
    separator or a `.txt` / `.names` suffix) but does not exist is an error.
    """
    if value is None:
        return list(VOC_CLASSES)
    text = str(value).strip()
    if os.path.isfile(text):
        try:
            with open(text, "r", encoding="utf-8") as f:
                names = [line.strip() for line in f]
        except (OSError, UnicodeDecodeError) as e:
            raise CLIError(f"cannot read class file {text}: {e}", status=2) from None
        names = [n for n in names if n and not n.startswith("#")]
        where = f"class file {text}"
    elif os.path.isdir(text):
        raise CLIError(f"--classes {text} is a folder, not a class file", status=2)
    elif "," not in text and (
        os.sep in text or "/" in text or text.lower().endswith((".txt", ".names", ".csv"))
    ):
        raise CLIError(f"class file not found: {text}", status=2)
    else:
        names = [n.strip() for n in text.split(",")]
        if any(not n for n in names):
            raise CLIError(f"--classes {text!r} has an empty class name", status=2)
        where = "--classes"
    if not names:
        raise CLIError(f"{where} lists no class names", status=2)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise CLIError(f"{where} repeats class names: {', '.join(duplicates)}", status=2)
    return names


def _argument_type(convert, accept, expected):
    """An argparse `type`: `convert(text)`, then `accept(value)` or an error."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _argument_type(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _argument_type(int, lambda v: v >= 0, "an integer >= 0")
_positive_float = _argument_type(
    float, lambda v: 0 < v < float("inf"), "a positive number")


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _unit_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _require_dir(path, option):
    if not os.path.exists(path):
        raise CLIError(f"{option}: folder not found: {path}", status=2)
    if not os.path.isdir(path):
        raise CLIError(f"{option}: not a folder: {path}", status=2)


def _require_model_file(path):
    if not os.path.exists(path):
        raise CLIError(f"--model-file: file not found: {path}", status=2)
    if os.path.isdir(path):
        raise CLIError(f"--model-file: {path} is a folder, not a .keras model file", status=2)


def _require_voc_split(root, split, option):
    """A VOC folder must hold `ImageSets/Main/<split>.txt`."""
    _require_dir(root, option)
    split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        raise CLIError(
            f"{option} {root}: no split file ImageSets/Main/{split}.txt "
            "(expected a Pascal VOC folder such as VOCdevkit/VOC2007)",
            status=2,
        )


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ------------------------------------------------------------ model files
def load_ssd_model(path):
    """Load a keras-ssd `.keras` file; `CLIError` if it is anything else."""
    _require_model_file(path)
    _quiet_tensorflow()
    import zipfile

    if not zipfile.is_zipfile(path):
        raise CLIError(
            f"--model-file {path} is not a keras-ssd model (not a .keras archive)"
        )
    from keras_ssd.config import SSDConfig
    from keras_ssd.saving import load_model

    try:
        model = load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad file here
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(
            f"--model-file {path} is not a keras-ssd model ({reason[:300]})"
        ) from None
    from keras_ssd.inference.model import get_config_from_model

    try:
        config = get_config_from_model(model)
    except ValueError:
        config = None
    if not isinstance(config, SSDConfig):
        raise CLIError(
            f"--model-file {path} is a Keras model but not a keras-ssd SSD model "
            "(it has no SSDConfig)"
        )
    return model


# ------------------------------------------------------------------ train
def add_train_arguments(p):
    data = p.add_argument_group("data")
    data.add_argument("--data", action="append", required=True, metavar="DIR",
                      help="Pascal VOC folder (e.g. VOCdevkit/VOC2007); repeat to "
                           "train on several (VOC07+12: --data VOC2007 --data VOC2012)")
    data.add_argument("--split", default="trainval",
                      help="image set of the --data folders (default: trainval)")
    data.add_argument("--val-data", metavar="DIR",
                      help="VOC folder to compute validation mAP on after each "
                           "--eval-every epochs (default: none)")
    data.add_argument("--val-split", default="test",
                      help="image set of --val-data (default: test)")
    data.add_argument("--classes", metavar="NAMES_OR_FILE",
                      help="comma-separated class names, or a text file with one "
                           "name per line (default: the 20 VOC classes)")
    data.add_argument("--workers", type=_non_negative_int, default=2,
                      help="data-loading threads (0 = load in the training loop; "
                           "default: 2)")
    model = p.add_argument_group("model")
    model.add_argument("--model", type=_model_name, default="ssd300",
                       metavar="{" + ",".join(MODEL_CHOICES) + "}",
                       help="SSD variant (default: ssd300)")
    model.add_argument("--backbone-weights", default="imagenet", metavar="{imagenet,none,PATH}",
                       help="backbone initialisation: 'imagenet' (Keras downloads the "
                            "weights), 'none' (random) or a .h5/.weights.h5 file "
                            "(default: imagenet; ignored by --model tiny)")
    opt = p.add_argument_group("optimisation (SGD with momentum, the paper's recipe)")
    opt.add_argument("--epochs", type=_positive_int, default=120,
                     help="training epochs (default: 120)")
    opt.add_argument("--batch-size", type=_positive_int, default=32,
                     help="images per step (default: 32)")
    opt.add_argument("--lr", type=_positive_float, default=1e-3,
                     help="base learning rate (default: 0.001)")
    opt.add_argument("--momentum", type=_unit_float, default=0.9,
                     help="SGD momentum (default: 0.9)")
    opt.add_argument("--weight-decay", type=_non_negative_float, default=5e-4,
                     help="L2 weight decay on convolution kernels (default: 0.0005)")
    opt.add_argument("--warmup-epochs", type=_non_negative_float, default=1.0,
                     help="linear learning-rate warm-up length in epochs (default: 1)")
    opt.add_argument("--lr-decay-epochs", default=None, metavar="E1,E2",
                     help="epochs after which the learning rate is multiplied by 0.1 "
                          "(default: at 2/3 and 5/6 of --epochs, as 80k and 100k of "
                          "120k iterations)")
    run = p.add_argument_group("run")
    run.add_argument("--checkpoint-dir", default="checkpoints", metavar="DIR",
                     help="where latest.keras and best.keras are written "
                          "(default: ./checkpoints)")
    run.add_argument("--resume", action="store_true",
                     help="continue from the latest checkpoint in --checkpoint-dir "
                          "(optimizer state and epoch count included)")
    run.add_argument("--eval-every", type=_positive_int, default=1, metavar="N",
                     help="evaluate --val-data every N epochs (default: 1)")
    run.add_argument("--no-augment", dest="augment", action="store_false",
                     help="disable the SSD data augmentation")
    run.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run.add_argument("--distribute", choices=("none", "mirrored", "multi-worker"),
                     default="none",
                     help="distribution strategy: none (one device, default), mirrored "
                          "(all GPUs of this machine; DataParallel under JAX) or "
                          "multi-worker (several machines, configured by TF_CONFIG; give "
                          "every worker the same --seed). --batch-size is the global "
                          "batch. See docs/distributed.md")


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


def run_train(args):
    # Check everything a typo can break before TensorFlow is imported.
    for root in args.data:
        _require_voc_split(root, args.split, "--data")
    if args.val_data:
        _require_voc_split(args.val_data, args.val_split, "--val-data")
    class_names = parse_classes(args.classes)
    backbone_weights = _check_backbone_weights(args.backbone_weights, args.model)
    decay_epochs = (None if args.lr_decay_epochs is None
                    else _parse_epochs_list(args.lr_decay_epochs, args.epochs))
    if os.path.exists(args.checkpoint_dir) and not os.path.isdir(args.checkpoint_dir):
        raise CLIError(f"--checkpoint-dir {args.checkpoint_dir} exists and is not a folder",
                       status=2)
    latest = os.path.join(args.checkpoint_dir, "latest.keras")
    if args.resume and not os.path.isfile(latest):
        raise CLIError(f"--resume: no checkpoint to resume from ({latest} not found)",
                       status=2)
    _quiet_tensorflow()
    import keras

    from keras_ssd.data import VOCDataset

    train_set = VOCDataset(args.data, split=args.split, class_names=class_names)
    val_set = (VOCDataset(args.val_data, split=args.val_split, class_names=class_names)
               if args.val_data else None)
    if len(train_set) == 0:
        raise CLIError(f"--data: split {args.split!r} lists no images")
    keras.utils.set_random_seed(args.seed)
    from keras_ssd.training.distribute import check_global_batch_size, get_strategy, strategy_scope

    try:
        strategy = get_strategy(args.distribute)
        check_global_batch_size(args.batch_size, strategy)
    except ValueError as e:
        raise CLIError(f"--distribute {args.distribute}: {e}", status=2) from None
    with strategy_scope(strategy):
        return _train_in_scope(args, strategy, train_set, val_set, class_names,
                               backbone_weights, decay_epochs, latest)


def _train_in_scope(args, strategy, train_set, val_set, class_names, backbone_weights,
                    decay_epochs, latest):
    import time

    from keras_ssd.training.distribute import prepare_model
    from keras_ssd.training.fit import train_detector

    initial_epoch = 0
    if args.resume:
        from keras_ssd.training.checkpoints import resume

        model, initial_epoch = resume(args.checkpoint_dir)
        if list(model.config.names) != list(class_names):
            raise CLIError(f"--resume: the checkpoint in {args.checkpoint_dir} was trained on "
                           f"classes {model.config.names}, not {class_names}")
        print(f"resuming {latest} at epoch {initial_epoch}")
    else:
        from keras_ssd.models import build_model

        kwargs = {"weight_decay": args.weight_decay}
        if presets.get(args.model).pretrained_backbone:
            kwargs["backbone_weights"] = backbone_weights
        model = build_model(args.model, class_names=class_names, **kwargs)
    model = prepare_model(model, strategy)
    print(f"training {model.name} ({model.count_params():,} parameters, "
          f"{model.config.image_size}px, {model.config.num_anchors} priors) on "
          f"{len(train_set)} images of {', '.join(args.data)}"
          + (f"; validating on {len(val_set)} images" if val_set is not None else ""))
    start = time.perf_counter()
    history = train_detector(
        model, train_set, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, momentum=args.momentum, warmup_epochs=args.warmup_epochs,
        lr_decay_epochs=decay_epochs, val_dataset=val_set, eval_every=args.eval_every,
        checkpoint_dir=args.checkpoint_dir, initial_epoch=initial_epoch,
        augment=args.augment, workers=args.workers, seed=args.seed, verbose=1,
    )
    seconds = time.perf_counter() - start
    logs = history.history
    print(f"\nfinished {len(logs.get('loss', []))} epochs in {seconds / 60:.1f} min; "
          f"final loss {logs['loss'][-1]:.4f}" if logs.get("loss") else "no epoch ran")
    maps = [m for m in logs.get("val_mAP", []) if m is not None]
    if maps:
        print(f"validation mAP (VOC07): last {maps[-1]:.4f}, best {max(maps):.4f}")
    print(f"checkpoints: {os.path.join(args.checkpoint_dir, 'latest.keras')}"
          + (f", {os.path.join(args.checkpoint_dir, 'best.keras')}" if maps else ""))
    print(f"next: keras-ssd evaluate --data DIR --split test --model-file "
          f"{os.path.join(args.checkpoint_dir, 'best.keras' if maps else 'latest.keras')}")
    return 0


# --------------------------------------------------------------- evaluate
def add_evaluate_arguments(p):
    p.add_argument("--data", required=True, metavar="DIR",
                   help="Pascal VOC folder to evaluate on (e.g. VOCdevkit/VOC2007)")
    p.add_argument("--split", default="test", help="image set (default: test)")
    p.add_argument("--model-file", required=True, metavar="M.keras",
                   help="a model saved by `keras-ssd train` (class names are read from it)")
    p.add_argument("--use-07-metric", action=argparse.BooleanOptionalAction, default=True,
                   help="VOC2007 11-point AP (default) or, with --no-use-07-metric, the "
                        "VOC2010+ area under the precision envelope")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="inference batch size (default: 8)")
    p.add_argument("--json", metavar="OUT", help="also write mAP and per-class AP to this JSON file")


def format_ap_table(class_names, ap, mean_ap):
    """The per-class AP table `evaluate` prints (NaN AP shows as `n/a`)."""
    width = max([len("class"), len("mAP")] + [len(n) for n in class_names])
    lines = [f"{'class'.ljust(width)}  AP", f"{'-' * width}  ------"]
    for name, value in zip(class_names, ap):
        shown = "n/a" if value != value else f"{100 * value:6.2f}"
        lines.append(f"{name.ljust(width)}  {shown}")
    lines.append(f"{'-' * width}  ------")
    lines.append(f"{'mAP'.ljust(width)}  {100 * mean_ap:6.2f}")
    return "\n".join(lines)


def run_evaluate(args):
    _require_voc_split(args.data, args.split, "--data")
    _require_model_file(args.model_file)
    if args.json and os.path.isdir(args.json):
        raise CLIError(f"--json {args.json} is a folder; give a file name", status=2)
    model = load_ssd_model(args.model_file)
    from keras_ssd.data import VOCDataset
    from keras_ssd.evaluation import evaluate
    from keras_ssd.inference.model import get_config_from_model

    class_names = get_config_from_model(model).names
    dataset = VOCDataset(args.data, split=args.split, class_names=class_names)
    result = evaluate(model, dataset, batch_size=args.batch_size,
                      use_07_metric=args.use_07_metric, verbose=1)
    ap = [float(a) for a in result["AP"]]
    metric = "VOC07 11-point" if args.use_07_metric else "VOC10 area"
    print(f"{len(dataset)} images, {metric} AP at IoU 0.5")
    print(format_ap_table(class_names, ap, float(result["mAP"])))
    if args.json:
        from keras_ssd.training.checkpoints import atomic_write_json

        payload = {
            "mAP": float(result["mAP"]),
            "AP": {n: (None if a != a else a) for n, a in zip(class_names, ap)},
            "use_07_metric": bool(args.use_07_metric),
            "num_images": len(dataset),
            "model_file": os.path.abspath(args.model_file),
            "data": os.path.abspath(args.data),
            "split": args.split,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json(payload, args.json)
        print(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------- predict
def add_predict_arguments(p):
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders whose images are all used")
    p.add_argument("--model-file", required=True, metavar="M.keras",
                   help="a model saved by `keras-ssd train`")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the annotated images and detections.json")
    p.add_argument("--threshold", type=_unit_float, default=0.5,
                   help="minimum detection score (default: 0.5)")
    p.add_argument("--iou-threshold", type=_unit_float, default=0.45,
                   help="non-maximum suppression IoU (default: 0.45)")
    p.add_argument("--top-k", type=_positive_int, default=200,
                   help="at most this many detections per image (default: 200)")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="images per forward pass (default: 8)")


def _expand_images(items):
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, n) for n in os.listdir(item)
                if n.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not found:
                raise CLIError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {item}",
                               status=2)
            paths.extend(found)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise CLIError(f"image not found: {item}", status=2)
    return paths


def _annotated_name(path, used):
    stem = os.path.splitext(os.path.basename(path))[0]
    name, k = f"{stem}.png", 1
    while name in used:
        name, k = f"{stem}_{k}.png", k + 1
    used.add(name)
    return name


def run_predict(args):
    _require_model_file(args.model_file)
    paths = _expand_images(args.images)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} exists and is not a folder", status=2)
    model = load_ssd_model(args.model_file)
    from keras_ssd.inference.predict import predict_images
    from keras_ssd.visualize import draw_detections

    os.makedirs(args.out, exist_ok=True)
    records, used = [], set()
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start:start + args.batch_size]
        results = predict_images(model, chunk, confidence_threshold=args.threshold,
                                 iou_threshold=args.iou_threshold, top_k=args.top_k,
                                 batch_size=args.batch_size)
        for path, det in zip(chunk, results):
            out_name = _annotated_name(path, used)
            draw_detections(path, det).save(os.path.join(args.out, out_name))
            records.append(detections_to_json(path, det, out_name))
            print(f"{path}: {len(det['scores'])} detections -> "
                  f"{os.path.join(args.out, out_name)}")
    json_path = os.path.join(args.out, "detections.json")
    _write_json({"model_file": os.path.abspath(args.model_file),
                 "threshold": args.threshold, "images": records}, json_path)
    print(f"wrote {len(records)} annotated images and {json_path}")
    return 0


def detections_to_json(path, det, annotated=None):
    """One image's detections as JSON-ready lists."""
    record = {
        "image": os.path.abspath(path) if isinstance(path, str) else str(path),
        "detections": [
            {"label": int(lab), "name": str(name), "score": round(float(s), 5),
             "box": [round(float(v), 2) for v in box]}
            for box, s, lab, name in zip(det["boxes"], det["scores"], det["labels"],
                                         det["names"])
        ],
    }
    if annotated is not None:
        record["annotated"] = annotated
    return record


def _write_json(obj, path):
    import json

    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------- demo
def add_demo_arguments(p):
    p.add_argument("--out", default="keras_ssd_demo", metavar="DIR",
                   help="output folder (default: ./keras_ssd_demo)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="override the demo's number of epochs (fewer = faster, worse)")
    p.add_argument("--train-images", type=_positive_int, default=None, metavar="N",
                   help="override the number of synthetic training images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run_demo(args):
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CLIError(f"--out {args.out} exists and is not a folder", status=2)
    _quiet_tensorflow()
    from keras_ssd.demo import run_demo as demo

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.train_images is not None:
        overrides["num_train"] = args.train_images
    demo(args.out, seed=args.seed, verbose=1, **overrides)
    return 0


# ------------------------------------------------------------------ parser
SUBCOMMANDS = [
    ("train", "train an SSD on Pascal VOC-format data",
     add_train_arguments, run_train),
    ("evaluate", "VOC mAP of a trained model on a VOC-format dataset",
     add_evaluate_arguments, run_evaluate),
    ("predict", "detect objects in images; writes annotated images and JSON",
     add_predict_arguments, run_predict),
    ("demo", "synthetic data -> train a tiny SSD -> evaluate -> annotated images "
             "(3 to 5 minutes on 2 CPU cores)",
     add_demo_arguments, run_demo),
]

from keras_ssd.export import EXPORT_HELP, add_export_arguments, run_export  # noqa: E402
SUBCOMMANDS.append(("export", EXPORT_HELP, add_export_arguments, run_export))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ssd",
        description="SSD object detection for Keras 3: train, evaluate, predict, demo.",
        epilog="Run `keras-ssd COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"keras-ssd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def _error(command, message):
    prefix = f"keras-ssd {command}" if command else "keras-ssd"
    message = " ".join(str(message).split())
    print(f"{prefix}: error: {message}", file=sys.stderr)


def main(argv=None):
    """Entry point of `keras-ssd`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    show_traceback = os.environ.get("KERAS_SSD_TRACEBACK", "").lower() in ("1", "true", "yes")
    try:
        return int(args._run(args) or 0)
    except CLIError as e:
        if show_traceback:
            raise
        _error(args.command, e)
        return e.status
    except (ValueError, OSError) as e:
        # Bad data or files found past the argument checks (keras_ssd raises
        # ValueError / DataError naming the file and the problem).
        if show_traceback:
            raise
        _error(args.command, e)
        return 1
    except KeyboardInterrupt:
        _error(args.command, "interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
