"""What the subcommands share: argument types, the checks that run before
TensorFlow is imported, `CLIError`, and loading a `--model-file`.

Nothing here imports Keras at module level: `keras-ssd --help` and argument
errors must answer without loading TensorFlow. Helpers that need a model
import keras-ssd's Keras parts inside the function.
"""

import argparse
import os
import sys
import warnings

from keras_ssd import presets
from keras_ssd.classes import VOC_CLASSES


#: `--model` choices: the variants of `keras_ssd.presets`.
MODEL_CHOICES = presets.names()


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status `status`."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------- argument types
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


def _model_name(text):
    """`--model` type: a variant name or alias -> its canonical name (a
    deprecated 0.1 spelling is said on stderr, where a user sees it)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        preset = presets.find(text)
    for warning in caught:
        print(f"keras-ssd: --model: {warning.message}", file=sys.stderr)
    if preset is None:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(MODEL_CHOICES)})")
    return preset.name


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


# ------------------------------------------------- checks before TensorFlow
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


# ------------------------------------------------------- dataset formats
#: `--format` choices: `auto` tells the format from the layout.
FORMAT_CHOICES = ("auto", "voc", "coco", "yolo", "csv")

#: The split each format reads when `--split` is not given, for training and
#: for evaluation (None: a COCO / CSV folder's one annotation file).
FORMAT_SPLITS = {"yolo": ("train", "val"), "coco": (None, None), "csv": (None, None)}

_FILE_SUFFIXES = (".csv", ".json", ".yaml", ".yml")


class DefaultSplit(str):
    """A `--split` default: VOC's image-set name, which the other formats
    replace with their own (`FORMAT_SPLITS`); a split the user gives is a
    plain `str` and is used as it is."""


def add_format_argument(group):
    """Add `--format` to an argument group (or parser)."""
    group.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                       help="dataset format of --data: voc (Annotations/ + ImageSets/), "
                            "coco (an instances .json), yolo (data.yaml, images/ + "
                            "labels/), csv (image_path,xmin,ymin,xmax,ymax,class_name "
                            "rows) or auto (default: told from the layout)")


#: VOC's default image set, for training and for evaluation.
VOC_SPLITS = ("trainval", "test")


def add_dataset_arguments(group, *, evaluation=False, data_help="", repeatable=True,
                          required=True, classes_help=None):
    """Add the dataset options `train`, `evaluate` and `anchors` share:
    `--data`, `--format`, `--split` and (when `classes_help` is given)
    `--classes`.

    Args:
        group: an argument group or parser.
        evaluation: the default split is the evaluation one (VOC `test`,
            YOLO `val`) instead of the training one (`trainval`, `train`).
        data_help: what follows `--data`'s common help.
        repeatable: `--data` may be given several times (VOC07+12).
        required: `--data` is required by argparse.
        classes_help: the end of `--classes`' help, after "(default: ".
    """
    group.add_argument("--data", action="append" if repeatable else "store",
                       required=required, metavar="DIR",
                       help="dataset folder or annotation file (see --format), e.g. "
                            "VOCdevkit/VOC2007" + data_help)
    add_format_argument(group)
    voc, yolo = VOC_SPLITS[evaluation], FORMAT_SPLITS["yolo"][evaluation]
    group.add_argument("--split", default=DefaultSplit(voc),
                       help=f"split of --data (default: {voc} for VOC, {yolo} for YOLO; "
                            "a COCO or CSV folder's only annotation file)")
    if classes_help is not None:
        group.add_argument("--classes", metavar="NAMES_OR_FILE",
                           help="comma-separated class names, or a text file with one "
                                "name per line (default: " + classes_help)


def require_datasets(paths, fmt, split, option="--data"):
    """`_require_dataset` for each of `paths` (several only for VOC): their format."""
    formats = [_require_dataset(path, fmt, split, option) for path in paths]
    if len(paths) > 1 and set(formats) != {"voc"}:
        raise CLIError(f"{option}: only Pascal VOC folders can be given several times "
                       f"(VOC07+12); got {', '.join(sorted(set(formats)))} data", status=2)
    return formats[0]


def class_options(classes, fmt):
    """`(class_names, class_file)` of `--classes` for a dataset of format `fmt`:
    `class_names` None leaves them to the dataset (a CSV class file, or no
    `--classes` for a format that names its own)."""
    class_file = class_file_option(classes, fmt)
    if class_file is not None or (classes is None and fmt != "voc"):
        return None, class_file
    return parse_classes(classes), None


def add_project_arguments(group, name, what):
    """Add `--project DIR` and `--name NAME`: the command writes to the first
    of PROJECT/NAME, PROJECT/NAME2, ... that does not exist yet (`keras_ssd.runs`)."""
    group.add_argument("--project", default="runs", metavar="DIR",
                       help=f"parent folder of the {what} folders (default: runs)")
    group.add_argument("--name", default=name,
                       help=f"{what} folder name: each run writes to the first of "
                            "PROJECT/NAME, PROJECT/NAME2, PROJECT/NAME3, ... that does "
                            f"not exist yet (default: {name})")


def add_preset_argument(group, help):
    """Add `--preset NAME` (a pretrained detector of `keras_ssd.presets`)."""
    group.add_argument("--preset", metavar="{" + ",".join(presets.pretrained_names()) + "}",
                       help=help)


def require_preset(name):
    """The `PretrainedPreset` called `name`; `CLIError` if there is none."""
    preset = presets.find_pretrained(name)
    if preset is None:
        raise CLIError(f"--preset: unknown pretrained preset {name!r}; choose one of "
                       f"{', '.join(presets.pretrained_names())}", status=2)
    return preset


def resolve_split(fmt, split, evaluation=False):
    """The split to read: `split`, unless it is VOC's default and `fmt` is not VOC."""
    if isinstance(split, DefaultSplit) and fmt in FORMAT_SPLITS:
        return FORMAT_SPLITS[fmt][1 if evaluation else 0]
    return None if split is None else str(split)


