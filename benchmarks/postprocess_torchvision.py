"""Post-processing vs torchvision's `postprocess_detections`, same inputs.

Builds on `benchmarks/postprocess.py` (its synthetic head outputs and its
methods "ours" = `DecodeDetections` and "numpy_loop" = plain per-class
Python-loop NMS) and registers a "torchvision" method there: torchvision's
`SSD.postprocess_detections` (score 0.01, NMS 0.45, top 400 per class, 200
per image: its defaults, the Caffe settings) fed with the very same arrays:
`bbox_regression = predictions[..., :4]`, `cls_logits = predictions[..., 4:]`,
our priors as pixel xyxy anchors (its box coder weights 10, 10, 5, 5 are our
variances 0.1, 0.2). Cases: "realistic" (confident background, 20-40
objects) and "worst" (a random head: every class sends 400 candidates to
NMS), batch 1 and 8, ms per image, sides alternated. torchvision clips
decoded boxes to the image before NMS, so ours runs with `clip_boxes=True`
here; the note gives the share of torchvision's detections ours reproduces
(same label, IoU >= 0.9).
"""

import numpy as np

from benchmarks import common
from benchmarks import postprocess as pp

SECTION = "postprocess"


def _torchvision(config, options):
    torch, _ = common.import_torchvision()
    if torch is None:
        raise ImportError(common.TORCH_MISSING)
    from torchvision.models.detection import ssd300_vgg16

    from keras_ssd.anchors import generate_anchors
    from keras_ssd.boxes import cxcywh_to_xyxy

    size = config.image_size
    model = ssd300_vgg16(
        weights=None, weights_backbone=None, num_classes=config.num_classes + 1,
        score_thresh=options["confidence_threshold"], nms_thresh=options["iou_threshold"],
        topk_candidates=options["max_candidates_per_class"],
        detections_per_img=options["top_k"]).eval()
    anchors = torch.from_numpy(
        (cxcywh_to_xyxy(generate_anchors(config)) * size).astype(np.float32))

    def run(predictions):
        t = torch.from_numpy(predictions)
        head = {"bbox_regression": t[..., :4], "cls_logits": t[..., 4:]}
        batch = t.shape[0]
        with torch.inference_mode():
            return model.postprocess_detections(head, [anchors] * batch,
                                                [(size, size)] * batch)

    return run


pp.register_method("torchvision", _torchvision)


def agreement(ours_out, tv_out, size):
    """Share of torchvision's detections that ours reproduces (same label,
    IoU >= 0.9), over the batch."""
    from keras_ssd.boxes import iou

    hit = total = 0
    for b, det in enumerate(tv_out):
        tb = det["boxes"].numpy() / size
        tl = det["labels"].numpy() - 1
        n = int(ours_out["num_detections"][b])
        ob = ours_out["boxes"][b, :n]
        ol = ours_out["labels"][b, :n]
        total += len(tb)
        if not len(tb) or not n:
            continue
        m = iou(tb, ob)
        m[tl[:, None] != ol[None, :]] = 0
        hit += int((m.max(1) >= 0.9).sum())
    return hit / total if total else 1.0


def run(quick=False, batches=(1, 8), cases=("realistic", "worst"), with_numpy=True):
    from keras_ssd.config import SSDConfig

    config = SSDConfig.ssd300(num_classes=20)
    options = dict(pp.DEFAULT_OPTIONS)
    torch, _ = common.import_torchvision()
    names = ["ours"] + (["torchvision"] if torch is not None else [])
    if torch is None:
        print(common.TORCH_MISSING)
    # torchvision clips decoded boxes to the image before NMS: ours does the
    # same here (clip_boxes=True), so both compute the same detections.
    fns = {name: pp.METHODS[name](config, dict(options, clip_boxes=True) if name == "ours"
                                  else options) for name in names}
    slow = pp.METHODS["numpy_loop"](config, options) if with_numpy else None
    rows = []
    for case in cases:
        for batch in batches:
            x = pp.make_predictions(config, case, batch, seed=batch)
            sides = {name: (lambda f=fn: f(x)) for name, fn in fns.items()}
            res = common.alternate(sides, warmup=3, rounds=5 if quick else 15)
            ours_ms = 1e3 * res["ours"]["median"] / batch
            tv_ms = (1e3 * res["torchvision"]["median"] / batch) if torch is not None else None
            note = "vs torchvision postprocess_detections"
            if torch is not None:
                agree = agreement(fns["ours"](x), fns["torchvision"](x), config.image_size)
                note += f"; {100 * agree:.1f}% of its detections reproduced"
            rows.append(common.row(
                SECTION, f"decode+NMS {case}", ours_ms, "ms/img", theirs=tv_ms,
                higher_is_better=False, floor=1.0 if torch is not None else None,
                batch=batch, note=note))
            if slow is not None and batch == 1:
                np_res = common.alternate({"numpy": lambda: slow(x)}, warmup=1,
                                          rounds=3 if quick else 5)
                np_ms = 1e3 * np_res["numpy"]["median"] / batch
                rows.append(common.row(
                    SECTION, f"decode+NMS {case} vs Python-loop NMS", ours_ms, "ms/img",
                    theirs=np_ms, higher_is_better=False, batch=batch,
                    note="theirs = plain per-class Python-loop greedy NMS (numpy)"))
    return rows
