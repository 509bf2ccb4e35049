"""Benchmark SSD post-processing (decode + softmax + per-class NMS + top-k).

Measures milliseconds per image for `DecodeDetections` against a plain
per-class Python-loop greedy NMS in numpy, on SSD300 VOC geometry (8732
priors, 20 classes + background), Caffe settings 0.01 / 0.45 / 400 / 200,
for two kinds of head output:

- "realistic": mostly confident background and a few dozen objects; priors
  overlapping an object get that class in proportion to their IoU.
- "worst": a random head: every class scores about 1/21 > 0.01 everywhere,
  so every class sends the full 400 candidates into NMS.

Methods run round-robin (the machine is shared and noisy), each timed
`--repeats` times after `--warmup` calls; the median is reported. More
methods can be plugged in with `register_method` (e.g. a torchvision
comparison), either from another script importing this module or by adding
a function here:

    def my_method(config, options):
        # build once, return fn(predictions: np.ndarray (B, N, 4 + C + 1))
        return lambda predictions: ...
    register_method("mine", my_method)

Usage (from the repository root):
    python -m benchmarks.postprocess [--batch-sizes 1 8] [--repeats 15]
        [--methods ours ours_no_xla numpy_loop] [--json out.json]

The JSON goes to `~/.cache/keras_ssd/benchmarks/postprocess.json` (see
`benchmarks.common.results_dir`) unless `--json` says otherwise.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_OPTIONS = {
    "confidence_threshold": 0.01,
    "iou_threshold": 0.45,
    "max_candidates_per_class": 400,
    "top_k": 200,
}

METHODS = {}


def register_method(name, factory):
    """Add a method: `factory(config, options) -> fn(predictions)`."""
    METHODS[name] = factory
    return factory


# --------------------------------------------------------------------- inputs
def make_predictions(config, case, batch, seed=0):
    """Synthetic head output `(batch, N, 4 + C + 1)` float32."""
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.boxes import cxcywh_to_xyxy, encode, iou

    rng = np.random.default_rng(seed)
    priors = generate_anchors(config)
    n = priors.shape[0]
    c = config.num_classes
    if case == "worst":
        offsets = rng.normal(0.0, 0.5, (batch, n, 4))
        logits = rng.normal(0.0, 1.0, (batch, n, c + 1))
        return np.concatenate([offsets, logits], -1).astype(np.float32)
    if case != "realistic":
        raise ValueError(f"unknown case {case!r}")
    priors_xyxy = cxcywh_to_xyxy(priors)
    out = np.empty((batch, n, 4 + c + 1), np.float32)
    for b in range(batch):
        g = int(rng.integers(20, 40))
        centre = rng.uniform(0.1, 0.9, (g, 2))
        size = rng.uniform(0.05, 0.6, (g, 2))
        gt = np.clip(np.concatenate([centre - size / 2, centre + size / 2], 1), 0, 1)
        labels = rng.integers(0, c, g)
        overlaps = iou(gt, priors_xyxy)  # (g, n)
        best = overlaps.argmax(0)
        best_iou = overlaps.max(0)
        logits = rng.normal(0.0, 1.0, (n, c + 1))
        logits[:, 0] += 8.0  # confident background
        near = best_iou > 0.2
        logits[near, labels[best[near]] + 1] += 14.0 * best_iou[near]
        offsets = rng.normal(0.0, 0.5, (n, 4))
        offsets[near] = encode(gt[best[near]], priors[near], config.variances)
        offsets[near] += rng.normal(0.0, 0.3, (int(near.sum()), 4))
        out[b, :, :4] = offsets
        out[b, :, 4:] = logits
    return out


# -------------------------------------------------------------------- methods
def _ours(config, options, use_xla):
    import tensorflow as tf

    from keras_ssd.layers.decode_detections import DecodeDetections

    layer = DecodeDetections(config, use_xla=use_xla, **options)
    fn = tf.function(lambda p: layer(p))

    def run(predictions):
        out = fn(tf.constant(predictions))
        return {k: v.numpy() for k, v in out.items()}

    return run


# The layer as shipped (TensorFlow backend: decode + NMS as one XLA cluster
# inside a plain graph-mode tf.function, as in a model without jit_compile).
register_method("ours", lambda config, options: _ours(config, options, None))
# The same keras.ops graph without XLA.
register_method("ours_no_xla", lambda config, options: _ours(config, options, False))


def numpy_greedy_nms(boxes, scores, iou_threshold):
    """Plain greedy NMS, boxes already sorted by descending score."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1) * (y2 - y1)
    order = np.arange(boxes.shape[0])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        ih = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = iw * ih
        overlap = inter / (area[i] + area[rest] - inter)
        order = rest[~(overlap > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)


def _numpy_loop(config, options):
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.boxes import decode

    priors = generate_anchors(config)
    thr = options["confidence_threshold"]
    k = options["max_candidates_per_class"]

    def one_image(pred):
        boxes = decode(pred[:, :4], priors, config.variances).astype(np.float32)
        logits = pred[:, 4:]
        e = np.exp(logits - logits.max(1, keepdims=True))
        scores = (e / e.sum(1, keepdims=True))[:, 1:]
        all_boxes, all_scores, all_labels = [], [], []
        for c in range(scores.shape[1]):
            s = scores[:, c]
            idx = np.nonzero(s > thr)[0]
            idx = idx[np.argsort(-s[idx], kind="stable")][:k]
            kept = idx[numpy_greedy_nms(boxes[idx], s[idx], options["iou_threshold"])]
            all_boxes.append(boxes[kept])
            all_scores.append(s[kept])
            all_labels.append(np.full(kept.size, c))
        s = np.concatenate(all_scores)
        order = np.argsort(-s, kind="stable")[: options["top_k"]]
        return (np.concatenate(all_boxes)[order], s[order],
                np.concatenate(all_labels)[order])

    return lambda predictions: [one_image(p) for p in predictions]


register_method("numpy_loop", _numpy_loop)


def check_same_detections(ours, reference):
    """Assert the layer output equals the numpy loop's per-image lists."""
    for b, (boxes, scores, labels) in enumerate(reference):
        n = int(ours["num_detections"][b])
        if n != len(scores) or not np.array_equal(ours["labels"][b, :n], labels):
            raise AssertionError(f"image {b}: detections differ from numpy_loop")
        np.testing.assert_allclose(ours["boxes"][b, :n], boxes, atol=1e-6)
        np.testing.assert_allclose(ours["scores"][b, :n], scores, atol=1e-6)


# ---------------------------------------------------------------------- timing
def time_methods(fns, inputs, warmup, repeats):
    """Round-robin timing; returns {name: [seconds per call]}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(inputs)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(inputs)
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--cases", nargs="+", default=["realistic", "worst"])
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"default: all registered ({', '.join(METHODS)})")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--slow-repeats", type=int, default=3,
                        help="repeats for methods named in --slow (numpy_loop)")
    parser.add_argument("--slow", nargs="*", default=["numpy_loop"])
    parser.add_argument("--json", default=None,
                        help="output file (default: postprocess.json in "
                             "benchmarks.common.results_dir(); '' for none)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip checking ours against numpy_loop")
    args = parser.parse_args(argv)
    if args.json is None:
        from benchmarks.common import results_dir

        args.json = os.path.join(results_dir(), "postprocess.json")

    from keras_ssd.config import SSDConfig

    config = SSDConfig.ssd300(num_classes=20)
    names = args.methods or list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    fns = {name: METHODS[name](config, dict(DEFAULT_OPTIONS)) for name in names}

    rows = []
    for case in args.cases:
        for batch in args.batch_sizes:
            inputs = make_predictions(config, case, batch, seed=batch)
            if args.check and "ours" in fns and "numpy_loop" in fns:
                check_same_detections(fns["ours"](inputs), fns["numpy_loop"](inputs))
            fast = {k: v for k, v in fns.items() if k not in args.slow}
            slow = {k: v for k, v in fns.items() if k in args.slow}
            times = {}
            if fast:
                times.update(time_methods(fast, inputs, args.warmup, args.repeats))
            if slow:
                times.update(time_methods(slow, inputs, 1, args.slow_repeats))
            for name in names:
                ms = 1e3 * np.median(times[name]) / batch
                best = 1e3 * np.min(times[name]) / batch
                rows.append({"case": case, "batch": batch, "method": name,
                             "ms_per_image": round(float(ms), 3),
                             "ms_per_image_min": round(float(best), 3),
                             "repeats": len(times[name])})
                print(f"{case:10s} batch {batch:2d}  {name:12s} {ms:9.2f} ms/img "
                      f"(min {best:.2f})", flush=True)

    print()
    print(f"| case | batch | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for case in args.cases:
        for batch in args.batch_sizes:
            cells = [next(r["ms_per_image"] for r in rows if r["case"] == case
                          and r["batch"] == batch and r["method"] == m) for m in names]
            print(f"| {case} | {batch} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")

    result = {
        "benchmark": "postprocess",
        "unit": "ms per image (median)",
        "config": "SSD300, 20 classes, 8732 priors",
        "options": DEFAULT_OPTIONS,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": sys.version.split()[0]},
        "results": rows,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    if not __package__:
        raise SystemExit("run it from the repository root as a module: "
                         "python -m benchmarks.postprocess")
    main()
