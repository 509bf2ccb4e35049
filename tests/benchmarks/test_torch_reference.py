"""The numpy parts of the source references that the equality tests share:
the per-class NMS (lufficc's and mmdetection's post-processing), on boxes
whose IoUs are known by hand, and lufficc's `PriorBox`."""

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks.torch_reference import lufficc_prior_box, per_class_nms  # noqa: E402

# Box 1 overlaps box 0 with IoU 8 / 10 = 0.8; box 2 overlaps box 0 with IoU
# 5 / 15 = 1 / 3; box 3 is box 0 again; box 4 is far away.
BOXES = np.array([[0, 0, 10, 1], [0, 0, 8, 1], [5, 0, 15, 1], [0, 0, 10, 1],
                  [50, 50, 60, 60]], np.float64)


def test_suppression_stays_within_a_class():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # box 1 and box 3 overlap box 0 in its class; box 3 is alone in class 1
    kept, gap = per_class_nms(BOXES, scores, np.array([0, 0, 0, 1, 0]), 0.45, 100)
    assert kept.tolist() == [0, 2, 3, 4] and gap is None


def test_an_iou_equal_to_the_threshold_is_kept_and_above_it_suppressed():
    scores = np.array([0.9, 0.1, 0.8, 0.1, 0.1])
    labels = np.zeros(5, int)
    kept, _ = per_class_nms(BOXES[:3], scores[:3], labels[:3], 1 / 3, 100)
    assert kept.tolist() == [0, 2]
    kept, _ = per_class_nms(BOXES[:3], scores[:3], labels[:3], 0.3, 100)
    assert kept.tolist() == [0]


def test_the_best_are_kept_over_classes_with_the_score_gap_at_the_cut():
    scores = np.array([0.5, 0.2, 0.9, 0.7, 0.7])
    kept, gap = per_class_nms(BOXES, scores, np.arange(5), 0.45, 3)
    # ties keep the earlier index
    assert kept.tolist() == [2, 3, 4] and gap == 0.7 - 0.5
    kept, gap = per_class_nms(BOXES, scores, np.arange(5), 0.45, 2)
    assert kept.tolist() == [2, 3] and gap == 0.0


def test_lufficc_priors_are_min_then_big_then_each_ratio_and_its_transpose_clamped():
    # a 2x2 map at 100 px, stride 50: centres 0.25 and 0.75, row by row; min
    # 40 px, max 90 px (big square 60 px), ratio 4 (x2 / x0.5)
    priors = lufficc_prior_box(100, [2], [50], [40], [90], [[4]])
    assert priors.shape == (2 * 2 * 4, 4) and priors.dtype == np.float32
    np.testing.assert_allclose(priors[:4], [[0.25, 0.25, 0.4, 0.4], [0.25, 0.25, 0.6, 0.6],
                                            [0.25, 0.25, 0.8, 0.2], [0.25, 0.25, 0.2, 0.8]])
    np.testing.assert_allclose(priors[4:6, :2], [[0.75, 0.25], [0.75, 0.25]])
    np.testing.assert_allclose(priors[8, :2], [0.25, 0.75])
    # 1 px map at 100 px, min 80, max 180: sqrt(80 * 180) = 120 px, clamped to 1
    big = lufficc_prior_box(100, [1], [100], [80], [180], [[]])
    np.testing.assert_allclose(big, [[0.5, 0.5, 0.8, 0.8], [0.5, 0.5, 1.0, 1.0]])
