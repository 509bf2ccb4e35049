"""Pascal VOC mean average precision, exactly as the VOC devkit computes it.

The protocol (the devkit's `VOCevaldet` and its Python port `voc_eval`):

* per class, the detections of every image are sorted by score, highest
  first (ties keep their input order);
* each detection is compared with the ground-truth boxes of its class in its
  image; its best-IoU box is a match if the IoU is above `iou_threshold`
  (strictly);
* a match to a "difficult" box is ignored (neither true nor false positive);
* a match to a box that an earlier (higher-scoring) detection already took is
  a duplicate, a false positive; so is a detection without a match;
* recall's denominator is the number of non-difficult ground-truth boxes of
  the class over ALL images, including images without any detection;
* AP is the 11-point interpolated AP (VOC2007, `use_07_metric=True`) or the
  area under the monotone precision envelope (VOC2010 and later);
* mAP is the mean over the classes that have at least one non-difficult
  ground-truth box; the others get AP = nan and are listed in
  `classes_without_ground_truth`.

Boxes are continuous pixel `(xmin, ymin, xmax, ymax)` and IoU is computed
continuously. The devkit works on 1-based inclusive pixel indices and adds 1
to widths and heights; after the `xmin - 1, ymin - 1` conversion the data
loaders apply, the continuous IoU is the same number.
"""

import numpy as np

from keras_ssd import boxes as box_utils

# The devkit's 11 recall thresholds, built the same way (np.arange) so that
# rounding at 0.3, 0.6 and 0.7 matches it to the last bit.
_ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)