def _require_dataset(path, fmt, split, option):
    """Check `--data PATH` before TensorFlow; returns its format (sniffed for auto).

    A missing path, a layout no format fits and a VOC folder without its
    split file fail here with one line naming the option and the path.
    """
    if not os.path.exists(path):
        kind = "file" if str(path).lower().endswith(_FILE_SUFFIXES) else "folder"
        raise CLIError(f"{option}: {kind} not found: {path}", status=2)
    if fmt == "auto":
        from keras_ssd.data.errors import DataError
        from keras_ssd.data.formats import sniff_format

        try:
            fmt = sniff_format(path)
        except DataError:
            if os.path.isdir(path):
                raise CLIError(
                    f"{option} {path}: cannot tell the dataset format: no split file "
                    f"ImageSets/Main/{split}.txt (Pascal VOC), no data.yaml or images/ + "
                    "labels/ (YOLO), no .json (COCO), no .csv (CSV); give --format",
                    status=2) from None
            raise CLIError(f"{option} {path}: cannot tell the dataset format of this file "
                           "(.json: COCO, .yaml: YOLO, .csv: CSV); give --format",
                           status=2) from None
    if fmt == "voc":
        _require_voc_split(path, split, option)
    return fmt


def class_file_option(value, fmt):
    """`--classes FILE.csv` of a CSV dataset: a keras-retinanet `class_name,id`
    file, passed to the reader as it is (None otherwise)."""
    if (fmt == "csv" and value is not None and str(value).lower().endswith(".csv")
            and os.path.isfile(value)):
        return str(value)
    return None


def add_on_error_argument(group, evaluation=False):
    """Add `--on-error {raise,skip}`: the dataset readers' (and, in training,
    `SSDSequence`'s) `on_error`."""
    extra = ("every image is decoded once up front, and unreadable ones are "
             "left out of the score" if evaluation else
             "an image that fails to load mid-epoch is replaced by the next one")
    group.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                       help="bad data (a broken label file or annotation, an unreadable "
                            "image): raise stops with one error naming the file "
                            f"(default); skip logs it, leaves it out and goes on ({extra})")


def evaluation_reading(on_error):
    """Reader options of a dataset that is scored: with skip, every image is
    decoded up front so that an unreadable one is left out of the score
    instead of stopping it."""
    return {"on_error": "skip", "check_images": "decode"} if on_error == "skip" else {}


def load_cli_dataset(paths, fmt, split, class_names, option, class_file=None,
                     **reader_options):
    """Read `--data` with `keras_ssd.data.load_dataset` (after `_require_dataset`).

    `paths` is one path or a list (several only for VOC); `class_names` None
    leaves them to the format (YOLO's data.yaml, a CSV's class file or rows);
    `reader_options` go to the reader (`on_error`, `check_images`; a reader
    that skips logs each record it leaves out and the count).
    """
    from keras_ssd.data.formats import load_dataset

    if isinstance(paths, (list, tuple)) and len(paths) == 1:
        paths = paths[0]
    if isinstance(paths, (list, tuple)) and fmt != "voc":
        raise CLIError(f"{option}: only Pascal VOC folders can be given several times "
                       f"(VOC07+12); {fmt} data is one --data", status=2)
    kwargs = {"class_file": class_file} if class_file is not None else {}
    return load_dataset(paths, format=fmt, split=split, class_names=class_names,
                        **kwargs, **reader_options)


