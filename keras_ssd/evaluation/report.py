"""An evaluation report: the figures people compare detectors with, per class.

`detection_report(detections, ground_truths, class_names)` computes, from
the per-image detections and ground truth that `voc_map` takes:

* VOC07 11-point mAP and VOC2010+ area mAP at IoU 0.5 (`voc_map`, the
  devkit's protocol);
* COCO-style mAP50 and mAP50-95: 101-point interpolated AP at IoU 0.50,
  0.55, ..., 0.95, the 100 best detections per image and class, matched as
  pycocotools' `COCOeval` matches them (greedy by score, a detection takes
  the unmatched ground-truth box of highest IoU >= the threshold; a
  "difficult" box is a crowd region: IoU over the detection's area, any
  number of matches, ignored). Own numpy code, checked equal to
  pycocotools in tests/evaluation/test_report.py;
* per class: ground-truth and detection counts, precision and recall at one
  confidence threshold for all classes, the one that maximises the mean F1
  over the classes at IoU 0.5 (the convention of Ultralytics' `val`), and
  the precision-recall curve at IoU 0.5;
* a confusion matrix at that threshold (class-agnostic matching at IoU
  0.5, with a "background" row and column for missed objects and detections
  of nothing).

`write_report_plots` draws `pr_curve.png` and `confusion_matrix.png`
(matplotlib, `pip install keras-ssd[plot]`); `format_report_table` is the
terminal table. numpy only, no TensorFlow.
"""

import numpy as np

from keras_ssd.evaluation.voc import voc_map

#: COCO's IoU thresholds 0.50:0.05:0.95 (built as pycocotools builds them).
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1,
                                  endpoint=True)
#: COCO's 101 recall points.
COCO_RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1,
                                 endpoint=True)
#: Detections per image COCO scores.
COCO_MAX_DETECTIONS = 100

#: Confidence grid on which precision, recall and F1 are sampled.
_CONFIDENCE_GRID = np.linspace(0.0, 1.0, 1001)


def _arrays(record, difficult=True):
    boxes = np.asarray(record.get("boxes", []), dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(record.get("labels", []), dtype=np.int64).reshape(-1)
    out = [boxes, labels]
    if difficult:
        diff = record.get("difficult")
        diff = (np.zeros(len(labels), bool) if diff is None
                else np.asarray(diff, dtype=bool).reshape(-1))
        out.append(diff)
    else:
        out.append(np.asarray(record.get("scores", []), dtype=np.float64).reshape(-1))
    return out


def _iou(a, b, crowd=None):
    """IoU of boxes `a` (N, 4) with `b` (M, 4); where `crowd[j]`, the
    intersection over `a`'s area (COCO's crowd rule)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None and np.any(crowd):
        union = np.where(crowd[None, :], area_a[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _match_coco(det_boxes, gt_boxes, gt_crowd, thresholds):
    """COCOeval's `evaluateImg` matching for one image and class.

    `det_boxes` sorted by score (highest first). Returns `(matched, ignored)`,
    bool arrays `(T, D)`: detection d is a true positive / is ignored (it
    matched a crowd box) at threshold t.
    """
    t_count, d_count = len(thresholds), len(det_boxes)
    matched = np.zeros((t_count, d_count), bool)
    ignored = np.zeros((t_count, d_count), bool)
    if d_count == 0 or len(gt_boxes) == 0:
        return matched, ignored
    order = np.argsort(gt_crowd, kind="mergesort")  # ordinary boxes first
    gt_boxes, gt_crowd = gt_boxes[order], gt_crowd[order]
    ious = _iou(det_boxes, gt_boxes, gt_crowd)
    for ti, t in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), bool)
        for d in range(d_count):
            best, m = min(t, 1 - 1e-10), -1
            for g in range(len(gt_boxes)):
                if taken[g] and not gt_crowd[g]:
                    continue
                if m > -1 and not gt_crowd[m] and gt_crowd[g]:
                    break
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m == -1:
                continue
            taken[m] = True
            matched[ti, d] = not gt_crowd[m]
            ignored[ti, d] = bool(gt_crowd[m])
    return matched, ignored


def _interpolated_ap(tp, fp, scores, num_gt, points=COCO_RECALL_POINTS):
    """COCOeval's `accumulate` for one class and threshold: AP over `points`."""
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order]).astype(np.float64)
    fps = np.cumsum(fp[order]).astype(np.float64)
    recall = tps / num_gt
    precision = tps / (fps + tps + np.spacing(1))
    q = np.zeros(len(points))
    if len(precision):
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        inds = np.searchsorted(recall, points, side="left")
        valid = inds < len(envelope)
        q[valid] = envelope[inds[valid]]
    return float(np.mean(q))


