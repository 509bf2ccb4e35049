"""Exact greedy NMS (`keras_ssd.nms`) against a plain numpy reference."""

import numpy as np
import pytest

from keras_ssd import nms as nms_module
from keras_ssd.boxes import iou_ops as pairwise_iou
from keras_ssd.nms import greedy_nms, multiclass_nms, overlap_dtype


# ---------------------------------------------------------------- reference
def reference_iou(a, b, dtype=np.float64):
    """IoU by the documented formula and operation order; float64 (the
    precision NMS decides in) by default."""
    a = np.asarray(a, np.float32).astype(dtype)
    b = np.asarray(b, np.float32).astype(dtype)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.maximum(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]),
        dtype(0),
    )
    ih = np.maximum(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]),
        dtype(0),
    )
    inter = iw * ih
    union = (area_a[:, None] + area_b[None, :]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, dtype(1)), dtype(0))


def reference_greedy(boxes, valid, threshold):
    """Textbook sequential greedy NMS over score-sorted candidates."""
    keep = np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        if not valid[i]:
            continue
        kept = np.nonzero(keep)[0]
        if kept.size and (reference_iou(boxes[i:i + 1], boxes[kept])[0] > threshold).any():
            continue
        keep[i] = True
    return keep


def reference_multiclass(boxes, scores, thr, iou_thr, max_cand, top_k):
    """Per image, per class: > thr, stable sort, top max_cand, greedy NMS,
    then the best top_k over classes (ties: lower class, then rank)."""
    results = []
    for b in range(boxes.shape[0]):
        dets = []
        for c in range(scores.shape[2]):
            s = scores[b, :, c]
            order = np.argsort(-s, kind="stable")[:max_cand]
            order = order[s[order] > thr]
            keep = reference_greedy(boxes[b, order], np.ones(order.size, bool), iou_thr)
            for rank, i in enumerate(order[keep]):
                dets.append((-s[i], c, rank, i))
        dets.sort()
        dets = dets[:top_k]
        results.append(
            (
                np.array([boxes[b, d[3]] for d in dets], np.float32).reshape(-1, 4),
                np.array([-d[0] for d in dets], np.float32),
                np.array([d[1] for d in dets], np.int32),
            )
        )
    return results


def random_boxes(rng, shape, max_size=0.4, clustered=False):
    """xyxy boxes; `clustered` packs them into a few spots (heavy overlap)."""
    if clustered:
        centres = rng.uniform(0.2, 0.8, (3, 2))
        pick = rng.integers(0, 3, shape)
        xy = centres[pick] + rng.normal(0, 0.02, shape + (2,))
        wh = rng.uniform(0.1, 0.2, shape + (2,))
        xy = xy - wh / 2
    else:
        xy = rng.uniform(0, 0.8, shape + (2,))
        wh = rng.uniform(0.02, max_size, shape + (2,))
    return np.concatenate([xy, xy + wh], -1).astype(np.float32)


# -------------------------------------------------------------------- tests
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_iou_is_bit_identical_to_numpy_formula(dtype):
    rng = np.random.default_rng(0)
    a = random_boxes(rng, (37,))
    b = random_boxes(rng, (23,))
    b[0] = a[0]  # identical boxes
    b[1] = [0.3, 0.3, 0.3, 0.5]  # zero area
    b[2] = [0.5, 0.5, 0.4, 0.4]  # inverted
    got = np.asarray(pairwise_iou(a.astype(dtype), b.astype(dtype)))
    np.testing.assert_array_equal(got, reference_iou(a, b, dtype))
    assert got[0, 0] == 1.0


def test_pairwise_iou_of_zero_area_pair_is_zero_not_nan():
    box = np.array([[0.2, 0.2, 0.2, 0.2]], np.float32)
    assert np.asarray(pairwise_iou(box, box))[0, 0] == 0.0


@pytest.mark.parametrize("tile_size", [16, 64, 200])
@pytest.mark.parametrize("clustered", [False, True])
def test_greedy_nms_keeps_exactly_the_reference_boxes(tile_size, clustered):
    rng = np.random.default_rng(tile_size + 10 * clustered)
    groups, k = 12, 150
    boxes = random_boxes(rng, (groups, k), clustered=clustered)
    # duplicates: exact ties in IoU (1.0) and in order
    boxes[:, 5] = boxes[:, 4]
    boxes[:, 100:110] = boxes[:, 3:4]
    valid = rng.uniform(size=(groups, k)) < 0.85
    got = np.asarray(greedy_nms(boxes, valid, 0.45, tile_size=tile_size))
    want = np.stack([reference_greedy(boxes[g], valid[g], 0.45) for g in range(groups)])
    np.testing.assert_array_equal(got, want)
    if clustered:
        assert want.sum() < valid.sum() / 2  # the test really suppresses