def average_precision(recall, precision, use_07_metric=True):
    """AP from a precision/recall curve.

    Args:
        recall: 1-D array, recall after each detection (non-decreasing).
        precision: 1-D array of the same length.
        use_07_metric: bool. `True`: VOC2007 11-point AP, the mean over
            `t = 0, 0.1, ..., 1` of the highest precision at recall >= t (0
            when recall never reaches t). `False`: area under the monotone
            (non-increasing) precision envelope.

    Returns:
        float AP in [0, 1].
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(
            "average_precision: recall and precision must be 1-D arrays of the "
            f"same length, got shapes {recall.shape} and {precision.shape}"
        )
    if recall.size == 0:
        return 0.0
    if use_07_metric:
        # suffix maximum of precision, then for each t the first index with
        # recall >= t (recall is sorted).
        best_after = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, _ELEVEN_POINTS, side="left")
        reached = idx < recall.size
        p = np.where(reached, best_after[np.minimum(idx, recall.size - 1)], 0.0)
        return float(np.sum(p) / 11.0)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _as_image_list(items, name):
    if isinstance(items, dict):
        raise ValueError(
            f"voc_map: {name} must be a list with one dict per image, got a single dict"
        )
    try:
        return list(items)
    except TypeError:
        raise ValueError(
            f"voc_map: {name} must be a list with one dict per image, got "
            f"{type(items).__name__}"
        )


def _field(record, key, where, required=True):
    if not isinstance(record, dict):
        raise ValueError(f"voc_map: {where} must be a dict, got {type(record).__name__}")
    if key not in record or record[key] is None:
        if required:
            raise ValueError(f"voc_map: {where} has no '{key}' entry")
        return None
    return record[key]


def _check_boxes(value, where):
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"voc_map: {where} must have shape (num_boxes, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"voc_map: {where} contains non-finite values")
    return arr


def _check_labels(value, count, num_classes, where):
    arr = np.asarray(value)
    if arr.size == 0 and count == 0:
        return np.zeros((0,), dtype=np.int64)
    arr = arr.reshape(-1)
    if arr.shape[0] != count:
        raise ValueError(f"voc_map: {where} has {arr.shape[0]} entries for {count} boxes")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"voc_map: {where} must hold integer class indices")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"voc_map: {where} must hold integer class indices, got {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        raise ValueError(
            f"voc_map: {where} holds class {int(arr[bad][0])}, outside 0..{num_classes - 1} "
            "(labels are 0-based, background excluded)"
        )
    return arr


def _collect(detections, ground_truths, num_classes):
    """Validate the inputs and flatten them into concatenated arrays."""
    detections = _as_image_list(detections, "detections")
    ground_truths = _as_image_list(ground_truths, "ground_truths")
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"voc_map: got detections for {len(detections)} images but ground truth "
            f"for {len(ground_truths)}; pass one entry per image (empty arrays when "
            "an image has no detection)"
        )
    gts, dets = [], []
    for i, (det, gt) in enumerate(zip(detections, ground_truths)):
        where = f"ground_truths[{i}]"
        g_boxes = _check_boxes(_field(gt, "boxes", where), f"{where}['boxes']")
        g_labels = _check_labels(
            _field(gt, "labels", where), len(g_boxes), num_classes, f"{where}['labels']"
        )
        diff = _field(gt, "difficult", where, required=False)
        if diff is None:
            g_diff = np.zeros((len(g_boxes),), dtype=bool)
        else:
            g_diff = np.asarray(diff).reshape(-1).astype(bool)
            if g_diff.shape[0] != len(g_boxes):
                raise ValueError(
                    f"voc_map: {where}['difficult'] has {g_diff.shape[0]} entries for "
                    f"{len(g_boxes)} boxes"
                )
        where = f"detections[{i}]"
        d_boxes = _check_boxes(_field(det, "boxes", where), f"{where}['boxes']")
        scores = np.asarray(_field(det, "scores", where), dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(d_boxes):
            raise ValueError(
                f"voc_map: {where}['scores'] has {scores.shape[0]} entries for "
                f"{len(d_boxes)} boxes"
            )
        if not np.isfinite(scores).all():
            raise ValueError(f"voc_map: {where}['scores'] contains non-finite values")
        d_labels = _check_labels(
            _field(det, "labels", where), len(d_boxes), num_classes, f"{where}['labels']"
        )
        gts.append((g_boxes, g_labels, g_diff))
        dets.append((d_boxes, scores, d_labels))
    return dets, gts


def voc_map(
    detections,
    ground_truths,
    num_classes,
    iou_threshold=0.5,
    use_07_metric=True,
    class_names=None,
):
    """Pascal VOC mean average precision (the devkit's numbers).

    Args:
        detections: list with one dict per image: `"boxes"` `(K, 4)`
            continuous pixel xyxy, `"scores"` `(K,)`, `"labels"` `(K,)`
            0-based class indices. Images without detections need an entry
            with empty arrays so that the list lines up with `ground_truths`.
        ground_truths: list with one dict per image (same order): `"boxes"`
            `(G, 4)`, `"labels"` `(G,)` 0-based, optional `"difficult"`
            `(G,)` bool (default all False). Dataset records can be passed
            as they are.
        num_classes: int, number of object classes (background excluded).
        iou_threshold: float, a detection matches a box when their IoU is
            strictly above this (VOC: 0.5).
        use_07_metric: bool, 11-point AP (VOC2007) when True, area under the
            precision envelope (VOC2010+) when False.
        class_names: optional list of `num_classes` names for `AP_by_name`
            (default `class_0`, `class_1`, ...).

    Returns:
        dict with
        - `"mAP"`: float, mean AP over the classes that have ground truth
          (nan when no class has any);
        - `"AP"`: `(num_classes,)` float64 array, nan for classes without
          non-difficult ground truth;
        - `"AP_by_name"`: dict name -> AP;
        - `"classes_without_ground_truth"`: list of class indices excluded
          from the mean;
        - `"num_ground_truth"`: `(num_classes,)` int array of non-difficult
          boxes; `"num_detections"`: `(num_classes,)` int array;
        - `"recall"`: `(num_classes,)` final recall per class (nan without
          ground truth);
        - `"precision_recall"`: list, per class, of `(precision, recall)`
          arrays over the score-sorted detections (ignored ones removed).

    Example:

    >>> gt = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> det = [{"boxes": [[0, 0, 10, 9]], "scores": [0.9], "labels": [0]}]
    >>> voc_map(det, gt, num_classes=1)["mAP"]
    1.0
    """
    num_classes, class_names = _check_voc_arguments(num_classes, iou_threshold, class_names)
    dets, gts = _collect(detections, ground_truths, num_classes)
    # Global ground-truth numbering so that "already taken" is one key.
    gt_offsets = np.cumsum([0] + [len(g[0]) for g in gts])
    all_gt_labels = (
        np.concatenate([g[1] for g in gts]) if gts else np.zeros((0,), np.int64)
    )
    all_gt_diff = np.concatenate([g[2] for g in gts]) if gts else np.zeros((0,), bool)
    num_gt = np.bincount(all_gt_labels[~all_gt_diff], minlength=num_classes)
    det_scores, det_labels, det_match, det_iou = _best_matches(dets, gts, gt_offsets)
    matched = (det_iou > iou_threshold) & (det_match >= 0)
    ignored = np.zeros_like(matched)
    ignored[matched] = all_gt_diff[det_match[matched]]

    ap = np.full((num_classes,), np.nan)
    final_recall = np.full((num_classes,), np.nan)
    curves = []
    # One stable sort by class then descending score.
    order = np.lexsort((-det_scores, det_labels))
    bounds = np.searchsorted(det_labels[order], np.arange(num_classes + 1), side="left")
    for c in range(num_classes):
        idx = order[bounds[c] : bounds[c + 1]]
        idx = idx[~ignored[idx]]
        precision, recall = _precision_recall(matched[idx], det_match[idx], num_gt[c])
        curves.append((precision, recall))
        if num_gt[c]:
            ap[c] = average_precision(recall, precision, use_07_metric=use_07_metric)
            final_recall[c] = recall[-1] if recall.size else 0.0
    has_gt = num_gt > 0
    return {
        "mAP": float(np.mean(ap[has_gt])) if has_gt.any() else float("nan"),
        "AP": ap,
        "AP_by_name": {name: float(v) for name, v in zip(class_names, ap)},
        "classes_without_ground_truth": [int(c) for c in np.nonzero(~has_gt)[0]],
        "num_ground_truth": num_gt.astype(np.int64),
        "num_detections": np.bincount(det_labels, minlength=num_classes).astype(np.int64),
        "recall": final_recall,
        "precision_recall": curves,
    }


def _check_voc_arguments(num_classes, iou_threshold, class_names):
    """`(num_classes, class_names)` checked (`ValueError` naming the argument)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(
            f"voc_map: num_classes must be a positive int, got {num_classes!r}")
    num_classes = int(num_classes)
    if num_classes <= 0:
        raise ValueError(f"voc_map: num_classes must be a positive int, got {num_classes}")
    if not 0.0 <= float(iou_threshold) < 1.0:
        raise ValueError(f"voc_map: iou_threshold must lie in [0, 1), got {iou_threshold}")
    if class_names is None:
        return num_classes, [f"class_{c}" for c in range(num_classes)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"voc_map: class_names has {len(class_names)} names for {num_classes} classes"
        )
    return num_classes, class_names


def _best_matches(dets, gts, gt_offsets):
    """Every detection's score, label, best same-class ground truth (global
    index, -1 for none) and IoU with it, over all images.

    The devkit takes the argmax box whether or not it is already taken, so
    the match never depends on the order and can be computed up front.
    """
    det_scores, det_labels, det_match, det_iou = [], [], [], []
    for (d_boxes, scores, d_labels), (g_boxes, g_labels, _), off in zip(
        dets, gts, gt_offsets[:-1]
    ):
        k = len(d_boxes)
        if k == 0:
            continue
        match = np.full((k,), -1, dtype=np.int64)
        best = np.full((k,), -np.inf)
        if len(g_boxes):
            ious = box_utils.iou(d_boxes, g_boxes)
            ious = np.where(d_labels[:, None] == g_labels[None, :], ious, -np.inf)
            j = np.argmax(ious, axis=1)
            best = ious[np.arange(k), j]
            match = np.where(np.isfinite(best), j + off, -1)
        det_scores.append(scores)
        det_labels.append(d_labels)
        det_match.append(match)
        det_iou.append(best)
    if not det_scores:
        return (np.zeros((0,)), np.zeros((0,), np.int64), np.zeros((0,), np.int64),
                np.zeros((0,)))
    return tuple(np.concatenate(v) for v in (det_scores, det_labels, det_match, det_iou))


def _precision_recall(cand, keys, num_gt):
    """Precision and recall of one class's score-sorted detections (ignored
    ones removed): `cand` marks those above the IoU threshold, `keys` their
    ground truths; recall is NaN without ground truth."""
    keys = keys[cand]
    # The first (highest-scoring) detection on each ground-truth box is the
    # true positive, later ones are duplicates.
    first = np.zeros(keys.shape, dtype=bool)
    if keys.size:
        _, first_pos = np.unique(keys, return_index=True)
        first[first_pos] = True
    tp = np.zeros(cand.shape, dtype=bool)
    tp[np.nonzero(cand)[0]] = first
    tp_cum = np.cumsum(tp, dtype=np.float64)
    fp_cum = np.cumsum(~tp, dtype=np.float64)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    if num_gt == 0:
        return precision, np.full(precision.shape, np.nan)
    return precision, tp_cum / num_gt
