"""`keras-ssd anchors`: do a model's priors fit a dataset's boxes (VOC, COCO,
YOLO or CSV)?

Prints `keras_ssd.anchor_fit`'s report (share of boxes matched by a prior at
the IoU threshold, best-IoU quantiles per class and size, the boxes no prior
reaches, suggested min/max sizes); `--json` and `--plot` write it out.
Numpy only: no TensorFlow is imported.
"""

import argparse
import json
import os

from keras_ssd.cli.args import (
    MODEL_CHOICES,
    CLIError,
    _model_name,
    _non_negative_int,
    add_dataset_arguments,
    class_options,
    load_cli_dataset,
    require_datasets,
    resolve_split,
)

HELP = "check how well a model's priors fit a dataset's boxes (and suggest sizes)"


def _iou_threshold(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_arguments(p):
    data = p.add_argument_group("data")
    add_dataset_arguments(
        data, data_help="; VOC folders may be repeated to measure several together",
        classes_help="the 20 VOC classes for VOC; the dataset's own for COCO, YOLO "
                     "and CSV)")
    model = p.add_argument_group("priors")
    model.add_argument("--model", type=_model_name, default="ssd300",
                       metavar="{" + ",".join(MODEL_CHOICES) + "}",
                       help="SSD variant whose priors are measured (default: ssd300)")
    model.add_argument("--config", metavar="CONFIG.yaml",
                       help="an SSDConfig YAML file (SSDConfig.to_yaml) to measure "
                            "instead of --model's priors")
    model.add_argument("--iou", type=_iou_threshold, default=0.5,
                       help="IoU from which a prior is a positive, as in training "
                            "(default: 0.5)")
    report = p.add_argument_group("report")
    report.add_argument("--examples", type=_non_negative_int, default=10, metavar="N",
                        help="unreachable boxes to list, worst first (default: 10)")
    report.add_argument("--size-buckets", choices=("octave", "coco"), default="octave",
                        help="box size buckets: octaves of sqrt(w*h) in input pixels "
                             "(default) or COCO's small/medium/large (32, 96 px)")
    report.add_argument("--no-suggest", dest="suggest", action="store_false",
                        help="skip the search for better min/max sizes")
    report.add_argument("--json", metavar="OUT",
                        help="also write the report to this JSON file")
    report.add_argument("--plot", metavar="OUT.png",
                        help="also write a histogram of the best IoUs (needs matplotlib)")


def _require_output_file(path, option):
    if os.path.isdir(path):
        raise CLIError(f"{option} {path} is a folder; give a file name", status=2)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise CLIError(f"{option} {path}: {parent} is not a folder", status=2)


def _load_config(args, num_classes):
    from keras_ssd.config import SSDConfig

    if args.config is None:
        return SSDConfig.from_preset(args.model, num_classes=num_classes)
    try:
        return SSDConfig.from_yaml(args.config)
    except ValueError as e:
        raise CLIError(f"--config {args.config}: {e}", status=2) from None


def run(args):
    # Every check a typo can break, before reading the dataset.
    fmt = require_datasets(args.data, args.format, args.split)
    split = resolve_split(fmt, args.split)
    class_names, class_file = class_options(args.classes, fmt)
    for path, option in ((args.json, "--json"), (args.plot, "--plot")):
        if path:
            _require_output_file(path, option)
    if args.config is not None and not os.path.isfile(args.config):
        raise CLIError(f"--config: file not found: {args.config}", status=2)

    from keras_ssd.data import anchor_fit, plot_anchor_fit

    dataset = load_cli_dataset(args.data, fmt, split, class_names, "--data", class_file)
    where = f"split {split!r}" if split else args.data[0]
    if len(dataset) == 0:
        raise CLIError(f"--data: {where} lists no images")
    if sum(len(r["boxes"]) for r in dataset.records) == 0:
        raise CLIError(f"--data: {where} has no annotated boxes to measure")
    config = _load_config(args, len(dataset.class_names))
    source = args.config if args.config else f"--model {args.model}"
    print(f"{', '.join(args.data)} ({fmt}{', ' + split if split else ''}), "
          f"priors of {source}")
    report = anchor_fit(dataset, config, iou_threshold=args.iou,
                        size_buckets=args.size_buckets, suggest=args.suggest,
                        max_examples=args.examples)
    print(report.format())
    if args.json:
        payload = report.to_dict()
        payload.update(data=[os.path.abspath(d) for d in args.data], format=fmt,
                       split=split, priors=source)
        parent = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(parent, exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        import logging

        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        data_logger = logging.getLogger("keras_ssd.data")
        quiet = data_logger.disabled
        data_logger.disabled = True  # the line below says it instead
        try:
            written = plot_anchor_fit(report, args.plot)
        finally:
            data_logger.disabled = quiet
        if written is None:
            print("plot: skipped (matplotlib is not installed: pip install matplotlib)")
        else:
            print(f"wrote {args.plot}")
    return 0