def coco_style_map(detections, ground_truths, num_classes,
                   thresholds=COCO_IOU_THRESHOLDS, max_detections=COCO_MAX_DETECTIONS):
    """COCO-style AP per class and IoU threshold (pycocotools' numbers, numpy).

    Args:
        detections: per-image dicts `boxes` (pixel xyxy), `scores`, `labels`.
        ground_truths: per-image dicts `boxes`, `labels`, optional `difficult`
            (treated as COCO crowd regions, as `coco_map` does).
        num_classes: int.
        thresholds: IoU thresholds (default 0.50:0.05:0.95).
        max_detections: detections per image and class scored (COCO: 100).

    Returns:
        `(ap, num_gt)`: `ap` float array `(num_classes, T)` (nan for classes
        without ground truth), `num_gt` int array of non-crowd boxes per class.

    Example:

    >>> ap, n = coco_style_map(dets, gts, 20)
    >>> mAP50, mAP50_95 = np.nanmean(ap[:, 0]), np.nanmean(ap.mean(axis=1))
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    tp = [[] for _ in range(num_classes)]
    fp = [[] for _ in range(num_classes)]
    sc = [[] for _ in range(num_classes)]
    num_gt = np.zeros(num_classes, np.int64)
    for det, gt in zip(detections, ground_truths):
        gb, gl, gd = _arrays(gt)
        db, dl, ds = _arrays(det, difficult=False)
        for c in np.union1d(np.unique(gl), np.unique(dl)):
            if not 0 <= c < num_classes:
                continue
            g = gl == c
            num_gt[c] += int(np.sum(g & ~gd))
            d = np.nonzero(dl == c)[0]
            d = d[np.argsort(-ds[d], kind="mergesort")][:max_detections]
            matched, ignored = _match_coco(db[d], gb[g], gd[g], thresholds)
            tp[c].append(matched)
            fp[c].append(~matched & ~ignored)
            sc[c].append(np.where(ignored, np.nan, 0.0) + ds[d][None, :])
    ap = np.full((num_classes, len(thresholds)), np.nan)
    for c in range(num_classes):
        if num_gt[c] == 0:
            continue
        if not tp[c]:
            ap[c] = 0.0
            continue
        t_all = np.concatenate(tp[c], axis=1)
        f_all = np.concatenate(fp[c], axis=1)
        s_all = np.concatenate(sc[c], axis=1)
        for ti in range(len(thresholds)):
            keep = ~np.isnan(s_all[ti])
            ap[c, ti] = _interpolated_ap(t_all[ti, keep], f_all[ti, keep], s_all[ti, keep],
                                         num_gt[c])
    return ap, num_gt


def _pr_at_iou50(detections, ground_truths, num_classes):
    """Per class: scores, true-positive flags (IoU >= 0.5, COCO matching, all
    detections) and non-crowd ground-truth counts."""
    scores = [[] for _ in range(num_classes)]
    hits = [[] for _ in range(num_classes)]
    for det, gt in zip(detections, ground_truths):
        gb, gl, gd = _arrays(gt)
        db, dl, ds = _arrays(det, difficult=False)
        for c in np.unique(dl):
            if not 0 <= c < num_classes:
                continue
            d = np.nonzero(dl == c)[0]
            d = d[np.argsort(-ds[d], kind="mergesort")]
            g = gl == c
            matched, ignored = _match_coco(db[d], gb[g], gd[g], [0.5])
            keep = ~ignored[0]
            scores[c].append(ds[d][keep])
            hits[c].append(matched[0][keep])
    return ([np.concatenate(s) if s else np.zeros(0) for s in scores],
            [np.concatenate(h) if h else np.zeros(0, bool) for h in hits])


def _curves(scores, hits, num_gt):
    """Precision, recall (at `_CONFIDENCE_GRID`) and the PR curve of a class."""
    order = np.argsort(-scores, kind="mergesort")
    s, h = scores[order], hits[order].astype(np.float64)
    tps, fps = np.cumsum(h), np.cumsum(1.0 - h)
    recall = tps / max(num_gt, 1)
    precision = tps / np.maximum(tps + fps, 1e-12)
    # detections with score >= each grid confidence (s is sorted, highest first)
    counts = np.searchsorted(-s, -_CONFIDENCE_GRID, side="right").astype(np.int64)
    last = np.maximum(counts - 1, 0)
    p_grid = np.where(counts > 0, precision[last] if len(s) else 0.0, 0.0)
    r_grid = np.where(counts > 0, recall[last] if len(s) else 0.0, 0.0)
    return p_grid, r_grid, counts, (recall, precision)


def confusion_matrix(detections, ground_truths, num_classes, confidence, iou_threshold=0.5):
    """Detection confusion matrix `(C + 1, C + 1)`: rows predicted class,
    columns true class, the last row / column "background".

    Detections with score >= `confidence` are paired with ground-truth boxes
    class-agnostically (pairs of highest IoU >= `iou_threshold` first, each
    box and detection used once): a pair counts at (predicted, true), a
    missed box at (background, true), an unpaired detection at
    (predicted, background). Difficult boxes and the detections paired with
    them are left out.
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    bg = num_classes
    for det, gt in zip(detections, ground_truths):
        gb, gl, gd = _arrays(gt)
        db, dl, ds = _arrays(det, difficult=False)
        keep = (ds >= confidence) & (dl >= 0) & (dl < num_classes)
        db, dl = db[keep], dl[keep]
        ious = _iou(db, gb)
        pairs = np.argwhere(ious >= iou_threshold)
        pairs = pairs[np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="mergesort")] \
            if len(pairs) else pairs
        used_d, used_g = np.zeros(len(db), bool), np.zeros(len(gb), bool)
        for d, g in pairs:
            if used_d[d] or used_g[g]:
                continue
            used_d[d] = used_g[g] = True
            if not gd[g] and 0 <= gl[g] < num_classes:
                matrix[dl[d], gl[g]] += 1
        for g in np.nonzero(~used_g & ~gd)[0]:
            if 0 <= gl[g] < num_classes:
                matrix[bg, gl[g]] += 1
        for d in np.nonzero(~used_d)[0]:
            matrix[dl[d], bg] += 1
    return matrix