def test_greedy_nms_on_leading_batch_dimensions_and_thresholds():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, (2, 3, 40), clustered=True)
    valid = np.ones((2, 3, 40), bool)
    for thr in (0.0, 0.3, 0.7, 1.0):
        got = np.asarray(greedy_nms(boxes, valid, thr, tile_size=16))
        assert got.shape == (2, 3, 40)
        for i in range(2):
            for j in range(3):
                np.testing.assert_array_equal(
                    got[i, j], reference_greedy(boxes[i, j], valid[i, j], thr)
                )


def test_greedy_nms_threshold_is_strict():
    # IoU of these two boxes is exactly 0.5 in float32.
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 0.5]]], np.float32)
    valid = np.ones((1, 2), bool)
    assert reference_iou(boxes[0, :1], boxes[0, 1:])[0, 0] == 0.5
    np.testing.assert_array_equal(np.asarray(greedy_nms(boxes, valid, 0.5)), [[True, True]])
    np.testing.assert_array_equal(
        np.asarray(greedy_nms(boxes, valid, 0.49)), [[True, False]]
    )


def test_invalid_candidates_are_dropped_and_suppress_nothing():
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]], np.float32)
    got = np.asarray(greedy_nms(boxes, np.array([[False, True, True]]), 0.45))
    np.testing.assert_array_equal(got, [[False, True, False]])
    got = np.asarray(greedy_nms(boxes, np.zeros((1, 3), bool), 0.45))
    assert not got.any()


def _scores_with_ties(rng, shape):
    # quantised scores: many exact ties, some below the threshold
    return (rng.integers(0, 40, shape) / 40.0).astype(np.float32)


@pytest.mark.parametrize("use_xla", [False, True])
def test_multiclass_nms_matches_reference(use_xla):
    rng = np.random.default_rng(7)
    batch, n, c = 3, 300, 4
    boxes = random_boxes(rng, (batch, n))
    boxes[:, 150:] = random_boxes(rng, (batch, 150), clustered=True)
    scores = _scores_with_ties(rng, (batch, n, c))
    thr, iou_thr, max_cand, top_k = 0.3, 0.45, 120, 150
    out = multiclass_nms(boxes, scores, thr, iou_thr, max_cand, top_k, tile_size=32,
                         use_xla=use_xla)
    out = {k: np.asarray(v) for k, v in out.items()}
    want = reference_multiclass(boxes, scores, thr, iou_thr, max_cand, top_k)
    for b in range(batch):
        w_boxes, w_scores, w_labels = want[b]
        n_det = len(w_scores)
        assert out["num_detections"][b] == n_det
        assert 0 < n_det <= top_k
        np.testing.assert_array_equal(out["labels"][b, :n_det], w_labels)
        np.testing.assert_array_equal(out["confidence"][b, :n_det], w_scores)
        np.testing.assert_array_equal(out["boxes"][b, :n_det], w_boxes)
        assert (out["labels"][b, n_det:] == -1).all()
        assert (out["confidence"][b, n_det:] == 0).all()
        assert (out["boxes"][b, n_det:] == 0).all()


