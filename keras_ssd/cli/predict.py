"""`keras-ssd predict`: detect objects in images; writes annotated images and
`detections.json`."""

import os

from keras_ssd import presets
from keras_ssd.cli.args import (
    CLIError,
    _positive_int,
    _quiet_tensorflow,
    _require_model_file,
    _require_out_folder,
    _unit_float,
    add_image_size_argument,
    load_ssd_model,
    model_at_image_size,
)

HELP = "detect objects in images; writes annotated images and JSON"

#: Files a folder argument contributes (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def add_arguments(p):
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders whose images are all used")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-file", metavar="M.keras",
                       help="a model saved by `keras-ssd train` or `keras-ssd convert`")
    model.add_argument("--preset", metavar="{" + ",".join(presets.pretrained_names()) + "}",
                       help="a pretrained detector, downloaded and converted once "
                            "(cached in $KERAS_SSD_CACHE_DIR, default ~/.cache/keras_ssd)")
    p.add_argument("--classes", metavar="NAMES",
                   help="with --preset: report only these of its classes, comma-separated "
                        "(e.g. person,car); scores stay the full model's")
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
    add_image_size_argument(p)


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


def _load_preset(args):
    """The `--preset` model (with `--classes`: that class subset)."""
    _quiet_tensorflow()
    from keras_ssd.models.pretrained import from_preset

    classes = None
    if args.classes is not None:
        classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    return from_preset(args.preset, classes=classes)


def run(args):
    if args.preset is not None:
        if presets.find_pretrained(args.preset) is None:
            raise CLIError(f"--preset: unknown pretrained preset {args.preset!r}; choose one "
                           f"of {', '.join(presets.pretrained_names())}", status=2)
    else:
        _require_model_file(args.model_file)
        if args.classes is not None:
            raise CLIError("--classes goes with --preset (a subset of its classes)", status=2)
    paths = _expand_images(args.images)
    _require_out_folder(args.out)
    model = load_ssd_model(args.model_file) if args.preset is None else _load_preset(args)
    model = model_at_image_size(model, args.image_size)
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
    source = ({"model_file": os.path.abspath(args.model_file)} if args.preset is None
              else {"preset": presets.get_pretrained(args.preset).name})
    _write_json({**source, "threshold": args.threshold, "images": records}, json_path)
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
    if "category_ids" in det:  # a model with COCO category ids (-1: a placeholder)
        for entry, cid in zip(record["detections"], det["category_ids"]):
            entry["category_id"] = int(cid)
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
