"""Pascal VOC mAP on hand-computed cases and against a loop-by-loop devkit port."""

import math

import numpy as np
import pytest

from keras_ssd.evaluation import average_precision, voc_map

A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
D = [50, 50, 60, 60]
FAR = [100, 100, 110, 110]


def gt(boxes, labels, difficult=None):
    out = {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels)}
    if difficult is not None:
        out["difficult"] = np.asarray(difficult, bool)
    return out


def det(boxes, scores, labels):
    return {
        "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, np.float32),
        "labels": np.asarray(labels),
    }


EMPTY_DET = det(np.zeros((0, 4)), [], [])


# ------------------------------------------------------------ hand-computed
def test_duplicates_are_false_positives_11_point_and_area():
    # dets sorted: TP(A), duplicate(A), TP(B), FP  -> precision 1, 1/2, 2/3, 1/2
    # recall .5, .5, 1, 1
    g = [gt([A, B], [0, 0])]
    d = [det([A, A, B, FAR], [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])]
    r07 = voc_map(d, g, num_classes=1, use_07_metric=True)
    # t = 0..0.5 (6 points) -> 1; t = 0.6..1 (5 points) -> 2/3
    assert r07["mAP"] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    r12 = voc_map(d, g, num_classes=1, use_07_metric=False)
    assert r12["mAP"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    prec, rec = r12["precision_recall"][0]
    np.testing.assert_allclose(prec, [1, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(rec, [0.5, 0.5, 1, 1])


def test_duplicate_with_higher_score_takes_the_box_first():
    # the lower-scoring detection comes first in the input but is the duplicate
    g = [gt([A], [0])]
    d = [det([A, [0, 0, 10, 9]], [0.3, 0.9], [0, 0])]
    prec, rec = voc_map(d, g, num_classes=1)["precision_recall"][0]
    np.testing.assert_allclose(prec, [1, 0.5])
    np.testing.assert_allclose(rec, [1, 1])


def test_difficult_matches_are_ignored_and_not_counted_in_recall():
    # D is difficult: detections on it are neither TP nor FP, and it is not in
    # the recall denominator. The one on A is a TP: AP 1.
    g = [gt([A, D], [0, 0], difficult=[False, True])]
    d = [det([D, A, D], [0.95, 0.9, 0.5], [0, 0, 0])]
    for use07 in (True, False):
        r = voc_map(d, g, num_classes=1, use_07_metric=use07)
        assert r["mAP"] == pytest.approx(1.0)
        assert r["num_ground_truth"][0] == 1
    # treating D as a normal box would give recall 1/2 after the first TP
    g_nd = [gt([A, D], [0, 0])]
    assert voc_map(d, g_nd, num_classes=1)["mAP"] == pytest.approx(1.0)
    d_missing_d = [det([A], [0.9], [0])]
    assert voc_map(d_missing_d, g, num_classes=1)["mAP"] == pytest.approx(1.0)
    assert voc_map(d_missing_d, g_nd, num_classes=1, use_07_metric=False)["mAP"] == (
        pytest.approx(0.5)
    )


def test_best_match_difficult_ignores_detection_even_if_it_overlaps_a_normal_box():
    # Detection X overlaps normal box N with IoU 0.6 and difficult box H with
    # IoU ~0.82: its best match is H, so it is ignored and N stays free for Y.
    n_box = [0, 0, 10, 10]
    h_box = [2, 0, 12, 10]
    x = [1.5, 0, 11.5, 10]  # IoU with H: 9.5/10.5, with N: 8.5/11.5
    g = [gt([n_box, h_box], [0, 0], difficult=[False, True])]
    d = [det([x, n_box], [0.9, 0.8], [0, 0])]
    r = voc_map(d, g, num_classes=1)
    prec, rec = r["precision_recall"][0]
    np.testing.assert_allclose(prec, [1.0])
    np.testing.assert_allclose(rec, [1.0])
    assert r["mAP"] == pytest.approx(1.0)


def test_ground_truth_counted_from_images_without_detections():
    # Image 1 has a box but no detection. An evaluator that only counts
    # ground truth of images with detections would report AP 1.
    g = [gt([A], [0]), gt([B], [0])]
    d = [det([A], [0.9], [0]), EMPTY_DET]
    r07 = voc_map(d, g, num_classes=1)
    assert r07["mAP"] == pytest.approx(6 / 11)  # recall 0.5: t = 0 .. 0.5
    assert r07["recall"][0] == pytest.approx(0.5)
    r12 = voc_map(d, g, num_classes=1, use_07_metric=False)
    assert r12["mAP"] == pytest.approx(0.5)
    wrong = voc_map(d[:1], g[:1], num_classes=1)
    assert wrong["mAP"] == pytest.approx(1.0)


def test_detections_on_images_without_ground_truth_are_false_positives():
    g = [gt([A], [0]), gt(np.zeros((0, 4)), [])]
    d = [det([A], [0.8], [0]), det([A], [0.9], [0])]
    # sorted: FP (0.9), TP (0.8): precision 0, 1/2; recall 0, 1
    for use07 in (True, False):
        r = voc_map(d, g, num_classes=1, use_07_metric=use07)
        assert r["mAP"] == pytest.approx(0.5)


def test_empty_detections_give_zero_ap():
    g = [gt([A], [0]), gt([B, D], [1, 1])]
    r = voc_map([EMPTY_DET, EMPTY_DET], g, num_classes=2)
    np.testing.assert_array_equal(r["AP"], [0.0, 0.0])
    assert r["mAP"] == 0.0
    np.testing.assert_array_equal(r["num_detections"], [0, 0])


def test_classes_without_ground_truth_are_excluded_from_the_mean():
    # class 1: only a difficult box; class 2: nothing at all (but detections).
    g = [gt([A, B], [0, 1], difficult=[False, True])]
    d = [det([A, B, D], [0.9, 0.8, 0.7], [0, 1, 2])]
    r = voc_map(d, g, num_classes=3, class_names=["cat", "dog", "cow"])
    assert r["AP"][0] == pytest.approx(1.0)
    assert math.isnan(r["AP"][1]) and math.isnan(r["AP"][2])
    assert r["classes_without_ground_truth"] == [1, 2]
    assert r["mAP"] == pytest.approx(1.0)
    assert r["AP_by_name"]["cat"] == pytest.approx(1.0)
    assert math.isnan(r["AP_by_name"]["cow"])


def test_no_ground_truth_at_all_gives_nan_map():
    r = voc_map([det([A], [0.5], [0])], [gt(np.zeros((0, 4)), [])], num_classes=2)
    assert math.isnan(r["mAP"])
    assert r["classes_without_ground_truth"] == [0, 1]


def test_detections_only_match_boxes_of_their_own_class():
    g = [gt([A, B], [0, 1])]
    # a class-1 detection on the class-0 box is a FP for class 1 and does not
    # take box A; the class-0 detection then still gets it.
    d = [det([A, A, B], [0.9, 0.8, 0.7], [1, 0, 1])]
    r = voc_map(d, g, num_classes=2, use_07_metric=False)
    assert r["AP"][0] == pytest.approx(1.0)
    # class 1: FP then TP -> precision 0, 1/2 at recall 0, 1 -> area 0.5
    assert r["AP"][1] == pytest.approx(0.5)
    assert r["mAP"] == pytest.approx(0.75)


def test_iou_must_be_strictly_above_threshold():
    g = [gt([[0, 0, 10, 10]], [0])]
    d = [det([[0, 0, 10, 20]], [0.9], [0])]  # IoU exactly 0.5
    assert voc_map(d, g, num_classes=1)["mAP"] == 0.0
    assert voc_map(d, g, num_classes=1, iou_threshold=0.49)["mAP"] == pytest.approx(1.0)


def test_eleven_point_and_area_ap_differ_on_a_staircase():
    # precision 1 at recall 1/3, then 2/3 at recall 2/3, then 1/2 at recall 1
    # hits: TP, FP, TP, FP, FP, TP
    recall = np.array([1, 1, 2, 2, 2, 3]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 2 / 4, 2 / 5, 3 / 6])
    area = 1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 1 / 2
    assert average_precision(recall, precision, use_07_metric=False) == pytest.approx(area)
    # t=0..0.3 -> 1 (4 points), t=0.4..0.6 -> 2/3 (3 points), t=0.7..1 -> 1/2 (4)
    eleven = (4 * 1 + 3 * 2 / 3 + 4 * 0.5) / 11
    assert average_precision(recall, precision, use_07_metric=True) == pytest.approx(eleven)


def test_average_precision_of_empty_curve_is_zero():
    assert average_precision([], [], use_07_metric=True) == 0.0
    assert average_precision([], [], use_07_metric=False) == 0.0


# --------------------------------------------------- devkit loop reference
def _devkit_reference(dets, gts, num_classes, thresh, use07):
    """A literal per-detection port of the devkit loop, used as an oracle."""
    aps = []
    for c in range(num_classes):
        recs = {}
        npos = 0
        for i, g in enumerate(gts):
            m = np.asarray(g["labels"]) == c
            bb = np.asarray(g["boxes"], np.float64)[m]
            dif = np.asarray(g["difficult"], bool)[m]
            npos += int((~dif).sum())
            recs[i] = {"bbox": bb, "difficult": dif, "det": [False] * len(bb)}
        ids, conf, bbs = [], [], []
        for i, d in enumerate(dets):
            for b, s, lab in zip(d["boxes"], d["scores"], d["labels"]):
                if lab == c:
                    ids.append(i)
                    conf.append(float(s))
                    bbs.append(np.asarray(b, np.float64))
        order = sorted(range(len(conf)), key=lambda k: -conf[k])
        tp = np.zeros(len(order))
        fp = np.zeros(len(order))
        for n, k in enumerate(order):
            r = recs[ids[k]]
            bb = bbs[k]
            ovmax, jmax = -np.inf, -1
            for j, g in enumerate(r["bbox"]):
                iw = max(min(bb[2], g[2]) - max(bb[0], g[0]), 0.0)
                ih = max(min(bb[3], g[3]) - max(bb[1], g[1]), 0.0)
                inter = iw * ih
                uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
                ov = inter / uni
                if ov > ovmax:
                    ovmax, jmax = ov, j
            if ovmax > thresh:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        tp[n] = 1
                        r["det"][jmax] = True
                    else:
                        fp[n] = 1
            else:
                fp[n] = 1
        if npos == 0:
            aps.append(np.nan)
            continue
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if use07:
            ap = 0.0
            for t in np.arange(0.0, 1.1, 0.1):
                p = np.max(prec[rec >= t]) if np.sum(rec >= t) else 0.0
                ap += p / 11.0
        else:
            mrec = np.concatenate(([0.0], rec, [1.0]))
            mpre = np.concatenate(([0.0], prec, [0.0]))
            for i in range(mpre.size - 1, 0, -1):
                mpre[i - 1] = max(mpre[i - 1], mpre[i])
            i = np.where(mrec[1:] != mrec[:-1])[0]
            ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
        aps.append(ap)
    return np.array(aps)


def _random_case(rng, num_images, num_classes):
    gts, dets = [], []
    for _ in range(num_images):
        g = int(rng.integers(0, 5))
        xy = rng.uniform(0, 80, size=(g, 2))
        wh = rng.uniform(8, 40, size=(g, 2))
        g_boxes = np.concatenate([xy, xy + wh], axis=1)
        g_labels = rng.integers(0, num_classes, size=g)
        gts.append(
            {"boxes": g_boxes, "labels": g_labels, "difficult": rng.random(g) < 0.2}
        )
        k = int(rng.integers(0, 12))
        pick = rng.integers(0, max(g, 1), size=k)
        if g:
            src = g_boxes[pick]
            d_boxes = src + rng.normal(0, 1.5, size=(k, 4))
            d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2] + 1)
        else:
            xy = rng.uniform(0, 80, size=(k, 2))
            d_boxes = np.concatenate([xy, xy + 20], axis=1)
        d_labels = np.where(
            rng.random(k) < 0.8,
            g_labels[pick] if g else 0,
            rng.integers(0, num_classes, size=k),
        )
        dets.append({"boxes": d_boxes, "scores": rng.random(k), "labels": d_labels})
    return dets, gts


