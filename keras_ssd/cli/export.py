"""`keras-ssd export`: a trained model as a SavedModel, ONNX or LiteRT
detector with decoding and NMS inside (`keras_ssd.export.export`)."""

import argparse
import importlib.util

from keras_ssd.cli.args import (
    CLIError,
    _load_model_file,
    _positive_int,
    _require_model_file,
    _unit_float,
    add_image_size_argument,
    model_at_image_size,
)
# keras_ssd.export imports TensorFlow only inside its functions, so its
# constants can build the parser.
from keras_ssd.export import (
    DEFAULT_ONNX_OPSET,
    EXPORT_EXTRA,
    FORMATS,
    INPUT_DTYPES,
    OUTPUT_NAMES,
    normalize_format,
)
from keras_ssd.quantize import (
    CALIBRATION_EXTENSIONS,
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_PERCENTILE,
    DEFAULT_NUM_CALIBRATION,
    QUANTIZABLE_FORMATS,
    QUANTIZE_MODES,
    check_calibration_method,
)

HELP = ("export a trained model as a SavedModel, ONNX or LiteRT detector "
        "with decoding and NMS inside")


def _format_argument(text):
    try:
        return normalize_format(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(FORMATS)} (or saved_model, tflite), got {text!r}"
        ) from None


def add_arguments(p):
    p.add_argument("--model-file", required=True, metavar="M.keras",
                   help="a model saved by `keras-ssd train` (a training or an "
                        "inference .keras model)")
    p.add_argument("--format", type=_format_argument, default="tf_saved_model",
                   metavar="{" + ",".join(FORMATS) + "}",
                   help="artifact type (default: tf_saved_model)")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="where to write: a folder for tf_saved_model, a .onnx or "
                        ".tflite file otherwise")
    p.add_argument("--input-dtype", choices=INPUT_DTYPES, default="float32",
                   help="dtype of the artifact's RGB image input (default: float32, "
                        "values 0..255)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="fixed batch size (default: dynamic for tf_saved_model and "
                        "onnx, 1 for litert)")
    p.add_argument("--threshold", type=_unit_float, default=None,
                   help="minimum detection score kept (default: the model's decoder "
                        "setting, else 0.01)")
    p.add_argument("--iou-threshold", type=_unit_float, default=None,
                   help="non-maximum suppression IoU (default: 0.45)")
    p.add_argument("--top-k", type=_positive_int, default=None,
                   help="detections per image, the length of the outputs (default: 200)")
    p.add_argument("--max-candidates-per-class", type=_positive_int, default=None,
                   help="candidates per class entering NMS (default: 400)")
    add_image_size_argument(p)
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset (default: {DEFAULT_ONNX_OPSET}; onnx only)")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default=None,
                   help="post-training quantization of the network (decoding and NMS "
                        f"stay float32); {' and '.join(QUANTIZABLE_FORMATS)} only; "
                        "needs --calibration-data")
    p.add_argument("--calibration-data", default=None, metavar="DIR",
                   help="with --quantize: a folder of representative images "
                        "(searched recursively; e.g. a VOC folder or its JPEGImages)")
    p.add_argument("--num-calibration", type=_positive_int, default=None, metavar="N",
                   help="with --quantize: the most calibration images used, an evenly "
                        f"spread subset (default: {DEFAULT_NUM_CALIBRATION})")
    p.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default=None,
                   help="with --quantize: how activation ranges are read: minmax (the "
                        "default) spans every value; percentile clips the rarest "
                        "values at both ends (a trade measured in "
                        "docs/deployment.md)")
    p.add_argument("--calibration-percentile", type=float, default=None, metavar="P",
                   help="with --calibration-method percentile: the central percent of "
                        f"each activation's values kept (default: "
                        f"{DEFAULT_CALIBRATION_PERCENTILE})")


def _load_detector(path):
    """Load a keras-ssd `.keras` file to export."""
    from keras_ssd.export import check_model

    model = _load_model_file(path)
    try:
        check_model(model)
    except ValueError as e:
        raise CLIError(f"--model-file {path}: {str(e).removeprefix('export: ')}") from None
    return model


def _check_quantize_arguments(args):
    """--quantize, --calibration-data and --num-calibration, before TensorFlow."""
    from keras_ssd.cli.args import _require_dir
    from keras_ssd.quantize import calibration_files

    if not args.quantize:
        given = [option for option, value in (
            ("--calibration-data", args.calibration_data),
            ("--num-calibration", args.num_calibration),
            ("--calibration-method", args.calibration_method),
            ("--calibration-percentile", args.calibration_percentile))
            if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise CLIError(f"{' and '.join(given)} only {verb} with --quantize int8",
                           status=2)
        return
    if args.format not in QUANTIZABLE_FORMATS:
        raise CLIError(
            f"--quantize {args.quantize}: --format {args.format} cannot be quantized; "
            f"use --format {' or '.join(QUANTIZABLE_FORMATS)}", status=2)
    if args.calibration_data is None:
        raise CLIError(f"--quantize {args.quantize} needs --calibration-data DIR, a "
                       "folder of images like those the detector will see", status=2)
    try:
        check_calibration_method(args.calibration_method, args.calibration_percentile)
    except ValueError as e:
        message = str(e).removeprefix("export: ").replace(
            "calibration_percentile", "--calibration-percentile").replace(
            "calibration_method='percentile'", "--calibration-method percentile")
        raise CLIError(message, status=2) from None
    _require_dir(args.calibration_data, "--calibration-data")
    if not calibration_files(args.calibration_data):
        raise CLIError(
            f"--calibration-data: no images ({', '.join(CALIBRATION_EXTENSIONS)}) in "
            f"folder {args.calibration_data}", status=2)


def run(args):
    """Check the arguments, load the model, write the artifact."""
    from keras_ssd.export import (
        TENSORFLOW_MISSING,
        _check_path,
        export,
        tensorflow_installed,
    )

    if not tensorflow_installed():  # a JAX-only install: say so before loading anything
        raise CLIError(TENSORFLOW_MISSING)
    _require_model_file(args.model_file)
    try:
        _check_path(args.out, args.format)
    except ValueError as e:
        raise CLIError(f"--out: {str(e).removeprefix('export: ')}", status=2) from None
    if args.opset is not None and args.format != "onnx":
        raise CLIError(
            f"--opset only applies to --format onnx, not {args.format}", status=2
        )
    _check_quantize_arguments(args)
    if args.format == "onnx":
        needed = ("tf2onnx", "onnx") + (("onnxruntime",) if args.quantize else ())
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise CLIError(
                f"--format onnx needs {' and '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed: {EXPORT_EXTRA}"
            )
    model = model_at_image_size(_load_detector(args.model_file), args.image_size)
    options = {
        "confidence_threshold": args.threshold,
        "iou_threshold": args.iou_threshold,
        "top_k": args.top_k,
        "max_candidates_per_class": args.max_candidates_per_class,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if args.quantize:
        options.update(quantize=args.quantize, calibration=args.calibration_data,
                       num_calibration=args.num_calibration,
                       calibration_method=args.calibration_method,
                       calibration_percentile=args.calibration_percentile)
    path = export(model, args.out, args.format, input_dtype=args.input_dtype,
                  batch_size=args.batch_size, opset=args.opset, **options)
    print(f"wrote {args.format}{' ' + args.quantize if args.quantize else ''} "
          f"detector to {path} (input images "
          f"{args.input_dtype}; outputs {', '.join(OUTPUT_NAMES)})")
    return 0
