"""SSDLite320 deployment benchmark: the `ssdlite320_coco` network exported
with NMS inside (SavedModel, ONNX, LiteRT; int8 for ONNX and LiteRT), its
sizes, single-thread latency beside torchvision's own float model, and what
int8 costs against float on real photos.

The weights: `--checkpoint FILE` (torchvision's
`ssdlite320_mobilenet_v3_large_coco-a79551df.pth`, converted without
torch), else torchvision's network with stand-in random weights (when torchvision
is installed; both sides then hold the same weights; `stand_in_weights`:
most priors below the score threshold, as in a trained detector), else
random weights in its layout. Random weights give honest sizes and
latencies (the same operators and shapes; the post-processing load depends
on how many candidates clear 0.001) but no meaningful int8 agreement: that
needs the published checkpoint (`--checkpoint`).

Photos: the colour photos scikit-image and scikit-learn ship (astronaut,
chelsea, coffee, rocket, china, flower, ...), stretched to 320 x 320; they
are also the int8 calibration set.

Measured per side, batch 1, one 320 x 320 photo to final detections
(decode and NMS included), `--threads` threads (default 1), timed
alternately, median of `--rounds`: the Keras inference model, LiteRT float
and int8 (XNNPACK), ONNX Runtime float and int8, torchvision's float model
(`model([tensor])`: its resize to 320, network, post-processing).

Run from the repository root:

    python -m benchmarks.ssdlite [--checkpoint FILE] [--out DIR] [--rounds 20]
        [--threads 1]

Results: a table on stdout and `ssdlite.json` in --out (default
`~/.cache/keras_ssd/benchmarks/ssdlite`).
"""

import argparse
import json
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:
    raise SystemExit("run the benchmarks from the repository root as a module: "
                     "python -m benchmarks.ssdlite")

from benchmarks import common  # noqa: E402
from benchmarks.torch_reference import sample_photos, stand_in_weights  # noqa: E402

SECTION = "ssdlite"
SIZE = 320
#: The float detections int8 must reproduce: score >= this.
SCORE = 0.3


def state_dict(checkpoint, torchvision_model):
    """The weights as a torchvision-layout state dict of numpy arrays."""
    if checkpoint:
        from keras_ssd import pth

        return pth.load_pth(checkpoint, map_key="auto"), "checkpoint " + checkpoint
    if torchvision_model is not None:
        return ({k: v.numpy() for k, v in torchvision_model.state_dict().items()},
                "stand-in random weights (stand_in_weights), the same on both sides")
    from keras_ssd.models.convert.torchvision_ssdlite import layer_table

    rng = np.random.default_rng(0)
    return ({key: (rng.standard_normal(shape) * 0.03).astype(np.float32)
             if not key.endswith("running_var") else np.ones(shape, np.float32)
             for _, _, tensors in layer_table(91) for key, shape in tensors},
            "random weights (numpy)")


def matched(float_dets, int8_dets, score=SCORE, iou_min=0.5):
    """Share of float detections with score >= `score` that int8 reproduces
    (same label, IoU >= `iou_min`, greedy one-to-one among int8's detections
    of any score), and the score drift of the matched pairs."""
    from keras_ssd.boxes import iou

    total, drift = 0, []
    for a, b in zip(float_dets, int8_dets):
        keep = a["scores"] >= score
        used = np.zeros(len(b["scores"]), bool)
        for box, label, s in zip(a["boxes"][keep], a["labels"][keep], a["scores"][keep]):
            total += 1
            if not len(b["boxes"]):
                continue
            overlaps = np.asarray(iou(box[None], b["boxes"]))[0]
            overlaps[(b["labels"] != label) | used] = -1
            j = int(np.argmax(overlaps))
            if overlaps[j] >= iou_min:
                used[j] = True
                drift.append(abs(float(b["scores"][j]) - float(s)))
    share = len(drift) / total if total else float("nan")
    return {"float_detections": total, "reproduced": len(drift), "share": share,
            "score_drift_mean": float(np.mean(drift)) if drift else None,
            "score_drift_max": float(np.max(drift)) if drift else None}


def _detections(outputs):
    n = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
    return {k: np.asarray(outputs[k])[0, :n] for k in ("boxes", "scores", "labels")}


