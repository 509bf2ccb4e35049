import numpy as np
import pytest

from keras_ssd.boxes import (
    cxcywh_to_xyxy,
    decode_boxes,
    encode_boxes,
    iou,
    validate_boxes,
    xyxy_to_cxcywh,
)


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
    enc = encode_boxes(box, anchor, (0.1, 0.1, 0.2, 0.2))
    expected = [0.05 / 0.2 / 0.1, 0.1 / 0.4 / 0.1, np.log(1.0) / 0.2, np.log(1.5) / 0.2]
    np.testing.assert_allclose(enc[0], expected, rtol=1e-6)


def test_decode_inverts_encode():
    rng = np.random.default_rng(1)
    anchors = np.concatenate([rng.uniform(0.1, 0.9, (200, 2)), rng.uniform(0.05, 0.6, (200, 2))], 1)
    xy = rng.uniform(0, 0.7, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.01, 0.3, (200, 2))], 1)
    for v in [(0.1, 0.1, 0.2, 0.2), (1, 1, 1, 1)]:
        back = decode_boxes(encode_boxes(boxes, anchors, v), anchors, v)
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