def _require_out_folder(path, option="--out"):
    """An output folder may be missing (it is created) but not a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise CLIError(f"{option} {path} exists and is not a folder", status=2)


def _quiet_tensorflow():
    """Before the first Keras import: check that the module of Keras' backend
    is installed (`CLIError` if not), then import Keras without TensorFlow's
    start-up logs (unless `--verbose`; see `keras_ssd.cli.quiet`)."""
    _require_keras_backend()
    from keras_ssd.cli.quiet import quiet_import

    quiet_import()


#: The module each Keras backend imports.
_BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch",
                    "openvino": "openvino", "numpy": "numpy"}


def _configured_keras_backend():
    """The backend Keras will load, read as Keras reads it (`KERAS_BACKEND`,
    else `backend` in `$KERAS_HOME/keras.json` or `~/.keras/keras.json`, else
    "tensorflow"), without importing Keras; `(name, where it was set)`."""
    import json

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"], "KERAS_BACKEND"
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    path = os.path.join(os.path.expanduser(home), "keras.json")
    try:
        with open(path) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    if name:
        return name, path
    return "tensorflow", "the default"


def _require_keras_backend():
    """`CLIError` (one line) when Keras' backend is not installed: in a JAX-only
    install Keras still defaults to TensorFlow unless told otherwise."""
    import importlib.util
    import sys

    if "keras" in sys.modules:  # already imported: its backend loaded
        return
    name, where = _configured_keras_backend()
    module = _BACKEND_MODULES.get(name)
    if module is None:
        return  # Keras itself names the valid backends
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        others = [b for b in ("jax", "tensorflow", "torch") if b != name]
        raise CLIError(
            f"Keras' backend is {name!r} ({where}), but {module} is not installed: "
            f"install it, or choose an installed backend with KERAS_BACKEND "
            f"(for example KERAS_BACKEND={others[0]})"
        )


# -------------------------------------------------------------- model files
def _load_model_file(path):
    """Load the `.keras` file of `--model-file`; `CLIError` if it cannot be."""
    _require_model_file(path)
    _quiet_tensorflow()
    import zipfile

    if not zipfile.is_zipfile(path):
        raise CLIError(
            f"--model-file {path} is not a keras-ssd model (not a .keras archive)"
        )
    from keras_ssd.saving import load_model

    try:
        return load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001 - any loading failure is a bad file here
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(
            f"--model-file {path} is not a keras-ssd model ({reason[:300]})"
        ) from None


def load_ssd_model(path):
    """Load a keras-ssd `.keras` file; `CLIError` if it is anything else."""
    model = _load_model_file(path)
    from keras_ssd.inference.predict import check_model

    try:
        check_model(model)
    except ValueError:
        raise CLIError(
            f"--model-file {path} is a Keras model but not a keras-ssd SSD model "
            "(it has no SSDConfig)"
        ) from None
    return model


# -------------------------------------------------------------- input size
def _image_size(text):
    """`--image-size` type: `S` or `HxW` (height x width) -> int or `(h, w)`."""
    parts = str(text).strip().lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected S or HxW in pixels (height x width, e.g. 300x540), got {text!r}")
    if len(values) == 1 or values[0] == values[1]:
        return values[0]
    return tuple(values)


def add_image_size_argument(group, training=False):
    """Add `--image-size S|HxW` to an argument group (or parser)."""
    if training:
        text = ("network input size: S (square) or HxW, height x width (e.g. 300x540 "
                "for 16:9 images); the feature maps and priors follow from the network "
                "(default: the model's own, e.g. 300 for ssd300)")
    else:
        text = ("run the model at this input size instead of the one it was trained "
                "at: S or HxW, height x width (e.g. 300x540); the weights are the same, "
                "the priors follow the new feature maps (training models only)")
    group.add_argument("--image-size", type=_image_size, default=None, metavar="S|HxW",
                       help=text)


def model_at_image_size(model, image_size, option="--image-size"):
    """`model` rebuilt at `image_size` (its weights kept), or as it is for None."""
    if image_size is None:
        return model
    try:
        return model.at_image_size(image_size)
    except ValueError as e:
        raise CLIError(f"{option} {image_size}: {e}", status=2) from None
