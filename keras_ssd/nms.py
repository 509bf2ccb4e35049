"""Exact greedy non-maximum suppression with `keras.ops`: batched, fixed
shapes, backend-agnostic.

Greedy NMS visits candidates in descending score order and keeps a candidate
unless an already kept one overlaps it with IoU above the threshold. Here the
candidates of many independent groups (image x class) are processed at once.
The candidates are split into tiles of `tile_size`; tile `t` is first
suppressed by the kept boxes of tiles `0..t-1` (block IoU matrices), then
resolved internally by iterating

    keep = candidate & ~any_{j < i}(keep[j] & (iou[j, i] > threshold))

to its fixed point. That fixed point is unique and equals the greedy result
(entry `i` only depends on entries `j < i`, so after `n` rounds the first
`n` entries are final), and in practice it is reached in a few rounds. Tiles
past the last valid candidate of every group are never visited, so the cost
follows the number of candidates that pass the score threshold, and only the
upper triangle of the IoU matrix is ever computed.

IoU decisions are taken in float64 on the float32 boxes, which makes them
immune to fused multiply-adds: on the TensorFlow backend the NMS of
`multiclass_nms` runs as an XLA cluster (several times faster on CPU) and
still keeps exactly the boxes the plain graph and a numpy reference keep.
Runtimes without float64 kernels (LiteRT) get `overlap_dtype="float32"`.
The IoU arithmetic itself is `keras_ssd.boxes.iou_above_ops`.
The per-class candidate selection (`top_k`) stays outside XLA, on scores
with everything at or below the threshold set to -1: XLA sorts where
TensorFlow's kernel keeps a heap, and on mostly-background scores the heap
then sees only the few real candidates.
"""

import contextlib
import warnings

import keras
from keras import ops

from keras_ssd.boxes import iou_above_ops
from keras_ssd.xla import xla_compiled

#: `overlap_dtype` values `multiclass_nms`, `greedy_nms` and
#: `DecodeDetections` accept (`None`: float64, or float32 on JAX without x64).
OVERLAP_DTYPES = (None, "float32", "float64")


# Set only by the deprecated `overlap_dtype()` context manager.
_DECISION_DTYPE_OVERRIDE = []


def check_overlap_dtype(overlap_dtype, where="overlap_dtype"):
    """`overlap_dtype` if it is one of `OVERLAP_DTYPES`, else ValueError."""
    if overlap_dtype is not None and not (
        isinstance(overlap_dtype, str) and overlap_dtype in OVERLAP_DTYPES
    ):
        raise ValueError(
            f"{where} must be 'float32', 'float64' or None, got {overlap_dtype!r}"
        )
    return overlap_dtype


def _decision_dtype(overlap_dtype=None):
    """The dtype NMS takes its IoU decisions in: `overlap_dtype` when given,
    else float64, except on JAX without x64 support and on torch (then
    float32)."""
    if overlap_dtype is not None:
        return check_overlap_dtype(overlap_dtype)
    if _DECISION_DTYPE_OVERRIDE:
        return _DECISION_DTYPE_OVERRIDE[-1]
    if keras.backend.backend() == "torch":
        # Off TensorFlow, Keras promotes float64 operands to float32
        # (`keras.backend.result_type`), so torch would mix the two.
        return "float32"
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "float32"
    return "float64"


