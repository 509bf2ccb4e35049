"""keras_ssd.boxes: the numpy forms, the keras.ops forms (which must agree
with them), the grid IoU of the target encoder and the 0.1 names."""

import keras
import numpy as np
import pytest

from keras_ssd import boxes as B
from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import (
    cxcywh_to_xyxy,
    decode,
    encode,
    iou,
    validate_boxes,
    xyxy_to_cxcywh,
)
from keras_ssd.config import SSDConfig


def test_format_conversions_invert_each_other():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1, (50, 2))
    b = np.concatenate([xy, xy + rng.uniform(0.01, 0.5, (50, 2))], 1)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b, atol=1e-12)
    np.testing.assert_allclose(xyxy_to_cxcywh([[0, 0, 2, 4]]), [[1, 2, 2, 4]])


def test_iou_hand_computed():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]], dtype=float)
    expected = np.array([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    np.testing.assert_allclose(iou(a, b), expected)


def test_iou_of_empty_union_is_zero():
    z = np.zeros((1, 4))
    assert iou(z, z)[0, 0] == 0


def test_encode_follows_ssd_formula():
    anchor = np.array([[0.5, 0.5, 0.2, 0.4]])
    box = np.array([[0.45, 0.3, 0.65, 0.9]])  # cx .55 cy .6 w .2 h .6
    enc = encode(box, anchor, (0.1, 0.1, 0.2, 0.2))
    expected = [0.05 / 0.2 / 0.1, 0.1 / 0.4 / 0.1, np.log(1.0) / 0.2, np.log(1.5) / 0.2]
    np.testing.assert_allclose(enc[0], expected, rtol=1e-6)


def test_decode_inverts_encode():
    rng = np.random.default_rng(1)
    anchors = np.concatenate([rng.uniform(0.1, 0.9, (200, 2)), rng.uniform(0.05, 0.6, (200, 2))], 1)
    xy = rng.uniform(0, 0.7, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.01, 0.3, (200, 2))], 1)
    for v in [(0.1, 0.1, 0.2, 0.2), (1, 1, 1, 1)]:
        back = decode(encode(boxes, anchors, v), anchors, v)
        np.testing.assert_allclose(back, boxes, atol=1e-5)


@pytest.mark.parametrize(
    "box, problem",
    [
        ([0.5, 0.1, 0.4, 0.3], "degenerate"),
        ([0.1, 0.1, 0.1, 0.3], "degenerate"),
        ([0.1, np.nan, 0.2, 0.3], "not finite"),
    ],
)
def test_validate_rejects_bad_boxes(box, problem):
    with pytest.raises(ValueError, match=f"my boxes: box 1 is {problem}"):
        validate_boxes([[0, 0, 1, 1], box], where="my boxes")


def test_validate_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        validate_boxes([[0, 0, 1]])
    assert validate_boxes([]).shape == (0, 4)


# ------------------------------------------- numpy and keras.ops agree
def _float64_tensors():
    """Whether keras.ops computes in float64 on float64 tensors: TensorFlow;
    not JAX without x64, nor torch (Keras promotes float64 operands to
    float32 off TensorFlow)."""
    x = keras.ops.convert_to_tensor(np.zeros(1))
    return keras.backend.standardize_dtype(keras.ops.maximum(x, x).dtype) == "float64"


def _dtypes():
    return [np.float32, np.float64] if _float64_tensors() else [np.float32]


