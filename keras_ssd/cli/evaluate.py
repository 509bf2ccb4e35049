"""`keras-ssd evaluate`: VOC mAP of a trained model on a VOC, COCO, YOLO or CSV dataset."""

import argparse
import os

from keras_ssd.cli.args import (
    CLIError,
    DefaultSplit,
    _positive_int,
    _require_dataset,
    _require_model_file,
    add_format_argument,
    add_image_size_argument,
    load_cli_dataset,
    load_ssd_model,
    model_at_image_size,
    resolve_split,
)

HELP = "VOC mAP of a trained model on a VOC, COCO, YOLO or CSV dataset"


def add_arguments(p):
    p.add_argument("--data", required=True, metavar="DIR",
                   help="dataset folder or annotation file to evaluate on (e.g. "
                        "VOCdevkit/VOC2007; see --format). Its class names must be the "
                        "model's")
    add_format_argument(p)
    p.add_argument("--split", default=DefaultSplit("test"),
                   help="split (default: test for VOC, val for YOLO; a COCO or CSV "
                        "folder's only annotation file)")
    p.add_argument("--model-file", required=True, metavar="M.keras",
                   help="a model saved by `keras-ssd train` (class names are read from it)")
    p.add_argument("--use-07-metric", action=argparse.BooleanOptionalAction, default=True,
                   help="VOC2007 11-point AP (default) or, with --no-use-07-metric, the "
                        "VOC2010+ area under the precision envelope")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="inference batch size (default: 8)")
    add_image_size_argument(p)
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


def run(args):
    fmt = _require_dataset(args.data, args.format, args.split, "--data")
    split = resolve_split(fmt, args.split, evaluation=True)
    _require_model_file(args.model_file)
    if args.json and os.path.isdir(args.json):
        raise CLIError(f"--json {args.json} is a folder; give a file name", status=2)
    model = model_at_image_size(load_ssd_model(args.model_file), args.image_size)
    from keras_ssd.evaluation import evaluate
    from keras_ssd.inference.model import get_config_from_model

    class_names = get_config_from_model(model).names
    dataset = load_cli_dataset(args.data, fmt, split, list(class_names), "--data")
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
            "format": fmt,
            "split": split,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json(payload, args.json)
        print(f"wrote {args.json}")
    return 0
