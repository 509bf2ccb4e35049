"""Box geometry, written once: format conversions, area, clipping, IoU and the
SSD offset codec, each as a numpy function and a `keras.ops` function side by
side.

Naming: `name(...)` is the numpy form (arrays in, arrays out: the data
pipeline, target encoding, evaluation); `name_ops(...)` is the `keras.ops`
form (tensors in model graphs: `DecodeDetections`, NMS). The formula of each
operation is written once, as a private `_name(xp, ...)` run with `xp` =
numpy or `keras.ops`; where the data pipeline's speed asks for it (`iou`,
`encode`, `decode`, `grid_iou`), the numpy form spells the same operations,
in the same order, with in-place ufuncs or two coordinates at a time. On the
same float inputs the two forms give the same bits (tested; XLA aside, which
may fuse multiply-adds, and `exp`/`log`, whose last bit may differ between
numpy and a backend).

| numpy            | keras.ops            |                                       |
|------------------|----------------------|---------------------------------------|
| `xyxy_to_cxcywh` | `xyxy_to_cxcywh_ops` | corners -> centre and size            |
| `cxcywh_to_xyxy` | `cxcywh_to_xyxy_ops` | centre and size -> corners            |
| `area`           | `area_ops`           | area (0 for inverted boxes)           |
| `clip`           | `clip_ops`           | coordinates clipped to `[low, high]`  |
| `iou`            | `iou_ops`            | pairwise IoU `(..., M, N)`            |
| `iou_above`      | `iou_above_ops`      | `iou > threshold`, three passes fewer |
| `encode`         | `encode_ops`         | xyxy boxes -> SSD offsets             |
| `decode`         | `decode_ops`         | SSD offsets -> xyxy boxes             |
| `grid_iou`       |                      | `iou` with grid-laid anchors, faster  |

Boxes are `(..., 4)` arrays. "xyxy" is `(xmin, ymin, xmax, ymax)`,
"cxcywh" is `(centre x, centre y, width, height)`; anchors (the SSD priors)
are cxcywh. Everything is vectorised.

This module imports Keras only inside the `_ops` functions, so the numpy
forms (and `import keras_ssd` in the command line's lazy mode) stay free of
TensorFlow.
"""

from typing import NamedTuple

import numpy as np

from keras_ssd.config import DEFAULT_VARIANCES


def _keras_ops():
    from keras import ops

    return ops


# ------------------------------------------------------------ formulas
# Each takes the array module `xp` (numpy or keras.ops) first. The operation
# order is part of the contract: it is what makes the two forms bit-identical.
def _xyxy_to_cxcywh(xp, boxes):
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    return xp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def _cxcywh_to_xyxy(xp, boxes):
    cx, cy = boxes[..., 0], boxes[..., 1]
    half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
    return xp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def _area(xp, boxes):
    w = xp.maximum(boxes[..., 2] - boxes[..., 0], 0)
    h = xp.maximum(boxes[..., 3] - boxes[..., 1], 0)
    return w * h


def _intersection_union(xp, boxes_a, boxes_b):
    """Pairwise intersection and union areas `(..., M, N)` of xyxy boxes.

    `area = (x2 - x1) * (y2 - y1)` (not clipped: an inverted box has no
    intersection with anything, so its IoU is 0 either way),
    `inter = max(min(x2a, x2b) - max(x1a, x1b), 0) * max(min(y2a, y2b) -
    max(y1a, y1b), 0)`, `union = (area_a + area_b) - inter`.
    """
    ax1, ay1, ax2, ay2 = (boxes_a[..., i] for i in range(4))
    bx1, by1, bx2, by2 = (boxes_b[..., i] for i in range(4))
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    iw = xp.maximum(
        xp.minimum(ax2[..., :, None], bx2[..., None, :])
        - xp.maximum(ax1[..., :, None], bx1[..., None, :]),
        0,
    )
    ih = xp.maximum(
        xp.minimum(ay2[..., :, None], by2[..., None, :])
        - xp.maximum(ay1[..., :, None], by1[..., None, :]),
        0,
    )
    inter = iw * ih
    union = (area_a[..., :, None] + area_b[..., None, :]) - inter
    return inter, union


def _iou(xp, boxes_a, boxes_b):
    inter, union = _intersection_union(xp, boxes_a, boxes_b)
    positive = union > 0.0
    return xp.where(positive, inter / xp.where(positive, union, 1.0), 0.0)


def _iou_above(xp, boxes_a, boxes_b, threshold):
    # No zero-union guard: a positive intersection implies a positive union,
    # and with no intersection `0 / union` is 0, -0 or NaN, none of which
    # exceeds a non-negative threshold.
    inter, union = _intersection_union(xp, boxes_a, boxes_b)
    return (inter / union) > threshold


