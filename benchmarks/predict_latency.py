"""End-to-end `predict_image` latency: a 500x375 JPEG path to boxes.

`keras_ssd.inference.predict.predict_image(model, path)` on an SSD300 (20 classes):
JPEG decode, resize to 300x300, network, decoder + NMS, boxes mapped back
to the image's pixels. Median over calls after warm-up (the first call
builds and traces the detector), float32 and with the mixed-precision
switch. The image is a synthetic photo-like JPEG written to a temp dir.

Also: whether the mixed-precision switch changes what a *trained* model
detects (`bf16_agreement`, on the output of `keras-ssd demo`).
"""

import os
import tempfile

import numpy as np

from benchmarks import common

SECTION = "predict"


def write_jpeg(path, width=500, height=375, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width * 255, yy / height * 255, (xx + yy) / (width + height) * 255], -1)
    img += rng.normal(0, 20, img.shape)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def run(quick=False, demo_dir=None):
    from benchmarks.forward import ssd300
    from keras_ssd.accel import prepare_for_inference
    from keras_ssd.inference.predict import predict_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_jpeg(os.path.join(tmp, "image.jpg"))
        models = {"fp32": ssd300("float32"), "bf16": ssd300("bfloat16")}
        sides = {p: (lambda m=m: predict_image(m, path)) for p, m in models.items()}
        res = common.alternate(sides, warmup=2, rounds=5 if quick else 11)
        fwd = {p: common.measure(lambda m=prepare_for_inference(m, decode=False):
                                 m.predict_on_batch(
            np.zeros((1, 300, 300, 3), np.float32)), warmup=1, repeats=3 if quick else 5)[0]
            for p, m in models.items()}
        for p in models:
            ms = 1e3 * res[p]["median"]
            rows.append(common.row(
                SECTION, f"predict_image latency {p} (500x375 JPEG)", ms, "ms", batch=1,
                note=f"network alone (predict_on_batch) {1e3 * fwd[p]:.0f} ms"))
    rows.extend(agreement_rows(demo_dir, quick=quick))
    return rows


def bf16_agreement(demo_dir, limit=None, confidence_threshold=0.5):
    """Detections of a trained model in float32 vs under bfloat16.

    Loads `demo_dir/model.keras` (written by `keras-ssd demo`), runs
    `predict_image` on the test images listed in
    `demo_dir/data/ImageSets/Main/test.txt` with the float32 model and with
    `keras_ssd.accel.runtime.mixed_precision_copy` of it, and counts the float32
    detections (score > `confidence_threshold`) that the bfloat16 run
    reproduces: same label and IoU >= 0.9 (greedy one-to-one matching).

    Returns dict: matched, total, share, bf16_total, images.
    """
    from keras_ssd.accel.runtime import mixed_precision_copy
    from keras_ssd.boxes import iou
    from keras_ssd.inference.predict import predict_image
    from keras_ssd.saving import load_model

    model32 = load_model(os.path.join(demo_dir, "model.keras"), compile=False)
    model16 = mixed_precision_copy(model32, device="cpu", force=True)  # any CPU
    data = os.path.join(demo_dir, "data")
    with open(os.path.join(data, "ImageSets", "Main", "test.txt")) as f:
        ids = [line.strip() for line in f if line.strip()]
    ids = ids[:limit] if limit else ids
    matched = total = total16 = 0
    for image_id in ids:
        path = os.path.join(data, "JPEGImages", image_id + ".jpg")
        a = predict_image(model32, path, confidence_threshold=confidence_threshold)
        b = predict_image(model16, path, confidence_threshold=confidence_threshold)
        total += len(a["boxes"])
        total16 += len(b["boxes"])
        if not len(a["boxes"]) or not len(b["boxes"]):
            continue
        m = iou(a["boxes"], b["boxes"])
        m[a["labels"][:, None] != b["labels"][None, :]] = 0.0
        free = np.ones(m.shape[1], bool)
        for i in np.argsort(-a["scores"]):
            candidates = np.where(free, m[i], -1.0)
            j = int(candidates.argmax())
            if candidates[j] >= 0.9:
                free[j] = False
                matched += 1
    return {"matched": matched, "total": total, "bf16_total": total16,
            "share": matched / total if total else 1.0, "images": len(ids)}


def agreement_rows(demo_dir, quick=False):
    if not demo_dir or not os.path.exists(os.path.join(demo_dir, "model.keras")):
        print(f"no trained demo model at {demo_dir!r}: skipping the bf16 detection "
              "agreement (run `keras-ssd demo --out DIR` and pass --demo-dir DIR)")
        return []
    res = bf16_agreement(demo_dir, limit=50 if quick else None)
    return [common.row(
        SECTION, "bf16 vs fp32 detections, trained demo model", 100 * res["share"], "%",
        ratio_value=res["share"] / 0.95, floor=1.0,
        note=(f"{res['matched']}/{res['total']} fp32 detections (score>0.5) reproduced "
              f"in bf16 (same label, IoU>=0.9) on {res['images']} test images; "
              f"bf16 found {res['bf16_total']}; ratio = vs the 95% floor"))]
