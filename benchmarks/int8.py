"""int8 export benchmark: what post-training quantization costs in mAP and
gains in size and CPU latency.

The model is the demo's (`keras-ssd demo`: the tiny 160 px SSD trained 8
epochs on the built-in synthetic shapes, its test split of 200 images), or
`--model` with `--data` (a VOC folder with a test split and a trainval split
for calibration). For the Keras float32 model and for LiteRT and ONNX
artifacts in float32 and int8 (`keras_ssd.export(..., quantize="int8",
calibration=<trainval images>)`), each in its own runtime:

- VOC07 11-point mAP at IoU 0.5 on the test split, decoder at the mAP
  settings (0.01 / 0.45 / 200), boxes mapped back to each image's pixels as
  `keras_ssd.evaluate` does; the int8 artifact may lose at most 1.0 point
  against the float artifact of its format;
- file size (`.keras`, `.tflite`, `.onnx`);
- CPU latency at batch 1 (one 160x160 image to final detections, decode and
  NMS included): the Keras inference model (`predict_on_batch`), the LiteRT
  interpreter with its default (XNNPACK) delegate, ONNX Runtime's CPU
  provider; all with `--threads` threads, timed alternately (median).

Run from the repository root:

    python -m benchmarks.int8 [--out DIR] [--model M.keras --data VOC]
        [--num-calibration 100] [--threads N] [--rounds 30] [--quick]
        [--keep-float LAYER ...] [--calibration-method minmax|percentile
        [--calibration-percentile P]] [--markdown FILE]

Without `--model` it trains the demo model once into `OUT/demo` (about 5
minutes on 2 cores) and reuses it on later runs. Results: a table on stdout
and `int8.json` in --out (default `~/.cache/keras_ssd/benchmarks/int8`).
"""

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # `python benchmarks/int8.py`: the package is not importable
    raise SystemExit("run the benchmarks from the repository root as a module: "
                     "python -m benchmarks.int8")

from benchmarks import common  # noqa: E402

SECTION = "int8"
#: The most mAP points the int8 artifact may lose against the float one.
MAX_MAP_LOSS = 1.0


def default_out():
    """`<benchmark results dir>/int8` (see `benchmarks.common.results_dir`)."""
    return os.path.join(common.results_dir(), SECTION)


def demo_model(folder, verbose=1):
    """`folder/model.keras` and `folder/data`, training the demo once if missing."""
    model_path = os.path.join(folder, "model.keras")
    data = os.path.join(folder, "data")
    if not (os.path.isfile(model_path) and os.path.isdir(data)):
        from keras_ssd.demo import run_demo

        if verbose:
            print(f"training the demo model into {folder} (once; reused afterwards)",
                  flush=True)
        run_demo(folder, seed=0, verbose=verbose, num_predictions=0)
    return model_path, data


def _test_inputs(dataset, size, limit=None):
    from keras_ssd.data.sequence import load_resized

    n = len(dataset) if limit is None else min(limit, len(dataset))
    return [load_resized(dataset, i, size) for i in range(n)]


def _score(run_one, inputs, dataset, names):
    """VOC07 mAP of `run_one(batch) -> outputs dict` over the test inputs."""
    from keras_ssd.evaluation.voc import voc_map
    from keras_ssd.inference import to_pixels

    detections = []
    for image, width, height in inputs:
        out = run_one(image[None])
        detections.append(to_pixels(out, 0, width, height))
    ground_truths = [dataset[i] for i in range(len(inputs))]
    return float(voc_map(detections, ground_truths, num_classes=len(names),
                         class_names=names)["mAP"]), detections


def _litert_runner(path, threads):
    from keras_ssd.quantize import litert_interpreter

    interpreter = litert_interpreter(model_path=path, num_threads=threads)
    runner = interpreter.get_signature_runner()
    return lambda batch: runner(images=batch.astype("float32"))


def _onnx_runner(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda batch: dict(zip(names, session.run(
        names, {"images": batch.astype("float32")})))


def _keras_runner(model):
    return lambda batch: model.predict_on_batch(batch.astype("float32"))


def weight_dtypes(path):
    """`{dtype name: count}` of the convolution weights stored in an artifact
    (int8 after quantization)."""
    counts = {}
    if path.endswith(".tflite"):
        from keras_ssd.quantize import litert_interpreter

        interpreter = litert_interpreter(model_path=path)
        for op in interpreter._get_ops_details():  # noqa: SLF001 - read-only inspection
            if op["op_name"] == "CONV_2D":
                weight = interpreter._get_tensor_details(op["inputs"][1], 0)  # noqa: SLF001
                name = np.dtype(weight["dtype"]).name
                counts[name] = counts.get(name, 0) + 1
    else:
        import onnx

        model = onnx.load(path)
        init = {t.name: t for t in model.graph.initializer}
        producer = {o: n for n in model.graph.node for o in n.output}
        for node in model.graph.node:
            if node.op_type != "Conv":
                continue
            source = node.input[1]
            if source in producer and producer[source].op_type == "DequantizeLinear":
                source = producer[source].input[0]
            tensor = init.get(source)
            name = ("?" if tensor is None else
                    onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).name)
            counts[name] = counts.get(name, 0) + 1
    return counts