def test_xla_fast_path_gives_the_same_detections_as_keras_ops_path():
    rng = np.random.default_rng(11)
    batch, n, c = 2, 500, 3
    boxes = random_boxes(rng, (batch, n), clustered=True)
    logits = rng.normal(0, 1, (batch, n, c)).astype(np.float32)
    scores = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    scores[:, :50] = scores[:, 50:100]  # ties
    a = multiclass_nms(boxes, scores, 0.01, 0.45, 400, 200, use_xla=False)
    b = multiclass_nms(boxes, scores, 0.01, 0.45, 400, 200, use_xla=True)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_multiclass_nms_pads_when_fewer_candidates_than_top_k():
    boxes = np.array([[[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32)
    scores = np.array([[[0.9, 0.0], [0.8, 0.005], [0.2, 0.6]]], np.float32)
    out = multiclass_nms(boxes, scores, 0.01, 0.45, 400, 10, use_xla=False)
    out = {k: np.asarray(v) for k, v in out.items()}
    assert out["boxes"].shape == (1, 10, 4)
    assert out["num_detections"].tolist() == [3]
    # class 0: box 1 suppressed by box 0; class 1: only box 2 above 0.01
    np.testing.assert_allclose(out["confidence"][0, :3], [0.9, 0.6, 0.2])
    assert out["labels"][0].tolist() == [0, 1, 0] + [-1] * 7
    np.testing.assert_array_equal(out["boxes"][0, :3], boxes[0, [0, 2, 2]])


def test_overlap_dtype_float32_decides_like_a_float32_reference():
    rng = np.random.default_rng(21)
    boxes = random_boxes(rng, (4, 90), clustered=True)
    valid = np.ones((4, 90), bool)
    with overlap_dtype("float32"):
        got = np.asarray(greedy_nms(boxes, valid, 0.45, tile_size=32))
    for g in range(4):
        keep = np.zeros(90, bool)
        for i in range(90):
            kept = np.nonzero(keep)[0]
            iou = reference_iou(boxes[g, i:i + 1], boxes[g, kept], np.float32)
            keep[i] = not (kept.size and (iou[0] > np.float32(0.45)).any())
        np.testing.assert_array_equal(got[g], keep)
    with pytest.raises(ValueError, match="overlap_dtype"):
        with overlap_dtype("float16"):
            pass


def _float32_reference_keep(boxes, threshold):
    keep = np.zeros(len(boxes), bool)
    for i in range(len(boxes)):
        kept = np.nonzero(keep)[0]
        iou = reference_iou(boxes[i:i + 1], boxes[kept], np.float32)
        keep[i] = not (kept.size and (iou[0] > np.float32(threshold)).any())
    return keep


def _near_threshold_boxes(threshold=0.45):
    """Pairs of boxes whose IoU lies within float32 rounding of the threshold,
    so that the float32 and float64 decisions can be told apart."""
    rng = np.random.default_rng(23)
    found = []
    for _ in range(1000):
        if len(found) == 6:
            break
        a = random_boxes(rng, (1,))[0]
        b = a.copy()
        b[2] = np.nextafter(a[2], np.float32(2))  # almost the same box
        # shrink b's height until its IoU with a crosses the threshold
        h = a[3] - a[1]
        b[3] = a[1] + np.float32(threshold) * h
        for _ in range(64):
            pair = np.stack([a, b])
            d64 = reference_iou(pair[:1], pair[1:])[0, 0] > threshold
            d32 = (reference_iou(pair[:1], pair[1:], np.float32)[0, 0]
                   > np.float32(threshold))
            if d64 != d32:
                found.append(pair)
                break
            b[3] = np.nextafter(b[3], np.float32(2))
    assert len(found) == 6
    return np.stack(found)  # (groups, 2, 4)


def test_explicit_overlap_dtype_decides_in_that_dtype():
    rng = np.random.default_rng(21)
    boxes = random_boxes(rng, (4, 90), clustered=True)
    valid = np.ones((4, 90), bool)
    got = np.asarray(greedy_nms(boxes, valid, 0.45, tile_size=32, overlap_dtype="float32"))
    for g in range(4):
        np.testing.assert_array_equal(got[g], _float32_reference_keep(boxes[g], 0.45))
    # Boxes where the two precisions disagree: each call follows its own.
    pairs = _near_threshold_boxes()
    valid = np.ones(pairs.shape[:2], bool)
    want64 = np.stack([reference_greedy(p, [True, True], 0.45) for p in pairs])
    want32 = np.stack([_float32_reference_keep(p, 0.45) for p in pairs])
    assert (want64 != want32).any()
    for dtype, want in (("float64", want64), ("float32", want32)):
        if dtype == "float64" and nms_module._decision_dtype() != "float64":
            continue  # JAX without x64
        got = np.asarray(greedy_nms(pairs, valid, 0.45, overlap_dtype=dtype))
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("use_xla", [False, True])
def test_multiclass_nms_passes_overlap_dtype_down(use_xla):
    pairs = _near_threshold_boxes()  # (6, 2, 4): one image per pair
    scores = np.array([[[0.9], [0.8]]] * len(pairs), np.float32)
    out32 = multiclass_nms(pairs, scores, 0.01, 0.45, 400, 10, use_xla=use_xla,
                           overlap_dtype="float32")
    want32 = np.stack([_float32_reference_keep(p, 0.45) for p in pairs]).sum(1)
    np.testing.assert_array_equal(np.asarray(out32["num_detections"]), want32)
    if nms_module._decision_dtype() == "float64":
        out = multiclass_nms(pairs, scores, 0.01, 0.45, 400, 10, use_xla=use_xla)
        want = np.stack([reference_greedy(p, [True, True], 0.45) for p in pairs]).sum(1)
        np.testing.assert_array_equal(np.asarray(out["num_detections"]), want)
        assert (want != want32).any()


def test_bad_overlap_dtype_is_a_clear_error():
    boxes = np.zeros((1, 2, 4), np.float32)
    with pytest.raises(ValueError,
                       match="overlap_dtype must be 'float32', 'float64' or None"):
        greedy_nms(boxes, np.ones((1, 2), bool), overlap_dtype="float16")
    with pytest.raises(ValueError, match="overlap_dtype"):
        multiclass_nms(boxes, np.ones((1, 2, 1), np.float32), overlap_dtype="half")


def test_overlap_dtype_context_is_deprecated_and_still_works():
    rng = np.random.default_rng(22)
    boxes = random_boxes(rng, (2, 40), clustered=True)
    valid = np.ones((2, 40), bool)
    with pytest.warns(DeprecationWarning, match="overlap_dtype= "):
        with overlap_dtype("float32"):
            assert nms_module._decision_dtype() == "float32"
            got = np.asarray(greedy_nms(boxes, valid, 0.45))
            # an explicit argument wins over the context
            assert nms_module._decision_dtype("float64") == "float64"
    assert nms_module._decision_dtype() in ("float64", "float32")
    for g in range(2):
        np.testing.assert_array_equal(got[g], _float32_reference_keep(boxes[g], 0.45))
