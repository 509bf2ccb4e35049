"""COCO-style AP (AP@[.5:.95], AP50, AP75, ...) through pycocotools.

pycocotools is an optional dependency: `pip install keras-ssd[coco]`.
"""

import contextlib
import io

import numpy as np

from keras_ssd.evaluation.voc import _collect

_STAT_NAMES = (
    "mAP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def require_pycocotools():
    """Import pycocotools or raise an ImportError saying how to install it."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ImportError(
            "COCO-style AP needs pycocotools, which is not installed: "
            "pip install 'keras-ssd[coco]' (or pip install pycocotools)"
        ) from e
    return COCO, COCOeval


def coco_map(detections, ground_truths, num_classes, class_names=None, verbose=0,
             category_ids=None):
    """COCO box AP of detections against ground truth, computed by pycocotools.

    Inputs are those of `voc_map` (per-image dicts, continuous pixel xyxy,
    0-based labels). Ground-truth boxes flagged `difficult` become
    `iscrowd=1` regions (the convention `COCODataset` uses for crowd
    annotations: matches to them are ignored). Box areas are used for the
    small/medium/large split (official COCO uses mask areas there, so
    `AP_small/medium/large` can differ slightly; `mAP`, `AP50` and `AP75` do
    not depend on it). COCO only scores the 100 best detections per image.

    Args:
        detections: list of per-image dicts `boxes`, `scores`, `labels`.
        ground_truths: list of per-image dicts `boxes`, `labels`, optional
            `difficult` (same order).
        num_classes: int.
        class_names: optional names for `AP_by_name`.
        verbose: 1 prints pycocotools' summary table.
        category_ids: optional COCO category id of each label (e.g. a
            `COCODataset`'s `category_ids`): the ids the COCO objects use
            (default `label + 1`). The figures do not depend on it.

    Returns:
        dict: `mAP` (AP@[.5:.95]), `AP50`, `AP75`, `AP_small`, `AP_medium`,
        `AP_large`, `AR1`, `AR10`, `AR100`, `AR_small`, `AR_medium`,
        `AR_large` (floats, -1 where COCO has nothing to measure), `AP`
        per-class AP@[.5:.95] array (nan for classes without ground truth),
        `AP_by_name`, `classes_without_ground_truth`.

    Raises:
        ImportError: pycocotools is missing (with the install command).
        ValueError: malformed inputs (as `voc_map`).
    """
    COCO, COCOeval = require_pycocotools()
    num_classes = int(num_classes)
    class_names, category_ids = _check_coco_arguments(num_classes, class_names,
                                                      category_ids)
    dets, gts = _collect(detections, ground_truths, num_classes)
    images, annotations, results, num_gt = _coco_objects(
        dets, gts, list(ground_truths), category_ids, num_classes)
    ap = np.full((num_classes,), np.nan)
    out = {"classes_without_ground_truth": [int(c) for c in np.nonzero(num_gt == 0)[0]]}
    if not results or num_gt.sum() == 0:
        for name in _STAT_NAMES:
            out[name] = 0.0 if num_gt.sum() else float("nan")
        ap[num_gt > 0] = 0.0
    else:
        gt = COCO()
        gt.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": category_ids[c], "name": class_names[c]}
                           for c in range(num_classes)],
        }
        ev = _run_cocoeval(gt, results, COCOeval, verbose)
        for name, value in zip(_STAT_NAMES, ev.stats):
            out[name] = float(value)
        # precision: (iou thresholds, recall points, classes, areas, max dets)
        precision = ev.eval["precision"][:, :, :, 0, -1]
        for c in np.nonzero(num_gt)[0]:
            # pycocotools orders its categories by id (`params.catIds`).
            p = precision[:, :, list(ev.params.catIds).index(category_ids[c])]
            p = p[p > -1]
            ap[c] = float(p.mean()) if p.size else 0.0
    out["AP"] = ap
    out["AP_by_name"] = {n: float(v) for n, v in zip(class_names, ap)}
    return out


def _check_coco_arguments(num_classes, class_names, category_ids):
    """`(class_names, category_ids)`, defaulted and checked."""
    if class_names is None:
        class_names = [f"class_{c}" for c in range(num_classes)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"coco_map: class_names has {len(class_names)} names for {num_classes} classes"
        )
    if category_ids is None:
        category_ids = range(1, num_classes + 1)
    category_ids = [int(c) for c in category_ids]
    if len(category_ids) != num_classes or len(set(category_ids)) != num_classes:
        raise ValueError(f"coco_map: category_ids must be {num_classes} distinct ids, got "
                         f"{category_ids}")
    return class_names, category_ids


def _xywh(box):
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def _coco_objects(dets, gts, ground_truths, category_ids, num_classes):
    """pycocotools' `images`, `annotations` and `results` lists, and the
    non-difficult ground-truth boxes per class."""
    images, annotations, results = [], [], []
    num_gt = np.zeros((num_classes,), dtype=np.int64)
    for i, ((g_boxes, g_labels, g_diff), (d_boxes, scores, d_labels)) in enumerate(
        zip(gts, dets)
    ):
        image = {"id": i}
        for key in ("width", "height"):
            if ground_truths[i].get(key) is not None:
                image[key] = int(ground_truths[i][key])
        images.append(image)
        for box, label, diff in zip(g_boxes, g_labels, g_diff):
            bbox = _xywh(box)
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": category_ids[int(label)], "bbox": bbox,
                                "area": bbox[2] * bbox[3], "iscrowd": int(bool(diff))})
            if not diff:
                num_gt[label] += 1
        results.extend({"image_id": i, "category_id": category_ids[int(label)],
                        "bbox": _xywh(box), "score": float(score)}
                       for box, score, label in zip(d_boxes, scores, d_labels))
    return images, annotations, results, num_gt


def _run_cocoeval(gt, results, COCOeval, verbose):
    """pycocotools' evaluate / accumulate / summarize, its prints kept
    (summary table only with `verbose`)."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    if verbose:
        ev.summarize()
    else:
        with contextlib.redirect_stdout(sink):
            ev.summarize()
    return ev
