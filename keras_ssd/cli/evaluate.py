"""`keras-ssd evaluate`: VOC mAP (or COCO AP) of a trained or pretrained model
on a VOC, COCO, YOLO or CSV dataset."""

import argparse
import os
import sys

from keras_ssd import presets

from keras_ssd.cli.args import (
    CLIError,
    _positive_int,
    _require_dataset,
    _quiet_tensorflow,
    _require_model_file,
    _require_out_folder,
    add_dataset_arguments,
    add_image_size_argument,
    add_on_error_argument,
    add_preset_argument,
    add_project_arguments,
    evaluation_reading,
    load_cli_dataset,
    load_ssd_model,
    model_at_image_size,
    require_preset,
    resolve_split,
)

HELP = "VOC mAP (or COCO AP) of a trained model on a VOC, COCO, YOLO or CSV dataset"


def add_arguments(p):
    add_dataset_arguments(p, evaluation=True, repeatable=False,
                          data_help=". Its class names must be the model's")
    add_on_error_argument(p, evaluation=True)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-file", metavar="M.keras",
                       help="a model saved by `keras-ssd train` or `keras-ssd convert` "
                            "(class names are read from it)")
    add_preset_argument(model,
                       help="a pretrained detector, downloaded and converted once "
                            "(cached in $KERAS_SSD_CACHE_DIR); ssd300_coco is scored "
                            "against a COCO annotation file by category id")
    p.add_argument("--metric", choices=("voc", "coco"), default="voc",
                   help="voc: VOC AP at IoU 0.5 (default); coco: COCO AP@[.5:.95] via "
                        "pycocotools (pip install 'keras-ssd[coco]')")
    p.add_argument("--use-07-metric", action=argparse.BooleanOptionalAction, default=True,
                   help="VOC2007 11-point AP (default) or, with --no-use-07-metric, the "
                        "VOC2010+ area under the precision envelope")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="inference batch size (default: 8)")
    add_image_size_argument(p)
    p.add_argument("--out", metavar="DIR",
                   help="folder for report.json, pr_curve.png and confusion_matrix.png "
                        "(default: a fresh PROJECT/NAME, NAME2, ... folder)")
    add_project_arguments(p, "evaluate", "report")
    p.add_argument("--json", metavar="OUT",
                   help="also write the report's JSON to this file")


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
    from keras_ssd.artifact_metadata import is_artifact_path

    artifact = args.preset is None and is_artifact_path(args.model_file)
    if args.preset is not None:
        require_preset(args.preset)
    elif not (artifact and os.path.exists(args.model_file)):
        _require_model_file(args.model_file)
    if args.json and os.path.isdir(args.json):
        raise CLIError(f"--json {args.json} is a folder; give a file name", status=2)
    if args.out is not None:
        _require_out_folder(args.out, "--out")
    else:
        _require_out_folder(args.project, "--project")
    if artifact:
        return _evaluate_artifact(args, fmt, split)
    if args.preset is not None:
        _quiet_tensorflow()
        from keras_ssd.models.pretrained import from_preset

        model = from_preset(args.preset)
    else:
        model = load_ssd_model(args.model_file)
    model = model_at_image_size(model, args.image_size)
    from keras_ssd.evaluation import evaluate

    config = model.config
    # A model whose labels are COCO category ids (ssd300_coco) takes the
    # dataset's own categories and is matched to them by id (COCO) or name.
    wanted = None if getattr(config, "category_ids", None) is not None else \
        list(config.names)
    dataset = load_cli_dataset(args.data, fmt, split, wanted, "--data",
                               **evaluation_reading(args.on_error))
    result = evaluate(model, dataset, batch_size=args.batch_size,
                      use_07_metric=args.use_07_metric, metric=args.metric,
                      # the progress bar on a terminal only (a pipe gets its escapes)
                      verbose=1 if _isatty(sys.stdout) else 0,
                      return_detections=True)
    class_names = list(result["AP_by_name"])
    detections = result.pop("detections")
    return _report(args, fmt, split, dataset, result, detections, class_names)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _evaluate_artifact(args, fmt, split):
    """`--model-file` an exported artifact: its stored metadata gives the
    input size, letterbox and class names; VOC metric only."""
    if args.metric != "voc":
        raise CLIError("--metric coco: exported artifacts are scored with the VOC metric "
                       "and the report's COCO-style AP50-95", status=2)
    if args.image_size is not None:
        raise CLIError("--image-size: an exported artifact has a fixed input size",
                       status=2)
    _quiet_tensorflow()
    from keras_ssd.evaluation.voc import voc_map
    from keras_ssd.inference.artifact import ArtifactDetector

    try:
        detector = ArtifactDetector(args.model_file)
    except ValueError as e:
        raise CLIError(f"--model-file {e}") from None
    dataset = load_cli_dataset(args.data, fmt, split, detector.class_names, "--data",
                               **evaluation_reading(args.on_error))
    detections = []
    for start in range(0, len(dataset), args.batch_size):
        images = [dataset.load_image(i)
                  for i in range(start, min(len(dataset), start + args.batch_size))]
        detections += detector.detect(images, batch_size=args.batch_size)
    ground_truths = [dataset[i] for i in range(len(dataset))]
    names = detector.class_names
    result = voc_map(detections, ground_truths, num_classes=len(names), iou_threshold=0.5,
                     use_07_metric=args.use_07_metric, class_names=names)
    quant = detector.metadata.get("quantize")
    print(f"{detector.format}{' ' + quant if quant else ''} artifact {args.model_file}: "
          f"{detector.image_size[0]}x{detector.image_size[1]}"
          f"{' letterboxed' if detector.letterbox else ''}, {len(names)} classes")
    return _report(args, fmt, split, dataset, result, detections, names)