def _nan_to_none(value):
    value = float(value)
    return None if value != value else value


def detection_report(detections, ground_truths, class_names):
    """Every figure of the evaluation report (see the module docstring).

    Args:
        detections: per-image dicts `boxes` (pixel xyxy), `scores`, `labels`
            (0-based), as `evaluate(..., return_detections=True)` returns.
        ground_truths: per-image dicts `boxes`, `labels`, optional
            `difficult` (same order).
        class_names: list of names, one per label.

    Returns:
        JSON-ready dict: `mAP50_voc07`, `mAP50_voc`, `mAP50`, `mAP50_95`,
        `precision`, `recall`, `f1`, `confidence` (the report's threshold),
        `num_images`, `num_ground_truth`, `num_detections` (at the
        threshold), `classes` (one dict per class: `name`, `ground_truth`,
        `detections`, `precision`, `recall`, `AP50_voc07`, `AP50_voc`,
        `AP50`, `AP50_95`; None where a class has no ground truth),
        `confusion_matrix` (`labels` with "background" last, `matrix` rows
        predicted, columns true) and `pr_curves` (per class `recall`,
        `precision` at IoU 0.5, thinned to at most 200 points).

    Example:

    >>> report = detection_report(dets, gts, ["cat", "dog"])
    >>> print(format_report_table(report))
    """
    names = [str(n) for n in class_names]
    k = len(names)
    detections, ground_truths = list(detections), list(ground_truths)
    if len(detections) != len(ground_truths):
        raise ValueError(f"detection_report: {len(detections)} detection records for "
                         f"{len(ground_truths)} images")
    v07 = voc_map(detections, ground_truths, num_classes=k, use_07_metric=True)
    v10 = voc_map(detections, ground_truths, num_classes=k, use_07_metric=False)
    coco_ap, num_gt = coco_style_map(detections, ground_truths, k)
    scores, hits = _pr_at_iou50(detections, ground_truths, k)
    curves = [_curves(scores[c], hits[c], int(num_gt[c])) for c in range(k)]
    with_gt = num_gt > 0
    if with_gt.any():
        p = np.stack([curves[c][0] for c in range(k)])[with_gt]
        r = np.stack([curves[c][1] for c in range(k)])[with_gt]
        f1 = (2 * p * r / np.maximum(p + r, 1e-12)).mean(axis=0)
        best = int(np.argmax(f1))
    else:
        best = len(_CONFIDENCE_GRID) // 2
    confidence = float(_CONFIDENCE_GRID[best])
    classes = []
    for c, name in enumerate(names):
        p_c, r_c, counts, _ = curves[c]
        has = bool(num_gt[c])
        classes.append({
            "name": name,
            "ground_truth": int(num_gt[c]),
            "detections": int(counts[best]),
            "precision": float(p_c[best]) if has else None,
            "recall": float(r_c[best]) if has else None,
            "AP50_voc07": _nan_to_none(v07["AP"][c]),
            "AP50_voc": _nan_to_none(v10["AP"][c]),
            "AP50": _nan_to_none(coco_ap[c, 0]),
            "AP50_95": _nan_to_none(np.mean(coco_ap[c])),
        })
    scored = [e for e in classes if e["ground_truth"]]
    mean = (lambda key: float(np.mean([e[key] for e in scored])) if scored else 0.0)
    pr_curves = {}
    for c, name in enumerate(names):
        recall, precision = curves[c][3]
        step = max(1, len(recall) // 200)
        pr_curves[name] = {"recall": [round(float(v), 5) for v in recall[::step]],
                           "precision": [round(float(v), 5) for v in precision[::step]]}
    matrix = confusion_matrix(detections, ground_truths, k, confidence)
    precision, recall = mean("precision"), mean("recall")
    return {
        "num_images": len(detections),
        "num_ground_truth": int(num_gt.sum()),
        "num_detections": int(sum(e["detections"] for e in classes)),
        "confidence": confidence,
        "precision": precision,
        "recall": recall,
        "f1": float(2 * precision * recall / max(precision + recall, 1e-12)),
        "mAP50_voc07": float(v07["mAP"]),
        "mAP50_voc": float(v10["mAP"]),
        "mAP50": mean("AP50"),
        "mAP50_95": mean("AP50_95"),
        "classes": classes,
        "confusion_matrix": {"labels": names + ["background"],
                             "rows": "predicted", "columns": "true",
                             "iou_threshold": 0.5, "matrix": matrix.tolist()},
        "pr_curves": pr_curves,
    }


def format_report_table(report, use_07_metric=True):
    """The report as the terminal table (percent figures).

    Args:
        report: `detection_report`'s dict.
        use_07_metric: the VOC column: 11-point (VOC2007) or area AP.
    """
    voc_key = "AP50_voc07" if use_07_metric else "AP50_voc"
    head = ("class", "images", "objects", "dets", "P", "R",
            "VOC07" if use_07_metric else "VOC10", "AP50", "AP50-95")
    width = max([len("all")] + [len(e["name"]) for e in report["classes"]] + [5])

    def pct(v):
        return "    n/a" if v is None else f"{100 * v:7.1f}"

    lines = [f"{head[0]:<{width}} {head[1]:>7} {head[2]:>8} {head[3]:>7} {head[4]:>7} "
             f"{head[5]:>7} {head[6]:>8} {head[7]:>7} {head[8]:>8}"]
    lines.append(f"{'all':<{width}} {report['num_images']:>7} "
                 f"{report['num_ground_truth']:>8} {report['num_detections']:>7} "
                 f"{pct(report['precision'])} {pct(report['recall'])} "
                 f"{pct(report['m' + voc_key]):>8} {pct(report['mAP50'])} "
                 f"{pct(report['mAP50_95']):>8}")
    for e in report["classes"]:
        lines.append(f"{e['name']:<{width}} {'':>7} {e['ground_truth']:>8} "
                     f"{e['detections']:>7} {pct(e['precision'])} {pct(e['recall'])} "
                     f"{pct(e[voc_key]):>8} {pct(e['AP50'])} {pct(e['AP50_95']):>8}")
    lines.append(f"P, R: at confidence {report['confidence']:.3f} (the best mean F1); "
                 f"{head[6]}: VOC {'11-point' if use_07_metric else 'area'} AP at IoU 0.5; "
                 "AP50, AP50-95: COCO-style (101-point)")
    return "\n".join(lines)


def write_report_plots(report, folder):
    """Draw `pr_curve.png` and `confusion_matrix.png` into `folder`.

    Returns:
        list of the written paths.

    Raises:
        ImportError: matplotlib is missing (with the install command).
    """
    import os

    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the evaluation plots need matplotlib: "
                          "pip install 'keras-ssd[plot]'") from None
    paths = []
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=110)
    for e in report["classes"]:
        curve = report["pr_curves"][e["name"]]
        if e["ground_truth"] == 0:
            continue
        ap = e["AP50"] or 0.0
        ax.plot(curve["recall"] or [0], curve["precision"] or [0], lw=1.2,
                label=f"{e['name']} {ap:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall at IoU 0.5 (all classes mAP50 {report['mAP50']:.3f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="class AP50")
    fig.tight_layout()
    path = os.path.join(folder, "pr_curve.png")
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)

    cm = report["confusion_matrix"]
    matrix = np.asarray(cm["matrix"], dtype=np.float64)
    labels = cm["labels"]
    totals = matrix.sum(axis=0, keepdims=True)
    norm = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(labels)
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"confusion matrix (confidence >= {report['confidence']:.3f}, IoU 0.5; "
                 "columns sum to 1)", fontsize=9)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center",
                            fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path = os.path.join(folder, "confusion_matrix.png")
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
    return paths