@pytest.mark.parametrize("use07", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_literal_devkit_loop_on_random_data(seed, use07):
    rng = np.random.default_rng(seed)
    dets, gts = _random_case(rng, num_images=30, num_classes=4)
    expected = _devkit_reference(dets, gts, 4, 0.5, use07)
    got = voc_map(dets, gts, num_classes=4, use_07_metric=use07)
    np.testing.assert_allclose(got["AP"], expected, rtol=0, atol=1e-12)
    assert got["mAP"] == pytest.approx(np.nanmean(expected), abs=1e-12)


# ------------------------------------------------------------ bad input
def test_rejects_mismatched_image_counts():
    with pytest.raises(ValueError, match="detections for 1 images but ground truth for 2"):
        voc_map([EMPTY_DET], [gt([A], [0]), gt([B], [0])], num_classes=1)


def test_rejects_label_outside_class_range():
    with pytest.raises(ValueError, match=r"ground_truths\[0\]\['labels'\].*class 3"):
        voc_map([EMPTY_DET], [gt([A], [3])], num_classes=2)
    with pytest.raises(ValueError, match=r"detections\[0\]\['labels'\].*class -1"):
        voc_map([det([A], [0.5], [-1])], [gt([A], [0])], num_classes=2)


def test_rejects_bad_shapes_and_missing_fields():
    with pytest.raises(ValueError, match=r"detections\[0\]\['boxes'\] must have shape"):
        voc_map([{"boxes": [[1, 2, 3]], "scores": [1], "labels": [0]}], [gt([A], [0])], 1)
    with pytest.raises(ValueError, match=r"detections\[0\] has no 'scores'"):
        voc_map([{"boxes": [A], "labels": [0]}], [gt([A], [0])], 1)
    with pytest.raises(ValueError, match=r"'scores'\] has 2 entries for 1 boxes"):
        voc_map([det([A], [0.1, 0.2], [0])], [gt([A], [0])], 1)
    with pytest.raises(ValueError, match="non-finite"):
        voc_map([det([A], [np.nan], [0])], [gt([A], [0])], 1)
    with pytest.raises(ValueError, match="single dict"):
        voc_map(EMPTY_DET, [gt([A], [0])], 1)
    with pytest.raises(ValueError, match="num_classes"):
        voc_map([EMPTY_DET], [gt([A], [0])], 0)