def _report(args, fmt, split, dataset, result, detections, class_names):
    ap = [float(a) for a in result["AP"]]
    if args.metric == "coco":
        print(f"{len(dataset)} images, COCO AP@[.5:.95] (AP50 {100 * result['AP50']:.2f}, "
              f"AP75 {100 * result['AP75']:.2f})")
    else:
        metric = "VOC07 11-point" if args.use_07_metric else "VOC10 area"
        print(f"{len(dataset)} images, {metric} AP at IoU 0.5")
    from keras_ssd.evaluation.report import (detection_report, format_report_table,
                                             write_report_plots)
    from keras_ssd.runs import make_run_dir

    ground_truths = [dataset[i] for i in range(len(detections))]
    report = detection_report(detections, ground_truths, class_names)
    print(format_report_table(report, use_07_metric=args.use_07_metric))
    which = ("COCO AP@[.5:.95], pycocotools" if args.metric == "coco"
             else "VOC07 11-point" if args.use_07_metric else "VOC10 area")
    print(f"mAP ({which}) {100 * float(result['mAP']):.2f}; mAP50 "
          f"{100 * report['mAP50']:.2f}; mAP50-95 {100 * report['mAP50_95']:.2f}")
    folder = args.out if args.out is not None else make_run_dir(args.project, args.name)
    os.makedirs(folder, exist_ok=True)
    try:
        plots = write_report_plots(report, folder)
    except ImportError as e:
        plots = []
        print(f"plots skipped: {e}")
    from keras_ssd.training.checkpoints import atomic_write_json

    payload = {
        "mAP": float(result["mAP"]),
        "AP": {n: (None if a != a else a) for n, a in zip(class_names, ap)},
        "metric": args.metric,
        **({k: float(result[k]) for k in ("AP50", "AP75")} if args.metric == "coco"
           else {}),
        "use_07_metric": bool(args.use_07_metric),
        "num_images": len(dataset),
        **({"model_file": os.path.abspath(args.model_file)} if args.preset is None
           else {"preset": presets.get_pretrained(args.preset).name}),
        "data": os.path.abspath(args.data),
        "format": fmt,
        "split": split,
        "report": report,
        "plots": [os.path.basename(p) for p in plots],
    }
    report_path = os.path.join(folder, "report.json")
    atomic_write_json(payload, report_path)
    print(f"report: {report_path}" + "".join(f", {p}" for p in plots))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json(payload, args.json)
        print(f"wrote {args.json}")
    return 0
