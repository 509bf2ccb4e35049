"""`keras-ssd predict`: detect objects in images, folders, globs, URLs, videos
and cameras (`keras_ssd.sources`); writes annotated images and
videos, `detections.json` and one JSON-lines file per video."""

import os
import sys
import time

from keras_ssd import presets
from keras_ssd.cli.args import (
    CLIError,
    _positive_float,
    _positive_int,
    _quiet_tensorflow,
    _require_model_file,
    _require_out_folder,
    _unit_float,
    add_image_size_argument,
    add_project_arguments,
    load_ssd_model,
    model_at_image_size,
)
from keras_ssd import sources as _sources

HELP = ("detect objects in images, folders, globs, URLs, videos or a camera; writes "
        "annotated images and videos and JSON")

#: Files a folder argument contributes (case-insensitive).
IMAGE_EXTENSIONS = _sources.IMAGE_EXTENSIONS

#: The most failed inputs the exit status counts (statuses stop at 255).
MAX_FAILED_STATUS = 100


def add_arguments(p):
    p.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image files, folders (searched recursively for images and "
                        "videos), glob patterns ('photos/**/*.jpg', quoted), http(s) URLs, "
                        "video files (.mp4, .avi, .mov, .mkv, ...) or a camera index (0); "
                        "videos need pip install 'keras-ssd[video]'")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model-file", metavar="M.keras",
                       help="a model saved by `keras-ssd train` or `keras-ssd convert`")
    model.add_argument("--preset", metavar="{" + ",".join(presets.pretrained_names()) + "}",
                       help="a pretrained detector, downloaded and converted once "
                            "(cached in $KERAS_SSD_CACHE_DIR, default ~/.cache/keras_ssd)")
    p.add_argument("--classes", metavar="NAMES",
                   help="with --preset: report only these of its classes, comma-separated "
                        "(e.g. person,car); scores stay the full model's")
    p.add_argument("--out", metavar="DIR",
                   help="folder for the annotated images and videos, detections.json and "
                        "one NAME.jsonl per video (default: a fresh PROJECT/NAME, NAME2, "
                        "... folder)")
    add_project_arguments(p, "predict", "output")
    p.add_argument("--threshold", type=_unit_float, default=0.5,
                   help="minimum detection score (default: 0.5)")
    p.add_argument("--iou-threshold", type=_unit_float, default=0.45,
                   help="non-maximum suppression IoU (default: 0.45)")
    p.add_argument("--top-k", type=_positive_int, default=200,
                   help="at most this many detections per image (default: 200)")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="images or frames per forward pass (default: 8)")
    p.add_argument("--timeout", type=_positive_float, default=_sources.URL_TIMEOUT,
                   metavar="SECONDS",
                   help=f"how long a URL may take to answer (default: "
                        f"{_sources.URL_TIMEOUT:g})")
    add_image_size_argument(p)


def _annotated_name(path, used, suffix=".png"):
    base = str(path).split("?", 1)[0].rstrip("/")
    stem = os.path.splitext(os.path.basename(base))[0] or "image"
    name, k = f"{stem}{suffix}", 1
    while name in used:
        name, k = f"{stem}_{k}{suffix}", k + 1
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


def _load_model(args):
    """The `--model-file` / `--preset` model, or an `ArtifactDetector` for an
    exported artifact (its stored metadata gives size, letterbox, classes)."""
    if args.preset is not None:
        return model_at_image_size(_load_preset(args), args.image_size)
    from keras_ssd.artifact_metadata import is_artifact_path

    if not is_artifact_path(args.model_file):
        return model_at_image_size(load_ssd_model(args.model_file), args.image_size)
    if args.image_size is not None:
        raise CLIError("--image-size: an exported artifact has a fixed input size",
                       status=2)
    _quiet_tensorflow()
    from keras_ssd.inference.artifact import ArtifactDetector

    try:
        return ArtifactDetector(args.model_file)
    except ValueError as e:
        raise CLIError(f"--model-file {e}") from None


