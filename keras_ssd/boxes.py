"""Numpy box utilities: format conversions, IoU and the SSD offset encoding.

Boxes are `(..., 4)` arrays. "xyxy" is `(xmin, ymin, xmax, ymax)`, "cxcywh"
is `(centre x, centre y, width, height)`. Everything is vectorised.
"""

import numpy as np

from keras_ssd.config import DEFAULT_VARIANCES


def xyxy_to_cxcywh(boxes):
    """`(xmin, ymin, xmax, ymax)` -> `(cx, cy, w, h)`."""
    boxes = np.asarray(boxes)
    return np.concatenate(
        [(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], axis=-1
    )


def cxcywh_to_xyxy(boxes):
    """`(cx, cy, w, h)` -> `(xmin, ymin, xmax, ymax)`."""
    boxes = np.asarray(boxes)
    half = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def box_area(boxes):
    """Area of xyxy boxes (0 for inverted boxes)."""
    boxes = np.asarray(boxes)
    wh = np.clip(boxes[..., 2:] - boxes[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


def iou(boxes_a, boxes_b):
    """Pairwise IoU of xyxy boxes.

    Args:
        boxes_a: `(M, 4)` array.
        boxes_b: `(N, 4)` array.

    Returns:
        `(M, N)` array of intersection over union (0 where the union is 0).
    """
    a = np.asarray(boxes_a)
    b = np.asarray(boxes_b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
    return out


def encode_boxes(boxes, anchors, variances=DEFAULT_VARIANCES):
    """Encode xyxy boxes as SSD offsets relative to `(cx, cy, w, h)` anchors.

    `((gcx - pcx) / pw / v0, (gcy - pcy) / ph / v1, log(gw / pw) / v2,
    log(gh / ph) / v3)`; `boxes` and `anchors` broadcast against each other.
    """
    boxes = xyxy_to_cxcywh(boxes)
    anchors = np.asarray(anchors)
    v = np.asarray(variances, dtype=boxes.dtype)
    centre = (boxes[..., :2] - anchors[..., :2]) / anchors[..., 2:] / v[:2]
    size = np.log(boxes[..., 2:] / anchors[..., 2:]) / v[2:]
    return np.concatenate([centre, size], axis=-1)


def decode_boxes(offsets, anchors, variances=DEFAULT_VARIANCES):
    """Inverse of `encode_boxes`: SSD offsets -> xyxy boxes."""
    offsets = np.asarray(offsets)
    anchors = np.asarray(anchors)
    v = np.asarray(variances, dtype=offsets.dtype)
    centre = anchors[..., :2] + offsets[..., :2] * v[:2] * anchors[..., 2:]
    size = anchors[..., 2:] * np.exp(offsets[..., 2:] * v[2:])
    return cxcywh_to_xyxy(np.concatenate([centre, size], axis=-1))


def validate_boxes(boxes, where="boxes"):
    """Check xyxy boxes are finite and have positive width and height.

    Raises:
        ValueError: naming `where` and the first bad box.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        if boxes.size == 0:
            return boxes.reshape(0, 4)
        raise ValueError(f"{where}: expected shape (num_boxes, 4), got {boxes.shape}")
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{where}: box {i} is not finite: {boxes[i].tolist()}")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"{where}: box {i} is degenerate (needs xmax > xmin and ymax > ymin): "
            f"{boxes[i].tolist()}"
        )
    return boxes
