"""End-to-end `predict_image` latency: a 500x375 JPEG path to boxes.

`keras_ssd.predict.predict_image(model, path)` on an SSD300 (20 classes):
JPEG decode, resize to 300x300, network, decoder + NMS, boxes mapped back
to the image's pixels. Median over calls after warm-up (the first call
builds and traces the detector), float32 and with the mixed-precision
switch. The image is a synthetic photo-like JPEG written to a temp dir.
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


def run(quick=False):
    from benchmarks.forward import build_ours
    from keras_ssd.predict import predict_image

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = write_jpeg(os.path.join(tmp, "image.jpg"))
        models = {"fp32": build_ours("float32"), "bf16": build_ours("bfloat16")}
        sides = {p: (lambda m=m: predict_image(m, path)) for p, m in models.items()}
        res = common.alternate(sides, warmup=2, rounds=5 if quick else 11)
        fwd = {p: common.measure(lambda m=m: m.predict_on_batch(
            np.zeros((1, 300, 300, 3), np.float32)), warmup=1, repeats=3 if quick else 5)[0]
            for p, m in models.items()}
        for p in models:
            ms = 1e3 * res[p]["median"]
            rows.append(common.row(
                SECTION, f"predict_image latency {p} (500x375 JPEG)", ms, "ms", batch=1,
                note=f"network alone (predict_on_batch) {1e3 * fwd[p]:.0f} ms"))
    return rows