class _VideoOutput:
    """The annotated video and per-frame JSON lines of one video source."""

    def __init__(self, source, folder, used, fps):
        from keras_ssd.inference.stream import VideoWriter

        self.source = source
        self.video_name = _annotated_name(source, used, ".mp4")
        self.lines_name = os.path.splitext(self.video_name)[0] + ".jsonl"
        self.writer = VideoWriter(os.path.join(folder, self.video_name), fps=fps)
        self.lines = open(os.path.join(folder, self.lines_name), "w", encoding="utf-8")
        self.fps = fps
        self.frames = self.detections = 0
        self.start = time.perf_counter()

    def add(self, item, det):
        import json

        import numpy as np

        from keras_ssd.visualize import draw_detections

        self.writer.write(np.asarray(draw_detections(item.image, det)))
        record = detections_to_json(item.name, det)
        record = {"frame": item.frame,
                  **({"time": round(item.frame / self.fps, 4)} if self.fps else {}),
                  "detections": record["detections"]}
        self.lines.write(json.dumps(record) + "\n")
        self.frames += 1
        self.detections += len(det["scores"])

    @property
    def frames_per_second(self):
        return self.frames / max(time.perf_counter() - self.start, 1e-9)

    def close(self, folder):
        self.writer.close()
        self.lines.close()
        print(f"{self.source}: {self.frames} frames, {self.detections} detections, "
              f"{self.frames_per_second:.1f} frames/s -> "
              f"{os.path.join(folder, self.video_name)}, "
              f"{os.path.join(folder, self.lines_name)}", flush=True)


def run(args):
    if args.preset is not None:
        if presets.find_pretrained(args.preset) is None:
            raise CLIError(f"--preset: unknown pretrained preset {args.preset!r}; choose one "
                           f"of {', '.join(presets.pretrained_names())}", status=2)
    else:
        from keras_ssd.artifact_metadata import is_artifact_path

        if not (is_artifact_path(args.model_file) and os.path.exists(args.model_file)):
            _require_model_file(args.model_file)
        if args.classes is not None:
            raise CLIError("--classes goes with --preset (a subset of its classes)", status=2)
    if args.out is not None:
        _require_out_folder(args.out)
    else:
        _require_out_folder(args.project, "--project")
    model = _load_model(args)
    from keras_ssd.inference.stream import predict_stream
    from keras_ssd.runs import make_run_dir
    from keras_ssd.visualize import draw_detections

    folder = args.out if args.out is not None else make_run_dir(args.project, args.name)
    os.makedirs(folder, exist_ok=True)
    records, failed, used, videos = [], [], set(), []
    video = None
    tty = _isatty(sys.stdout)
    stream = predict_stream(model, args.images, confidence_threshold=args.threshold,
                            iou_threshold=args.iou_threshold, top_k=args.top_k,
                            batch_size=args.batch_size, timeout=args.timeout)
    try:
        for item, det in stream:
            if video is not None and (det is None or item.source != video.source
                                      or item.kind != "video"):
                video.close(folder)
                videos.append(video)
                video = None
            if det is None:
                failed.append({"input": item.name, "error": item.error})
                print(f"keras-ssd predict: skipped {item.name}: {item.error}",
                      file=sys.stderr, flush=True)
                continue
            if item.kind == "video":
                if video is None:
                    video = _VideoOutput(item.source, folder, used, item.fps)
                video.add(item, det)
                if tty:
                    print(f"\r{item.source}: frame {item.frame + 1}, "
                          f"{video.frames_per_second:.1f} frames/s", end="", flush=True)
                continue
            out_name = _annotated_name(item.name, used)
            draw_detections(item.image, det).save(os.path.join(folder, out_name))
            records.append(detections_to_json(item.name, det, out_name))
            print(f"{item.name}: {len(det['scores'])} detections -> "
                  f"{os.path.join(folder, out_name)}", flush=True)
    finally:
        if video is not None:
            if tty:
                print()
            video.close(folder)
            videos.append(video)
    json_path = os.path.join(folder, "detections.json")
    source = ({"model_file": os.path.abspath(args.model_file)} if args.preset is None
              else {"preset": presets.get_pretrained(args.preset).name})
    _write_json({**source, "threshold": args.threshold, "images": records,
                 "videos": [{"input": v.source, "video": v.video_name,
                             "frames": v.frames, "lines": v.lines_name} for v in videos],
                 "failed": failed}, json_path)
    print(f"wrote {len(records)} annotated images"
          + (f", {len(videos)} annotated videos ({sum(v.frames for v in videos)} frames)"
             if videos else "")
          + f" and {json_path}"
          + (f"; {len(failed)} inputs could not be read" if failed else ""))
    return min(len(failed), MAX_FAILED_STATUS)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def detections_to_json(path, det, annotated=None):
    """One image's detections as JSON-ready lists."""
    record = {
        "image": (os.path.abspath(path) if isinstance(path, str) and os.path.exists(path)
                  else str(path)),
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