def matched_scores(float_dets, int8_dets, score=0.5, iou_min=0.5):
    """Pairs the float artifact's detections scoring at least `score` with
    the int8 artifact's (same label, IoU >= `iou_min`, greedy one-to-one,
    int8 detections at least `score` too).

    Returns:
        `(pairs, total)`: `(float score, int8 score)` of each float detection
        the int8 artifact reproduces, and how many float detections there were.
    """
    from keras_ssd.boxes import iou

    pairs, total = [], 0
    for a, b in zip(float_dets, int8_dets):
        ka = a["scores"] >= score
        kb = b["scores"] >= score
        boxes_b, labels_b, scores_b = b["boxes"][kb], b["labels"][kb], b["scores"][kb]
        used = np.zeros(len(boxes_b), bool)
        for box, label, s in zip(a["boxes"][ka], a["labels"][ka], a["scores"][ka]):
            total += 1
            if not len(boxes_b):
                continue
            overlaps = np.asarray(iou(box[None], boxes_b))[0]
            overlaps[(labels_b != label) | used] = -1
            j = int(np.argmax(overlaps))
            if overlaps[j] >= iou_min:
                used[j] = True
                pairs.append((float(s), float(scores_b[j])))
    return pairs, total


def agreement(float_dets, int8_dets, score=0.5, iou_min=0.5):
    """Share of the float artifact's detections scoring at least `score` that
    the int8 artifact also makes (`matched_scores`), and their number."""
    pairs, total = matched_scores(float_dets, int8_dets, score, iou_min)
    return len(pairs) / total if total else float("nan"), total


def score_drift(float_dets, int8_dets, score=0.5, iou_min=0.5):
    """Median and largest |int8 score - float score| over the detections both
    artifacts make (`matched_scores`); NaN when there are none."""
    pairs, _ = matched_scores(float_dets, int8_dets, score, iou_min)
    if not pairs:
        return float("nan"), float("nan")
    drift = np.abs(np.diff(np.asarray(pairs), axis=1))
    return float(np.median(drift)), float(drift.max())