def _encode(xp, boxes, anchors, v):
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    acx, acy, aw, ah = (anchors[..., i] for i in range(4))
    return xp.stack(
        [
            ((x1 + x2) / 2 - acx) / aw / v[0],
            ((y1 + y2) / 2 - acy) / ah / v[1],
            xp.log((x2 - x1) / aw) / v[2],
            xp.log((y2 - y1) / ah) / v[3],
        ],
        axis=-1,
    )


def _decode(xp, offsets, anchors, v):
    acx, acy, aw, ah = (anchors[..., i] for i in range(4))
    cx = acx + offsets[..., 0] * v[0] * aw
    cy = acy + offsets[..., 1] * v[1] * ah
    half_w = aw * xp.exp(offsets[..., 2] * v[2]) / 2
    half_h = ah * xp.exp(offsets[..., 3] * v[3]) / 2
    return xp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def _float_dtype(array):
    """The dtype the numpy codec computes in: the array's, float64 for ints."""
    return array.dtype if np.issubdtype(array.dtype, np.floating) else np.float64


def _check_variances(variances):
    v = [float(x) for x in variances]
    if len(v) != 4:
        raise ValueError(f"variances must be 4 numbers, got {list(variances)}")
    return v


# --------------------------------------------------------- conversions
def xyxy_to_cxcywh(boxes):
    """`(xmin, ymin, xmax, ymax)` -> `(cx, cy, w, h)` (numpy)."""
    return _xyxy_to_cxcywh(np, np.asarray(boxes))


def xyxy_to_cxcywh_ops(boxes):
    """`(xmin, ymin, xmax, ymax)` -> `(cx, cy, w, h)` (`keras.ops`)."""
    ops = _keras_ops()
    return _xyxy_to_cxcywh(ops, ops.convert_to_tensor(boxes))


def cxcywh_to_xyxy(boxes):
    """`(cx, cy, w, h)` -> `(xmin, ymin, xmax, ymax)` (numpy)."""
    return _cxcywh_to_xyxy(np, np.asarray(boxes))


def cxcywh_to_xyxy_ops(boxes):
    """`(cx, cy, w, h)` -> `(xmin, ymin, xmax, ymax)` (`keras.ops`)."""
    ops = _keras_ops()
    return _cxcywh_to_xyxy(ops, ops.convert_to_tensor(boxes))


def area(boxes):
    """Area `(...)` of xyxy boxes `(..., 4)`, 0 for inverted boxes (numpy)."""
    return _area(np, np.asarray(boxes))


def area_ops(boxes):
    """Area `(...)` of xyxy boxes `(..., 4)`, 0 for inverted boxes (`keras.ops`)."""
    ops = _keras_ops()
    return _area(ops, ops.convert_to_tensor(boxes))


def clip(boxes, low=0.0, high=1.0):
    """Box coordinates clipped to `[low, high]` (numpy)."""
    return np.clip(np.asarray(boxes), low, high)


def clip_ops(boxes, low=0.0, high=1.0):
    """Box coordinates clipped to `[low, high]` (`keras.ops`)."""
    ops = _keras_ops()
    return ops.clip(boxes, low, high)


# ----------------------------------------------------------------- IoU
def iou(boxes_a, boxes_b, out=None, scratch=None):
    """Pairwise IoU of xyxy boxes (numpy).

    The formula and operation order of `iou_ops` (see
    `_intersection_union`), written with in-place ufuncs: the two give
    bit-identical values on the same inputs.

    Args:
        boxes_a: `(..., M, 4)` array.
        boxes_b: `(..., N, 4)` array, same leading dimensions.
        out, scratch: optional `(..., M, N)` float buffers, so that repeated
            calls allocate less (the target encoder keeps a pair per
            thread); `out` receives the IoU.

    Returns:
        `(..., M, N)` intersection over union (0 where the union is not
        positive), in the inputs' float dtype (float64 for integer boxes).
    """
    a = np.asarray(boxes_a)
    b = np.asarray(boxes_b)
    ax1, ay1, ax2, ay2 = (a[..., i, None] for i in range(4))
    bx1, by1, bx2, by2 = (b[..., i][..., None, :] for i in range(4))
    if out is None:
        dtype = np.result_type(a, b)
        if not np.issubdtype(dtype, np.floating):
            dtype = np.float64
        shape = np.broadcast_shapes(ax1.shape, bx1.shape)
        out = np.empty(shape, dtype)
    if scratch is None:
        scratch = np.empty_like(out)
    inter, tmp = out, scratch
    np.minimum(ax2, bx2, out=inter)
    np.subtract(inter, np.maximum(ax1, bx1), out=inter)
    np.maximum(inter, 0, out=inter)  # iw
    np.minimum(ay2, by2, out=tmp)
    np.subtract(tmp, np.maximum(ay1, by1), out=tmp)
    np.maximum(tmp, 0, out=tmp)  # ih
    np.multiply(inter, tmp, out=inter)
    np.add((ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1), out=tmp)
    np.subtract(tmp, inter, out=tmp)  # union
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(inter, tmp, out=out)
    empty = np.logical_not(tmp > 0)
    if empty.any():
        out[empty] = 0
    return out