def awkward_boxes(rng, n):
    """Random xyxy boxes plus the cases that break naive formulas: identical,
    zero-width, zero-area, inverted, disjoint and containing boxes."""
    xy = rng.uniform(0, 0.8, (n, 2))
    out = np.concatenate([xy, xy + rng.uniform(0.01, 0.5, (n, 2))], 1)
    out[:8] = [
        [0.1, 0.1, 0.4, 0.5],
        [0.1, 0.1, 0.4, 0.5],  # identical to the one above
        [0.3, 0.3, 0.3, 0.6],  # zero width
        [0.2, 0.2, 0.2, 0.2],  # a point: zero area
        [0.6, 0.6, 0.5, 0.5],  # inverted
        [0.9, 0.9, 0.95, 0.99],  # disjoint from most
        [0.0, 0.0, 1.0, 1.0],  # contains every other box
        [0.15, 0.2, 0.3, 0.3],  # inside box 0
    ]
    return out


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_ops_forms_give_the_same_bits(dtype):
    if dtype not in _dtypes():
        pytest.skip("backend without float64 tensors")
    rng = np.random.default_rng(10)
    a = awkward_boxes(rng, 41).astype(dtype)
    b = np.concatenate([awkward_boxes(rng, 30), a[:10]]).astype(dtype)
    pairs = [
        (B.xyxy_to_cxcywh(a), B.xyxy_to_cxcywh_ops(a)),
        (B.cxcywh_to_xyxy(a), B.cxcywh_to_xyxy_ops(a)),
        (B.area(a), B.area_ops(a)),
        (B.clip(a * 2 - 0.5, 0.0, 1.0), B.clip_ops(a * 2 - 0.5, 0.0, 1.0)),
        (B.iou(a, b), B.iou_ops(a, b)),
    ]
    for threshold in (0.0, 0.3, 0.5, 1.0):
        pairs.append((B.iou_above(a, b, threshold), B.iou_above_ops(a, b, threshold)))
    for want, got in pairs:
        got = _np(got)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    overlaps = B.iou(a, b)
    assert np.isfinite(overlaps).all() and overlaps.min() == 0.0
    assert overlaps[0, 0] == overlaps[1, 0] == 1.0  # identical boxes
    assert (overlaps[2:5] == 0).all()  # zero-width, point, inverted: no overlap
    np.testing.assert_array_equal(B.iou_above(a, b, 0.5), overlaps > 0.5)


@pytest.mark.backend
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_and_ops_codecs_agree(dtype):
    if dtype not in _dtypes():
        pytest.skip("backend without float64 tensors")
    rng = np.random.default_rng(11)
    anchors = generate_anchors(SSDConfig.ssd300(20))[::37].astype(dtype)
    boxes = awkward_boxes(rng, anchors.shape[0])[8:].astype(dtype)
    anchors = anchors[8:]
    v = (0.1, 0.1, 0.2, 0.2)
    offsets = B.encode(boxes, anchors, v)
    name = np.dtype(dtype).name
    got = _np(B.encode_ops(boxes, anchors, v, dtype=name))
    # exp and log may differ by an ulp between numpy and the backend.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, offsets, rtol=tol, atol=tol)
    np.testing.assert_allclose(_np(B.decode_ops(offsets, anchors, v, dtype=name)),
                               B.decode(offsets, anchors, v), rtol=0, atol=tol)
    assert keras.backend.standardize_dtype(
        B.decode_ops(offsets, anchors, v).dtype) == "float32"  # the default


@pytest.mark.backend
def test_decode_of_encode_is_the_identity_in_both_forms():
    rng = np.random.default_rng(12)
    anchors = generate_anchors(SSDConfig.ssd300(20))[::5]
    boxes = awkward_boxes(rng, anchors.shape[0])[8:].astype(np.float32)
    anchors = anchors[8:]
    for v in [(0.1, 0.1, 0.2, 0.2), (1, 1, 1, 1)]:
        np.testing.assert_allclose(B.decode(B.encode(boxes, anchors, v), anchors, v),
                                   boxes, atol=2e-6)
        back = B.decode_ops(B.encode_ops(boxes, anchors, v), anchors, v)
        np.testing.assert_allclose(_np(back), boxes, atol=2e-6)
    b64 = boxes.astype(np.float64)
    np.testing.assert_allclose(B.decode(B.encode(b64, anchors, v), anchors, v), b64,
                               rtol=0, atol=1e-12)
    # and the round trip through the corner/centre conversions
    np.testing.assert_allclose(B.xyxy_to_cxcywh(B.cxcywh_to_xyxy(b64)), b64, atol=1e-15)
    np.testing.assert_allclose(_np(B.cxcywh_to_xyxy_ops(B.xyxy_to_cxcywh_ops(boxes))),
                               boxes, atol=1e-7)