def _size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path)
                   for f in files)
    return os.path.getsize(path)


def run(out, checkpoint=None, rounds=20, threads=1, verbose=1):
    common.set_threads(threads)
    torch, torchvision = common.import_torchvision()
    tv_model = None
    if torch is not None:
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        torch.manual_seed(0)
        tv_model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                 num_classes=91).eval()
        if not checkpoint:
            stand_in_weights(tv_model, torch)
    elif verbose:
        print(common.TORCH_MISSING)
    state, weights = state_dict(checkpoint, tv_model)
    if checkpoint and tv_model is not None:
        tv_model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in
                                  state.items()})

    from keras_ssd.export import export
    from keras_ssd.models.convert import convert_state_dict
    from benchmarks.int8 import _keras_runner, _litert_runner, _onnx_runner

    model = convert_state_dict(state, "torchvision_ssdlite")
    names, images = sample_photos(SIZE)
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "ssdlite320.keras")
    model.save(model_path)
    artifacts = {"keras": model_path}
    for fmt, precision in (("tf_saved_model", "float32"), ("litert", "float32"),
                           ("litert", "int8"), ("onnx", "float32"), ("onnx", "int8")):
        ext = {"tf_saved_model": "", "litert": ".tflite", "onnx": ".onnx"}[fmt]
        path = os.path.join(out, f"ssdlite320_{precision}{ext}")
        options = {}
        if precision == "int8":
            options = {"quantize": "int8", "calibration": images.astype("float32"),
                       "num_calibration": len(images)}
        export(model, path, format=fmt, **options)
        artifacts[f"{fmt} {precision}"] = path
        if verbose:
            print(f"exported {fmt} {precision}: {_size(path) / 1e6:.2f} MB", flush=True)

    runners = {
        "keras float32": _keras_runner(model),
        "litert float32": _litert_runner(artifacts["litert float32"], threads),
        "litert int8": _litert_runner(artifacts["litert int8"], threads),
        "onnx float32": _onnx_runner(artifacts["onnx float32"], threads),
        "onnx int8": _onnx_runner(artifacts["onnx int8"], threads),
    }
    dets = {side: [_detections(run_one(images[i:i + 1].astype("float32")))
                   for i in range(len(images))] for side, run_one in runners.items()}
    photo = images[:1].astype("float32")
    sides = {side: (lambda r=run_one: r(photo)) for side, run_one in runners.items()}
    if tv_model is not None:
        tensor = torch.from_numpy(images[0]).permute(2, 0, 1).float() / 255.0

        def torchvision_float():
            with torch.no_grad():
                return tv_model([tensor])

        sides["torchvision float32"] = torchvision_float
    timing = common.alternate(sides, warmup=2, rounds=rounds)
    result = {
        "machine": common.machine_info(),
        "weights": weights,
        "photos": names,
        "sizes_mb": {k: _size(v) / 1e6 for k, v in artifacts.items()},
        "latency_ms": {k: 1000 * v for k, v in
                       {s: timing[s]["median"] for s in sides}.items()},
        "int8_vs_float": {
            fmt: matched(dets[f"{fmt} float32"], dets[f"{fmt} int8"])
            for fmt in ("litert", "onnx")},
        "float_artifacts_vs_keras": {
            fmt: matched(dets["keras float32"], dets[f"{fmt} float32"])
            for fmt in ("litert", "onnx")},
    }
    with open(os.path.join(out, "ssdlite.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    if verbose:
        print(f"weights: {weights}; photos: {', '.join(names)}")
        print(f"CPU: {result['machine']['cpu']} ({result['machine']['cpu_kind']}), "
              f"load {result['machine']['load_average']}, threads {threads}")
        for side, ms in result["latency_ms"].items():
            print(f"  latency {side:22s} {ms:8.1f} ms")
        for name, mb in result["sizes_mb"].items():
            print(f"  size {name:22s} {mb:8.2f} MB")
        for key in ("int8_vs_float", "float_artifacts_vs_keras"):
            for fmt, m in result[key].items():
                print(f"  {key} {fmt}: {m}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--out", default=os.path.join(common.results_dir(), SECTION))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    run(args.out, checkpoint=args.checkpoint, rounds=args.rounds, threads=args.threads)


if __name__ == "__main__":
    main()