@contextlib.contextmanager
def overlap_dtype(dtype):
    """Deprecated: pass `overlap_dtype=` to `multiclass_nms`, `greedy_nms` or
    `DecodeDetections` instead.

    Traces NMS calls that do not say otherwise with the IoU test in `dtype`
    ("float32" or "float64"), process-wide, while the context is open.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"overlap_dtype must be 'float32' or 'float64', got {dtype!r}")
    warnings.warn(
        "keras_ssd.nms.overlap_dtype() is deprecated: pass overlap_dtype= to "
        "multiclass_nms / greedy_nms / DecodeDetections instead",
        DeprecationWarning,
        stacklevel=3,
    )
    _DECISION_DTYPE_OVERRIDE.append(dtype)
    try:
        yield
    finally:
        _DECISION_DTYPE_OVERRIDE.pop()


def _tiles(boxes, valid, lead, k, tile_size):
    """`greedy_nms`' tile-major layout of `(..., k, 4)` boxes and `(..., k)`
    valid flags: `(groups, t, nt, box tiles (nt, G, t, 4), valid tiles
    (nt, G, t), tiles holding a valid candidate in some group)`; a tile is
    one dynamic `take` along axis 0."""
    groups = 1
    for d in lead:
        if not isinstance(d, int):  # dynamic dimension (e.g. batch None in a graph)
            groups = -1
            break
        groups *= d
    t = int(min(max(int(tile_size), 1), k))
    nt = -(-k // t)
    pad = nt * t - k
    b = ops.reshape(boxes, (groups, k, 4))
    v = ops.reshape(valid, (groups, k))
    if pad:
        b = ops.pad(b, ((0, 0), (0, pad), (0, 0)))
        v = ops.pad(v, ((0, 0), (0, pad)), constant_values=False)
    b_tiles = ops.transpose(ops.reshape(b, (groups, nt, t, 4)), (1, 0, 2, 3))
    v_tiles = ops.transpose(ops.reshape(v, (groups, nt, t)), (1, 0, 2))
    position = ops.arange(nt * t, dtype="int32")[None, :]
    last = ops.max(ops.where(v, position + 1, 0))
    return groups, t, nt, b_tiles, v_tiles, (last + (t - 1)) // t


def greedy_nms(boxes, valid, iou_threshold=0.45, tile_size=64, overlap_dtype=None):
    """Greedy NMS over the last axis of groups of score-sorted candidates.

    Args:
        boxes: `(..., K, 4)` float xyxy boxes, each group sorted by
            descending score (ties: the earlier candidate wins).
        valid: `(..., K)` bool, candidates taking part (e.g. score above the
            threshold). Invalid candidates are never kept and suppress
            nothing.
        iou_threshold: float, a candidate is suppressed by a kept box when
            their IoU is strictly greater than this.
        tile_size: int, candidates per tile; only changes speed.
        overlap_dtype: "float64", "float32" or None (default): the dtype of
            the IoU test; None means float64, or float32 on JAX without
            `jax_enable_x64`.

    Returns:
        `(..., K)` bool mask of kept candidates: exactly what a sequential
        per-group greedy NMS keeps.

    The IoU test is done in float64 on the float32 box values. Products of
    float32 differences are exact in float64, so fused multiply-adds (which
    XLA may form) cannot change any IoU: the plain graph, XLA and a numpy
    float64 reference take identical decisions. (With `overlap_dtype=
    "float32"`, e.g. for LiteRT, decisions can differ from the float64 ones
    only when an IoU lies within rounding of the threshold.)
    """
    decision_dtype = _decision_dtype(overlap_dtype)
    boxes = ops.cast(ops.cast(ops.convert_to_tensor(boxes), "float32"), decision_dtype)
    valid = ops.cast(ops.convert_to_tensor(valid), "bool")
    shape = ops.shape(boxes)
    lead = tuple(shape[:-2])
    k = int(shape[-2])
    if k == 0:
        return valid
    groups, t, nt, b_tiles, v_tiles, tiles_needed = _tiles(boxes, valid, lead, k,
                                                           tile_size)

    # strictly_before[j, i] = j < i inside a tile.
    idx = ops.arange(t, dtype="int32")
    strictly_before = idx[:, None] < idx[None, :]
    tile_ids = ops.arange(nt, dtype="int32")[:, None, None]

    def tile_cond(i, keep):
        return i < tiles_needed

    def tile_body(i, keep):
        bt = ops.take(b_tiles, i, axis=0)  # (G, t, 4)
        cand = ops.take(v_tiles, i, axis=0)  # (G, t)

        def prev_cond(s, suppressed):
            return s < i

        def prev_body(s, suppressed):
            bs = ops.take(b_tiles, s, axis=0)
            ks = ops.take(keep, s, axis=0)
            hit = ops.logical_and(ks[:, :, None], iou_above_ops(bs, bt, iou_threshold))
            return s + 1, ops.logical_or(suppressed, ops.any(hit, axis=1))

        _, suppressed = ops.while_loop(
            prev_cond, prev_body, (ops.convert_to_tensor(0, "int32"),
                                   ops.zeros_like(cand))
        )
        cand = ops.logical_and(cand, ops.logical_not(suppressed))
        inner = ops.logical_and(iou_above_ops(bt, bt, iou_threshold), strictly_before[None])

        def fix_cond(cur, changed, n):
            return ops.logical_and(changed, n < t)

        def fix_body(cur, changed, n):
            sup = ops.any(ops.logical_and(cur[:, :, None], inner), axis=1)
            new = ops.logical_and(cand, ops.logical_not(sup))
            return new, ops.any(ops.not_equal(new, cur)), n + 1

        kept, _, _ = ops.while_loop(
            fix_cond, fix_body,
            (cand, ops.convert_to_tensor(True), ops.convert_to_tensor(0, "int32")),
        )
        keep = ops.where(tile_ids == i, kept[None], keep)
        return i + 1, keep

    _, keep = ops.while_loop(
        tile_cond, tile_body,
        (ops.convert_to_tensor(0, "int32"), ops.zeros_like(v_tiles)),
    )
    keep = ops.reshape(ops.transpose(keep, (1, 0, 2)), (groups, nt * t))[:, :k]
    return ops.reshape(keep, tuple(lead) + (k,))


def multiclass_nms(boxes, scores, score_threshold=0.01, iou_threshold=0.45,
                   max_candidates_per_class=400, top_k=200, tile_size=64,
                   use_xla=None, overlap_dtype=None):
    """Per-class greedy NMS for a batch, then the best `top_k` over classes.

    Args:
        boxes: `(B, N, 4)` float32 xyxy boxes (shared by all classes).
        scores: `(B, N, C)` float32 class scores (background excluded).
        score_threshold: candidates need a score strictly above this.
        iou_threshold: NMS IoU threshold (suppress when IoU > threshold).
        max_candidates_per_class: per image and class, only the best this
            many candidates above the threshold enter NMS.
        top_k: detections kept per image over all classes.
        tile_size: NMS tile size (speed only).
        use_xla: TensorFlow backend only: run the box gathering and the
            NMS as an XLA cluster (`tf.function(jit_compile=True)`): the same
            `keras.ops` graph, fused, several times faster on CPU (the
            `top_k` selections stay outside, where TensorFlow's kernel beats
            XLA's sort). `None` (default) means
            yes on the TensorFlow backend; ignored on other backends (JAX
            compiles whole functions itself).
        overlap_dtype: "float64", "float32" or None (default): the dtype
            NMS takes its IoU decisions in (see `greedy_nms`); "float32" for
            runtimes without float64 kernels (LiteRT).

    Returns:
        dict with `boxes` `(B, top_k, 4)`, `confidence` `(B, top_k)`,
        `labels` `(B, top_k)` int32 (0-based class, -1 padding) and
        `num_detections` `(B,)` int32. Detections are sorted by descending
        confidence (ties: lower class, then the higher ranked candidate);
        padding rows have zero boxes and zero confidence.
    """
    boxes = ops.convert_to_tensor(boxes, "float32")
    scores = ops.convert_to_tensor(scores, "float32")
    if scores.shape[1] is None or scores.shape[2] is None:
        raise ValueError(
            "multiclass_nms needs the number of priors and classes known when the "
            f"graph is built; got scores of shape {tuple(scores.shape)}"
        )
    n, c = int(scores.shape[1]), int(scores.shape[2])
    k = int(min(int(max_candidates_per_class), n))
    decision_dtype = _decision_dtype(overlap_dtype)
    class_major, suppress = _class_major_scores, _suppress
    if use_xla is not False:
        # The options are arguments (tf.function traces per value); only
        # what the functions read from elsewhere goes into the key.
        class_major = xla_compiled(("class_major",), class_major)
        suppress = xla_compiled(("suppress",), _suppress)
    # The reshapes only pin static shapes: what a compiled function returns
    # may carry unknown dimensions when TensorFlow answers a call with a
    # more general trace of it.
    per_class = ops.reshape(class_major(scores, float(score_threshold)), (-1, c, n))
    cand_scores, cand_idx = select_candidates(per_class, k)
    cand_boxes, keep = suppress(boxes, cand_scores, cand_idx, float(score_threshold),
                                float(iou_threshold), int(tile_size), decision_dtype)
    cand_boxes = ops.reshape(cand_boxes, (-1, c, k, 4))
    keep = ops.reshape(keep, (-1, c, k))
    return _top_detections(cand_boxes, cand_scores, keep, int(top_k))


def _class_major_scores(scores, score_threshold):
    """`(B, N, C)` scores -> `(B, C, N)`, every score not above the
    threshold replaced by -1.

    The candidates that can be kept are unchanged, and so is their order in
    `top_k` (descending score, ties by lower prior index); the rest tie at
    -1, which lets a heap-based `top_k` skip them: on mostly-background
    scores the selection is faster (docs/performance.md).
    """
    per_class = ops.transpose(scores, (0, 2, 1))
    return ops.where(per_class > score_threshold, per_class, -1.0)


def select_candidates(scores, k):
    """The best `k` candidates of every image and class, by descending score.

    Args:
        scores: `(B, C, N)` float32 class-major scores (see
            `_class_major_scores`).
        k: int <= N.

    Returns:
        `(cand_scores, cand_idx)`, both `(B, C, k)`: scores and prior indices
        (ties: the lower prior index first).

    Kept out of the XLA cluster on purpose: XLA lowers `top_k` to a full
    sort, which on CPU is slower than TensorFlow's own kernel.
    """
    return sorted_top_k(scores, k)


def sorted_top_k(x, k):
    """`ops.top_k(x, k, sorted=True)` with ties in index order.

    TensorFlow's and JAX's `top_k` put the lower index first among equal
    values; `torch.topk` leaves their order unspecified, so under torch
    this slices a stable descending `argsort` instead.

    Args:
        x: `(..., N)` values.
        k: int <= N.

    Returns:
        `(values, indices)`, both `(..., k)`.
    """
    if keras.backend.backend() != "torch":
        return ops.top_k(x, k, sorted=True)
    order = ops.argsort(ops.negative(x), axis=-1)[..., :k]
    return ops.take_along_axis(x, order, axis=-1), order


def _suppress(boxes, cand_scores, cand_idx, score_threshold, iou_threshold, tile_size,
              decision_dtype):
    """Gather the candidate boxes `(B, C, K, 4)` and run greedy NMS on them;
    returns `(cand_boxes, keep)`."""
    batch = ops.shape(cand_idx)[0]
    n = int(boxes.shape[1])
    # Gather the candidate boxes through a flat index (cheaper than
    # broadcasting the boxes over classes for take_along_axis).
    offset = ops.arange(batch, dtype=cand_idx.dtype)[:, None, None] * n
    cand_boxes = ops.take(ops.reshape(boxes, (-1, 4)), cand_idx + offset, axis=0)
    valid = cand_scores > score_threshold
    keep = greedy_nms(cand_boxes, valid, iou_threshold, tile_size=tile_size,
                      overlap_dtype=decision_dtype)
    return cand_boxes, keep


def _top_detections(cand_boxes, cand_scores, keep, top_k):
    """The best `top_k` kept candidates over all classes, padded."""
    batch = ops.shape(cand_scores)[0]
    c = int(cand_scores.shape[1])
    k = int(cand_scores.shape[2])
    flat_keep = ops.reshape(keep, (batch, c * k))
    flat_scores = ops.where(flat_keep, ops.reshape(cand_scores, (batch, c * k)), -1.0)
    kk = int(min(top_k, c * k))
    best, order = sorted_top_k(flat_scores, kk)  # (B, kk)
    found = ops.take_along_axis(flat_keep, order, axis=1)
    out_boxes = ops.take(
        ops.reshape(cand_boxes, (-1, 4)),
        order + ops.arange(batch, dtype=order.dtype)[:, None] * (c * k),
        axis=0,
    )
    out_boxes = ops.where(found[..., None], out_boxes, 0.0)
    confidence = ops.where(found, best, 0.0)
    labels = ops.where(found, ops.cast(order // k, "int32"), -1)
    num = ops.sum(ops.cast(found, "int32"), axis=1)
    if kk < top_k:
        extra = top_k - kk
        out_boxes = ops.pad(out_boxes, ((0, 0), (0, extra), (0, 0)))
        confidence = ops.pad(confidence, ((0, 0), (0, extra)))
        labels = ops.pad(labels, ((0, 0), (0, extra)), constant_values=-1)
    return {
        "boxes": out_boxes,
        "confidence": confidence,
        "labels": labels,
        "num_detections": num,
    }