def iou_ops(boxes_a, boxes_b):
    """Pairwise IoU of xyxy boxes (`keras.ops`), in the dtype of the inputs.

    Same shapes and formula as `iou`; outside XLA the two give bit-identical
    values on the same inputs.
    """
    ops = _keras_ops()
    return _iou(ops, ops.convert_to_tensor(boxes_a), ops.convert_to_tensor(boxes_b))


def iou_above(boxes_a, boxes_b, threshold):
    """`iou(boxes_a, boxes_b) > threshold` for a `threshold >= 0` (numpy),
    without `iou`'s zero-union guard (same answer, fewer passes)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _iou_above(np, np.asarray(boxes_a), np.asarray(boxes_b), threshold)


def iou_above_ops(boxes_a, boxes_b, threshold):
    """`iou_ops(boxes_a, boxes_b) > threshold` for a `threshold >= 0`
    (`keras.ops`): the NMS overlap test, three passes over the pair matrix
    fewer than the guarded IoU."""
    ops = _keras_ops()
    return _iou_above(ops, ops.convert_to_tensor(boxes_a), ops.convert_to_tensor(boxes_b),
                      threshold)


# ---------------------------------------------------------- SSD codec
def encode(boxes, anchors, variances=DEFAULT_VARIANCES):
    """Encode xyxy boxes as SSD offsets relative to `(cx, cy, w, h)` anchors
    (numpy, in the boxes' dtype).

    `((gcx - acx) / aw / v0, (gcy - acy) / ah / v1, log(gw / aw) / v2,
    log(gh / ah) / v3)`; `boxes` and `anchors` broadcast against each other.
    """
    boxes = np.asarray(boxes)
    anchors = np.asarray(anchors)
    v = np.asarray(_check_variances(variances), dtype=_float_dtype(boxes))
    # `_encode`'s operations, two coordinates at a time: fewer numpy calls on
    # the data pipeline's small arrays, the same values.
    lo, hi = boxes[..., :2], boxes[..., 2:]
    centre = ((lo + hi) / 2 - anchors[..., :2]) / anchors[..., 2:] / v[:2]
    size = np.log((hi - lo) / anchors[..., 2:]) / v[2:]
    return np.concatenate([centre, size], axis=-1)


def encode_ops(boxes, anchors, variances=DEFAULT_VARIANCES, dtype="float32"):
    """`encode` with `keras.ops`, computed in `dtype` (default float32)."""
    ops = _keras_ops()
    return _encode(ops, ops.cast(boxes, dtype), ops.cast(anchors, dtype),
                   _check_variances(variances))


def decode(offsets, anchors, variances=DEFAULT_VARIANCES):
    """Inverse of `encode`: SSD offsets -> xyxy boxes (numpy, in the
    offsets' dtype)."""
    offsets = np.asarray(offsets)
    anchors = np.asarray(anchors)
    v = np.asarray(_check_variances(variances), dtype=_float_dtype(offsets))
    # `_decode`'s operations, two coordinates at a time.
    centre = anchors[..., :2] + offsets[..., :2] * v[:2] * anchors[..., 2:]
    half = anchors[..., 2:] * np.exp(offsets[..., 2:] * v[2:]) / 2
    return np.concatenate([centre - half, centre + half], axis=-1)


def decode_ops(offsets, anchors, variances=DEFAULT_VARIANCES, dtype="float32"):
    """SSD offsets -> xyxy boxes with `keras.ops`, computed in `dtype`
    (default float32): the decoder layer's decoding.

    Args:
        offsets: `(..., 4)` encoded offsets.
        anchors: `(..., 4)` `(cx, cy, w, h)` anchors, broadcastable.
        variances: 4 floats.
        dtype: computation and output dtype.

    Returns:
        `(..., 4)` `(xmin, ymin, xmax, ymax)`.
    """
    ops = _keras_ops()
    return _decode(ops, ops.cast(offsets, dtype), ops.cast(anchors, dtype),
                   _check_variances(variances))


# ------------------------------------------------------------ grid IoU
class AnchorGrid(NamedTuple):
    """Anchors laid out on feature-map grids, split per axis (see
    `anchor_grid`)."""

    #: `(2, sum fw * k)` x-intervals `(xmin, xmax)` of the anchors of each
    #: column, map after map (column-major within a map, then box).
    x: np.ndarray
    #: `(2, sum fh * k)` y-intervals of the anchors of each row, likewise.
    y: np.ndarray
    #: `(start, end, fh, fw, k)` per map: anchor index range, map height and
    #: width, boxes per cell.
    maps: tuple
    #: `(N,)` anchor areas, by the formula `iou` uses.
    areas: np.ndarray


def anchor_grid(anchors_xyxy, feature_maps):
    """Describe xyxy anchors as the per-axis intervals `grid_iou` needs.

    An anchor of map `fh x fw` with `k` boxes per cell at (row, column, box)
    spans the x-interval of (column, box) and the y-interval of (row, box),
    which is how `keras_ssd.anchors.generate_anchors` lays them out (rows,
    then columns, then boxes; map after map).

    Args:
        anchors_xyxy: `(N, 4)` xyxy anchors.
        feature_maps: list of `(feature_map_size, boxes_per_cell)`, the size
            an int (a square map) or `(height, width)`.

    Returns:
        `AnchorGrid`.

    Raises:
        ValueError: when the anchors do not lie on that grid.
    """
    anchors_xyxy = np.asarray(anchors_xyxy)
    total = anchors_xyxy.shape[0]
    xs, ys, maps = [], [], []
    start = 0
    for f, k in feature_maps:
        fh, fw = (int(f), int(f)) if np.ndim(f) == 0 else (int(v) for v in f)
        k = int(k)
        end = start + fh * fw * k
        if end > total:
            raise ValueError(f"grid {feature_maps} describes more than {total} anchors")
        seg = anchors_xyxy[start:end].reshape(fh, fw, k, 4)
        x_iv = seg[0, :, :, 0::2]  # (cols, k, 2): x-intervals along a row
        y_iv = seg[:, 0, :, 1::2]  # (rows, k, 2)
        if not (np.array_equal(seg[..., 0::2], np.broadcast_to(x_iv, seg[..., 0::2].shape))
                and np.array_equal(
                    seg[..., 1::2],
                    np.broadcast_to(y_iv[:, None], seg[..., 1::2].shape))):
            raise ValueError("anchors are not laid out on the given grid")
        xs.append(x_iv.reshape(-1, 2))
        ys.append(y_iv.reshape(-1, 2))
        maps.append((start, end, fh, fw, k))
        start = end
    if start != total:
        raise ValueError(f"grid {feature_maps} describes {start} anchors, not {total}")
    a = anchors_xyxy
    return AnchorGrid(
        x=np.ascontiguousarray(np.concatenate(xs).T),
        y=np.ascontiguousarray(np.concatenate(ys).T),
        maps=tuple(maps),
        areas=(a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]),
    )


def grid_iou(boxes, grid, out=None, scratch=None):
    """IoU `(G, N)` of xyxy boxes with grid-laid anchors, exactly (numpy).

    Equals `iou(boxes, anchors_xyxy)` bit for bit, several times faster: the
    overlap along x depends only on (column, box) and along y only on (row,
    box), so both are computed per axis (`G x (f * k)` each) and multiplied
    on the grid.

    Args:
        boxes: `(G, 4)` xyxy boxes with positive width and height (so that
            every union is positive; see `validate_boxes`).
        grid: `AnchorGrid` from `anchor_grid`.
        out, scratch: optional `(G, N)` buffers, so that repeated calls
            (the data pipeline) allocate nothing; `out` receives the IoU.

    Returns:
        `out` (a new float array when not given).
    """
    boxes = np.asarray(boxes)
    g, n = boxes.shape[0], grid.areas.shape[0]
    if out is None:
        out = np.empty((g, n), np.result_type(boxes, grid.areas))
    if scratch is None:
        scratch = np.empty_like(out)
    x1, y1, x2, y2 = (boxes[:, i : i + 1] for i in range(4))
    iw = np.minimum(x2, grid.x[1]) - np.maximum(x1, grid.x[0])
    ih = np.minimum(y2, grid.y[1]) - np.maximum(y1, grid.y[0])
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    x_offset = y_offset = 0
    for start, end, fh, fw, k in grid.maps:
        inter = out[:, start:end]
        inter.shape = (g, fh, fw * k)  # a view: raises rather than copy
        # inter[g, row, (col, box)] = ih[g, row, box] * iw[g, col, box].
        # Tiling ih along the columns keeps numpy's inner loop long
        # (fw * k); broadcasting over a length-k inner axis is much slower.
        np.multiply(
            np.tile(ih[:, y_offset : y_offset + fh * k].reshape(g, fh, k), (1, 1, fw)),
            iw[:, None, x_offset : x_offset + fw * k],
            out=inter,
        )
        x_offset += fw * k
        y_offset += fh * k
    np.add((x2 - x1) * (y2 - y1), grid.areas, out=scratch)
    np.subtract(scratch, out, out=scratch)
    np.divide(out, scratch, out=out)
    return out


# -------------------------------------------------------------- checks
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