@pytest.mark.backend
def test_iou_over_leading_batch_dimensions():
    rng = np.random.default_rng(13)
    a = np.stack([awkward_boxes(rng, 9), awkward_boxes(rng, 9)]).astype(np.float32)
    b = np.stack([awkward_boxes(rng, 11), awkward_boxes(rng, 11)]).astype(np.float32)
    want = np.stack([B.iou(a[0], b[0]), B.iou(a[1], b[1])])
    np.testing.assert_array_equal(B.iou(a, b), want)
    np.testing.assert_array_equal(_np(B.iou_ops(a, b)), want)


def test_iou_with_buffers_and_integer_boxes():
    rng = np.random.default_rng(14)
    a = awkward_boxes(rng, 9).astype(np.float32)
    b = awkward_boxes(rng, 13).astype(np.float32)
    out, scratch = np.full((9, 13), 7.0, np.float32), np.empty((9, 13), np.float32)
    assert B.iou(a, b, out, scratch) is out
    np.testing.assert_array_equal(out, B.iou(a, b))
    ints = np.array([[0, 0, 2, 2], [0, 0, 1, 1], [3, 3, 3, 3]])
    np.testing.assert_allclose(B.iou(ints, ints[:2]), [[1, 0.25], [0.25, 1], [0, 0]])
    assert B.iou(ints, ints).dtype == np.float64
    # integer boxes encode in float64 (not with variances truncated to 0)
    enc = B.encode([[0, 0, 2, 4]], [[1, 2, 2, 4]])
    assert enc.dtype == np.float64 and np.isfinite(enc).all()
    np.testing.assert_array_equal(enc, [[0, 0, 0, 0]])


# ---------------------------------------------------------- grid IoU
def _grid_boxes(rng, n):
    xy = rng.uniform(-0.1, 0.95, (n, 2))
    out = np.concatenate([xy, xy + rng.uniform(0.002, 0.9, (n, 2))], 1)
    out[0] = [0, 0, 1, 1]
    out[1] = [0.5, 0.5, 0.5001, 0.5001]
    return out.astype(np.float32)


@pytest.mark.parametrize("preset", ["ssd300", "ssd512", "mobilenet_v2", "tiny", "clip"])
def test_grid_iou_equals_the_dense_iou_bit_for_bit(preset):
    config = (SSDConfig.ssd300(20).replace(clip="corners") if preset == "clip"
              else SSDConfig.from_preset(preset, num_classes=20))
    anchors = cxcywh_to_xyxy(generate_anchors(config)).astype(np.float32)
    grid = B.anchor_grid(anchors, zip(config.feature_map_sizes, config.boxes_per_cell))
    rng = np.random.default_rng(15)
    for n in (2, 5, 33):
        boxes = _grid_boxes(rng, n)
        dense = B.iou(boxes, anchors)
        np.testing.assert_array_equal(B.grid_iou(boxes, grid), dense)
        out, scratch = np.empty_like(dense), np.empty_like(dense)
        assert B.grid_iou(boxes, grid, out, scratch) is out
        np.testing.assert_array_equal(out, dense)
        assert (dense > 0.5).any() and (dense == 0).any()  # not a trivial case


def test_anchor_grid_rejects_anchors_off_the_grid():
    config = SSDConfig.ssd300(20)
    anchors = cxcywh_to_xyxy(generate_anchors(config))
    maps = list(zip(config.feature_map_sizes, config.boxes_per_cell))
    with pytest.raises(ValueError, match="describes 8692 anchors, not 8732"):
        B.anchor_grid(anchors, maps[:-2])
    with pytest.raises(ValueError, match="more than"):
        B.anchor_grid(anchors[:100], maps)
    shuffled = anchors.copy()
    shuffled[[0, 5]] = shuffled[[5, 0]]
    with pytest.raises(ValueError, match="not laid out on the given grid"):
        B.anchor_grid(shuffled, maps)


def test_variances_must_be_four_numbers():
    with pytest.raises(ValueError, match="variances must be 4 numbers"):
        B.decode(np.zeros((1, 4)), np.ones((1, 4)), (0.1, 0.2))