def run(model_path, data, out, num_calibration=100, threads=None, rounds=30,
        quick=False, keep_float=None, agreement_score=0.5, calibration_method=None,
        calibration_percentile=None, verbose=1):
    """Export, score and time; returns the result rows and the details."""
    import keras_ssd
    from keras_ssd.data import VOCDataset
    from keras_ssd.export import export

    threads = threads or common.threads() or os.cpu_count()
    model = keras_ssd.load_model(model_path, compile=False)
    names = list(model.config.class_names or model.config.names)
    test_set = VOCDataset(data, "test", class_names=names)
    calib_set = VOCDataset(data, "trainval", class_names=names)
    size = tuple(model.config.image_shape) if hasattr(model.config, "image_shape") \
        else (model.config.image_size,) * 2
    folder = os.path.join(out, "artifacts")
    os.makedirs(folder, exist_ok=True)

    artifacts, export_seconds = {}, {}
    for fmt, ext in (("litert", ".tflite"), ("onnx", ".onnx")):
        for precision in ("float32", "int8"):
            path = os.path.join(folder, f"detector_{precision}{ext}")
            options = {} if precision == "float32" else {
                "quantize": "int8", "calibration": calib_set,
                "num_calibration": num_calibration,
                "keep_float": keep_float or None,
                "calibration_method": calibration_method,
                "calibration_percentile": calibration_percentile}
            t0 = time.perf_counter()
            export(model, path, format=fmt, **options)
            export_seconds[(fmt, precision)] = time.perf_counter() - t0
            artifacts[(fmt, precision)] = path
            if verbose:
                print(f"exported {fmt} {precision}: {os.path.getsize(path) / 1e6:.2f} MB "
                      f"in {export_seconds[(fmt, precision)]:.0f} s", flush=True)

    runners = {("keras", "float32"): _keras_runner(model)}
    for (fmt, precision), path in artifacts.items():
        make = _litert_runner if fmt == "litert" else _onnx_runner
        runners[(fmt, precision)] = make(path, threads)

    inputs = _test_inputs(test_set, size, limit=40 if quick else None)
    scores, dets = {}, {}
    for key, runner in runners.items():
        t0 = time.perf_counter()
        scores[key], dets[key] = _score(runner, inputs, test_set, names)
        if verbose:
            print(f"mAP {key[0]} {key[1]}: {scores[key]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    batch = inputs[0][0][None].astype("float32")
    sides = {f"{f} {p}": (lambda r=r: r(batch)) for (f, p), r in runners.items()}
    timing = common.alternate(sides, warmup=3, rounds=5 if quick else rounds)
    latency = {key: 1e3 * timing[f"{key[0]} {key[1]}"]["median"] for key in runners}
    # The fastest call: on a busy machine the median carries other processes' load.
    best = {key: 1e3 * min(timing[f"{key[0]} {key[1]}"]["times"]) for key in runners}
    sizes = {key: os.path.getsize(path) for key, path in artifacts.items()}
    sizes[("keras", "float32")] = os.path.getsize(model_path)

    rows, kept = [], {}
    keras_map = scores[("keras", "float32")]
    rows.append(common.row(SECTION, "mAP keras float32", 100 * keras_map, "mAP %",
                           batch=1, note=f"{len(inputs)} test images, VOC07 11-point"))
    for fmt in ("litert", "onnx"):
        f32, i8 = scores[(fmt, "float32")], scores[(fmt, "int8")]
        rows.append(common.row(SECTION, f"mAP {fmt} float32", 100 * f32, "mAP %",
                               theirs=100 * keras_map, batch=1,
                               note="vs the Keras float32 model"))
        rows.append(common.row(SECTION, f"mAP {fmt} int8", 100 * i8, "mAP %",
                               theirs=100 * f32, batch=1, note=f"vs {fmt} float32"))
        loss = 100 * (f32 - i8)
        loss_row = common.row(
            SECTION, f"mAP loss {fmt} int8 vs float32", loss, "points", batch=1,
            note=f"limit {MAX_MAP_LOSS:g} point; ok = loss <= limit")
        loss_row["floor"] = MAX_MAP_LOSS
        loss_row["meets_floor"] = bool(loss <= MAX_MAP_LOSS)
        rows.append(loss_row)
        share, total = agreement(dets[(fmt, "float32")], dets[(fmt, "int8")],
                                 score=agreement_score)
        rows.append(common.row(SECTION, f"int8 keeps {fmt} float32 detections", 100 * share,
                               "%", batch=1, note=f"{total} float detections with score >= "
                               f"{agreement_score:g}, same label and IoU >= 0.5"))
        drift = score_drift(dets[(fmt, "float32")], dets[(fmt, "int8")],
                            score=agreement_score)
        kept[fmt] = {"share": share, "float_detections": total,
                     "score_drift_median": drift[0], "score_drift_max": drift[1]}
        rows.append(common.row(SECTION, f"int8 score drift {fmt} (median)", drift[0],
                               "score", batch=1, note=f"|int8 - float32| over the kept "
                               f"detections; largest {drift[1]:.4f}"))
    for fmt in ("litert", "onnx"):
        rows.append(common.row(SECTION, f"size {fmt} float32",
                               sizes[(fmt, "float32")] / 1e6, "MB",
                               theirs=sizes[("keras", "float32")] / 1e6,
                               higher_is_better=False, note="vs the .keras file"))
        rows.append(common.row(SECTION, f"size {fmt} int8", sizes[(fmt, "int8")] / 1e6,
                               "MB",
                               theirs=sizes[(fmt, "float32")] / 1e6, higher_is_better=False,
                               note=f"ratio = {fmt} float32 / int8; conv weights "
                               f"{weight_dtypes(artifacts[(fmt, 'int8')])}"))
    rows.append(common.row(SECTION, "latency keras float32 (predict_on_batch)",
                           latency[("keras", "float32")], "ms", batch=1,
                           note=f"{threads} threads; fastest call "
                           f"{best[('keras', 'float32')]:.2f} ms"))
    for fmt, runtime in (("litert", "LiteRT interpreter, XNNPACK"),
                         ("onnx", "ONNX Runtime CPU")):
        rows.append(common.row(SECTION, f"latency {fmt} float32", latency[(fmt, "float32")],
                               "ms", theirs=latency[("keras", "float32")],
                               higher_is_better=False, batch=1,
                               note=f"{runtime}, {threads} threads; ratio vs Keras; "
                               f"fastest call {best[(fmt, 'float32')]:.2f} ms"))
        rows.append(common.row(SECTION, f"latency {fmt} int8", latency[(fmt, "int8")], "ms",
                               theirs=latency[(fmt, "float32")], higher_is_better=False,
                               batch=1, note=f"{runtime}, {threads} threads; "
                               f"ratio = {fmt} float32 / int8; fastest call "
                               f"{best[(fmt, 'int8')]:.2f} ms"))
    details = {
        "model": os.path.abspath(model_path), "data": os.path.abspath(data),
        "num_test_images": len(inputs), "num_calibration": num_calibration,
        "keep_float": list(keep_float or ()), "threads": threads,
        "calibration_method": calibration_method or "minmax",
        "calibration_percentile": calibration_percentile,
        "agreement_score": agreement_score, "agreement": kept,
        "mAP": {f"{f} {p}": v for (f, p), v in scores.items()},
        "size_bytes": {f"{f} {p}": v for (f, p), v in sizes.items()},
        "latency_ms": {f"{f} {p}": v for (f, p), v in latency.items()},
        "latency_fastest_ms": {f"{f} {p}": v for (f, p), v in best.items()},
        "latency_times_s": {k: v["times"] for k, v in timing.items()},
        "export_seconds": {f"{f} {p}": v for (f, p), v in export_seconds.items()},
        "weight_dtypes": {f"{f} {p}": weight_dtypes(a) for (f, p), a in artifacts.items()},
        "artifacts": {f"{f} {p}": a for (f, p), a in artifacts.items()},
    }
    return rows, details


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"results, artifacts and the cached demo model "
                             f"(default {default_out()})")
    parser.add_argument("--model", default=None, metavar="M.keras",
                        help="a trained model (default: the demo's, trained once)")
    parser.add_argument("--data", default=None, metavar="VOC",
                        help="with --model: VOC folder with test and trainval splits")
    parser.add_argument("--num-calibration", type=int, default=100,
                        help="calibration images from trainval (default 100)")
    parser.add_argument("--keep-float", nargs="*", default=None, metavar="LAYER",
                        help="layers left in float32 in the int8 artifacts")
    parser.add_argument("--calibration-method", default=None,
                        choices=("minmax", "percentile"),
                        help="how int8 activation ranges are read (default minmax)")
    parser.add_argument("--calibration-percentile", type=float, default=None, metavar="P",
                        help="with --calibration-method percentile: the central percent "
                             "of values kept (default: keras_ssd's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads of every runtime (default: all cores)")
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per side (30)")
    parser.add_argument("--agreement-score", type=float, default=0.5, metavar="S",
                        help="float detections scoring at least S are the ones int8 must "
                             "reproduce (default 0.5)")
    parser.add_argument("--quick", action="store_true",
                        help="40 test images, 5 timing rounds (a smoke run)")
    parser.add_argument("--json", default=None,
                        help="write the results here instead of OUT/int8.json")
    parser.add_argument("--markdown", default=None,
                        help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    if (args.model is None) != (args.data is None):
        parser.error("--model and --data go together")
    if not 0 < args.agreement_score <= 1:
        parser.error(f"--agreement-score must be in (0, 1], got {args.agreement_score:g}")
    out = os.path.abspath(args.out or default_out())
    os.makedirs(out, exist_ok=True)

    common.set_threads(args.threads)  # torch (when installed) first: machine_info reads it
    if args.model is None:
        model_path, data = demo_model(os.path.join(out, "demo"))
    else:
        model_path, data = args.model, args.data
    info = common.machine_info()
    cpu_line = common.cpu_description()
    print(f"CPU: {cpu_line}")
    print(f"int8 benchmark: {info['cores']} cores, threads={args.threads}, load average "
          f"{tuple(round(x, 2) for x in info['load_average'] or ())}", flush=True)
    t0 = time.perf_counter()
    rows, details = run(model_path, data, out, num_calibration=args.num_calibration,
                        threads=args.threads, rounds=args.rounds, quick=args.quick,
                        keep_float=args.keep_float, agreement_score=args.agreement_score,
                        calibration_method=args.calibration_method,
                        calibration_percentile=args.calibration_percentile)
    info["load_average_end"] = os.getloadavg()
    print(f"\nCPU: {cpu_line}")
    print(common.format_table(rows))
    result = {"machine": info, "cpu": info["cpu_features"], "quick": args.quick,
              "seconds": time.perf_counter() - t0, "details": details, "rows": rows}
    path = args.json or os.path.join(out, "int8.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(f"\nwrote {path}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"CPU: {cpu_line}\n\n" + common.format_markdown(rows) + "\n")
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
