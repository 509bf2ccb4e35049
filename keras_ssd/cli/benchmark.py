"""`keras-ssd benchmark`: latency and throughput of a model on this machine."""

import os
import statistics
import time

from keras_ssd import presets
from keras_ssd.cli.args import (
    CLIError,
    _non_negative_int,
    _positive_int,
    _quiet_tensorflow,
    load_ssd_model,
)

HELP = ("latency and throughput of a .keras model, a preset or an exported artifact on "
        "this machine, at batch 1 and N")


def add_arguments(p):
    p.add_argument("model", metavar="MODEL",
                   help="a .keras file, a pretrained preset name, or an exported "
                        "SavedModel folder / .onnx / .tflite")
    p.add_argument("--batch-size", type=_positive_int, default=8, metavar="N",
                   help="the larger batch measured besides batch 1 (default: 8)")
    p.add_argument("--runs", type=_positive_int, default=20,
                   help="timed calls per batch size; the median is reported (default: 20)")
    p.add_argument("--warmup", type=_non_negative_int, default=3,
                   help="untimed calls first (tracing, caches; default: 3)")
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")


def _runner(args):
    """`(describe, input (h, w), run(batch uint8 array))` of MODEL."""
    from keras_ssd.artifact_metadata import is_artifact_path

    path = args.model
    if is_artifact_path(path) and os.path.exists(path):
        _quiet_tensorflow()
        from keras_ssd.inference.artifact import ArtifactDetector

        try:
            detector = ArtifactDetector(path)
        except ValueError as e:
            raise CLIError(str(e)) from None
        quant = detector.metadata.get("quantize")
        return (f"{detector.format}{' ' + quant if quant else ''} artifact {path}",
                detector.image_size,
                lambda batch: detector._run(batch.astype(detector.input_dtype)))
    if os.path.isfile(path):
        model = load_ssd_model(path)
        what = path
    elif presets.find_pretrained(path) is not None:
        _quiet_tensorflow()
        from keras_ssd.models.pretrained import from_preset

        model, what = from_preset(path), f"preset {path}"
    else:
        raise CLIError(f"MODEL {path}: not a file, an exported artifact or a pretrained "
                       f"preset ({', '.join(presets.pretrained_names())})", status=2)
    height, width = model.config.image_shape[:2]
    # The model's own predict: the network and its prediction_decoder.
    return what, (height, width), lambda batch: model.predict_on_batch(
        batch.astype("float32"))


def run(args):
    if args.json and os.path.isdir(args.json):
        raise CLIError(f"--json {args.json} is a folder; give a file name", status=2)
    what, (height, width), call = _runner(args)
    import numpy as np

    from keras_ssd.accel import machine

    rng = np.random.default_rng(0)
    rows = []
    for batch_size in sorted({1, args.batch_size}):
        batch = rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8)
        for _ in range(args.warmup):
            call(batch)
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            call(batch)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"batch_size": batch_size, "median_ms": 1000 * median,
                     "min_ms": 1000 * min(times), "images_per_second": batch_size / median})
    cpu = machine.describe()
    print(f"{what}: {height}x{width} input, decoding and NMS included")
    print(f"CPU: {cpu}; {os.cpu_count()} logical CPUs; load average "
          f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else f"CPU: {cpu}")
    print(f"{'batch':>5}  {'median ms':>10}  {'min ms':>8}  {'images/s':>9}")
    for r in rows:
        print(f"{r['batch_size']:>5}  {r['median_ms']:>10.1f}  {r['min_ms']:>8.1f}  "
              f"{r['images_per_second']:>9.1f}")
    print(f"({args.runs} timed calls each after {args.warmup} untimed; random images)")
    if args.json:
        from keras_ssd.training.checkpoints import atomic_write_json

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json({"model": what, "input": [height, width], "cpu": cpu,
                           "cpu_kind": machine.machine_kind(), "runs": args.runs,
                           "warmup": args.warmup, "results": rows}, args.json)
    return 0
