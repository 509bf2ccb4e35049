"""The evaluation report: COCO-style AP equal to pycocotools', per-class
precision / recall / counts, the confusion matrix and its plots."""

import json

import numpy as np
import pytest

from keras_ssd.evaluation.report import (coco_style_map, confusion_matrix, detection_report,
                                         format_report_table, write_report_plots)


def _random_set(seed, num_images=30, num_classes=3, difficult=0.15):
    """Ground truth and detections (jittered boxes with some wrong labels,
    plus random boxes; scores rounded so that ties occur)."""
    rng = np.random.default_rng(seed)

    def boxes(n):
        xy = rng.uniform(0, 200, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], 1)

    gts, dets = [], []
    for _ in range(num_images):
        ng = int(rng.integers(0, 6))
        gb, gl = boxes(ng), rng.integers(0, num_classes, ng)
        jit = gb + rng.normal(0, 6, gb.shape)
        jit = np.concatenate([np.minimum(jit[:, :2], jit[:, 2:] - 1),
                              np.maximum(jit[:, 2:], jit[:, :2] + 1)], 1)
        nd = int(rng.integers(0, 8))
        wrong = rng.random(ng) < 0.2
        dl = np.concatenate([np.where(wrong, rng.integers(0, num_classes, ng), gl),
                             rng.integers(0, num_classes, nd)])
        db = np.concatenate([jit, boxes(nd)])
        gts.append({"boxes": gb, "labels": gl, "difficult": rng.random(ng) < difficult})
        dets.append({"boxes": db, "scores": np.round(rng.random(len(db)), 2), "labels": dl})
    return dets, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_style_map_equals_pycocotools(seed):
    pytest.importorskip("pycocotools")
    from keras_ssd.evaluation.coco import coco_map

    dets, gts = _random_set(seed)
    ap, num_gt = coco_style_map(dets, gts, 3)
    ref = coco_map(dets, gts, 3)
    assert np.nanmean(ap.mean(axis=1)) == pytest.approx(ref["mAP"], abs=1e-12)
    assert np.nanmean(ap[:, 0]) == pytest.approx(ref["AP50"], abs=1e-12)
    assert np.nanmean(ap[:, 5]) == pytest.approx(ref["AP75"], abs=1e-12)
    np.testing.assert_allclose(ap.mean(axis=1), ref["AP"], atol=1e-12)
    assert num_gt.sum() == sum(int((~g["difficult"]).sum()) for g in gts)


def test_perfect_detections_score_one_everywhere():
    gts = [{"boxes": np.array([[10, 10, 50, 60], [70, 20, 120, 90.0]]), "labels": [0, 1]},
           {"boxes": np.array([[5, 5, 40, 40.0]]), "labels": [1]}]
    dets = [{"boxes": g["boxes"], "labels": g["labels"], "scores": [0.9] * len(g["labels"])}
            for g in gts]
    report = detection_report(dets, gts, ["cat", "dog"])
    assert report["mAP50_voc07"] == report["mAP50_voc"] == 1.0
    assert report["mAP50"] == pytest.approx(1.0)
    assert report["mAP50_95"] == pytest.approx(1.0)
    assert report["precision"] == report["recall"] == 1.0
    counts = [(c["ground_truth"], c["detections"]) for c in report["classes"]]
    assert counts == [(1, 1), (2, 2)]
    assert report["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_precision_recall_and_counts_of_one_class():
    # 4 cats; detections: 3 hits (0.9, 0.8, 0.6) and 2 misses (0.7, 0.5)
    gt_boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10],
                         [60, 0, 70, 10.0]])
    far = np.array([[100, 100, 110, 110], [120, 120, 130, 130.0]])
    dets = [{"boxes": np.concatenate([gt_boxes[:3], far]), "labels": [0] * 5,
             "scores": [0.9, 0.8, 0.6, 0.7, 0.5]}]
    gts = [{"boxes": gt_boxes, "labels": [0] * 4}]
    report = detection_report(dets, gts, ["cat"])
    (cat,) = report["classes"]
    # mean F1 is best at confidence 0.6: 3 of 4 detections right, 3 of 4 cats
    assert 0.5 < report["confidence"] <= 0.6
    assert cat["precision"] == pytest.approx(0.75) and cat["recall"] == pytest.approx(0.75)
    assert cat["detections"] == 4 and cat["ground_truth"] == 4
    # VOC07 11-point: precision 1 up to recall 0.5, then 0.75 up to 0.75
    assert cat["AP50_voc07"] == pytest.approx((6 * 1.0 + 2 * 0.75) / 11)


def test_confusion_matrix_counts_wrong_label_missed_and_spurious():
    gts = [{"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30.0]]), "labels": [0, 1]}]
    dets = [{"boxes": np.array([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 11.0]]),
             "labels": [1, 0, 0], "scores": [0.9, 0.8, 0.1]}]
    m = confusion_matrix(dets, gts, 2, confidence=0.5)
    # rows predicted (cat, dog, background), columns true
    assert m.tolist() == [[0, 0, 1],   # a cat detection of nothing
                          [1, 0, 0],   # the cat called a dog
                          [0, 1, 0]]   # the dog missed


def test_report_plots_and_table(tmp_path):
    pytest.importorskip("matplotlib")
    dets, gts = _random_set(3, num_images=10)
    report = detection_report(dets, gts, ["a", "b", "c"])
    json.dumps(report)  # all of it JSON-ready
    paths = write_report_plots(report, tmp_path)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["pr_curve.png", "confusion_matrix.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    table = format_report_table(report).splitlines()
    assert table[0].split() == ["class", "images", "objects", "dets", "P", "R", "VOC07",
                                "AP50", "AP50-95"]
    assert table[1].split()[:3] == ["all", "10", str(report["num_ground_truth"])]
    assert [line.split()[0] for line in table[2:5]] == ["a", "b", "c"]


def test_report_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 detection records for 1 images"):
        detection_report([{}, {}], [{}], ["a"])
