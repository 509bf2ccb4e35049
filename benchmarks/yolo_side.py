"""The Ultralytics side of the learning suite: YOLOv8n from its yaml (random
weights, offline) trained for a wall-clock budget, then scored with
keras_ssd's VOC07 mAP on the same test images as the other sides.

Runs in a separate virtualenv with torch and ultralytics (never a keras-ssd
dependency); `benchmarks.learning --suite --yolo-python PATH` starts it as a
subprocess:

    PYTHONPATH=. /path/to/venv/bin/python -m benchmarks.yolo_side \\
        --data SUITE/digits --minutes 5 --out RUN_DIR

`--data` is a suite dataset folder (its `yolo/` layout is trained on, its
VOC `test` split predicted). Writes `RUN_DIR/detections.json` and prints one
JSON line `RESULT {...}` with `epochs` and `train_wall_seconds`; the caller
scores the detections with `score_detections` (keras_ssd's `voc_map`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def train_and_predict(data, minutes, out, imgsz=320, batch=16, seed=0, workers=2):
    """Train YOLOv8n for `minutes`; write its detections on `data`'s test
    split to `out/detections.json` (`{image_id: {"boxes", "scores",
    "labels"}}`, pixel xyxy). keras_ssd is not imported here (with torch in
    the same process it crashed the import of torch's compiler), so the
    caller scores the file (`score_detections`)."""
    from ultralytics import YOLO

    data = os.path.abspath(data)
    with open(os.path.join(data, "labels.txt")) as f:
        classes = f.read().split()
    os.makedirs(out, exist_ok=True)
    yaml_path = os.path.join(out, "data.yaml")
    with open(yaml_path, "w") as f:  # absolute path: Ultralytics reads "." elsewhere
        json.dump({"path": os.path.join(data, "yolo"), "train": "images/train",
                   "val": "images/val", "names": dict(enumerate(classes))}, f)
    model = YOLO("yolov8n.yaml")  # the architecture only: random weights
    t0 = time.perf_counter()
    model.train(data=yaml_path, time=minutes / 60.0, epochs=1000, imgsz=imgsz, batch=batch,
                device="cpu", workers=workers, seed=seed, deterministic=False,
                pretrained=False, amp=False, plots=False, val=False, project=out,
                name="train", exist_ok=True, verbose=False)
    train_wall = time.perf_counter() - t0
    with open(os.path.join(data, "ImageSets", "Main", "test.txt")) as f:
        ids = f.read().split()
    dets = {}
    for image_id in ids:
        r = model.predict(os.path.join(data, "JPEGImages", image_id + ".jpg"), imgsz=imgsz,
                          conf=0.01, iou=0.45, max_det=200, device="cpu", verbose=False)[0]
        dets[image_id] = {"boxes": r.boxes.xyxy.numpy().astype(np.float64).tolist(),
                          "scores": r.boxes.conf.numpy().astype(np.float64).tolist(),
                          "labels": r.boxes.cls.numpy().astype(np.int64).tolist()}
    with open(os.path.join(out, "detections.json"), "w") as f:
        json.dump(dets, f)
    epochs = None
    results_csv = os.path.join(out, "train", "results.csv")
    if os.path.isfile(results_csv):
        with open(results_csv) as f:
            epochs = max(0, sum(1 for _ in f) - 1)
    return {"epochs": epochs, "train_wall_seconds": train_wall,
            "params": int(sum(p.numel() for p in model.model.parameters())),
            "imgsz": imgsz}


def score_detections(data, detections_json):
    """VOC07 mAP (keras_ssd's `voc_map`) of a `detections.json` on `data`'s
    test split."""
    from keras_ssd.data import VOCDataset
    from keras_ssd.evaluation.voc import voc_map

    with open(os.path.join(data, "labels.txt")) as f:
        classes = f.read().split()
    with open(detections_json) as f:
        dets = json.load(f)
    test = VOCDataset(data, "test", class_names=classes)
    empty = {"boxes": [], "scores": [], "labels": []}
    ordered = []
    for rec in test:
        d = dets.get(rec["image_id"], empty)
        ordered.append({"boxes": np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                        "scores": np.asarray(d["scores"], np.float64),
                        "labels": np.asarray(d["labels"], np.int64)})
    return float(voc_map(ordered, list(test), len(classes), use_07_metric=True,
                         class_names=classes)["mAP"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.yolo_side")
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = train_and_predict(args.data, args.minutes, args.out, args.imgsz,
                               seed=args.seed)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
