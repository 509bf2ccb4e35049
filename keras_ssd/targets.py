"""Training targets: match ground truth to anchors (priors) and encode the
offsets. The box arithmetic (IoU, grid IoU, encoding) is `keras_ssd.boxes`."""

import threading

import numpy as np

from keras_ssd.boxes import (
    anchor_grid,
    cxcywh_to_xyxy,
    encode,
    grid_iou,
    iou,
    validate_boxes,
)
from keras_ssd.config import DEFAULT_VARIANCES
from keras_ssd.matching import match_anchors


class TargetEncoder:
    """Encodes one image's boxes against a fixed set of anchors (priors).

    Holds the anchors in both formats so that encoding many images (the data
    pipeline) does not redo the conversion. `encode_targets` is the one-shot
    functional form.

    Args:
        anchors: `(N, 4)` normalised `(cx, cy, w, h)` anchors, as returned
            by `keras_ssd.generate_anchors`.
        iou_threshold: float, IoU from which an anchor is positive.
        variances: 4 floats, the encoding variances.
        num_classes: optional int; when given, labels must be below it.
        grid: optional list of `(feature_map_size, boxes_per_cell)` describing
            how `anchors` tile the feature maps (as `generate_anchors` lays
            them out). It enables `keras_ssd.boxes.grid_iou`, a faster, exact
            IoU that computes overlaps per axis and multiplies them on the
            grid. `from_config` sets it.

    Call arguments:
        boxes: `(G, 4)` normalised xyxy boxes of one image.
        labels: `(G,)` 0-based class labels.
        ignore: optional `(G,)` bool; anchors whose match is an ignored box
            (e.g. VOC "difficult") get class -1, "ignore", in the loss.
        crowd: optional `(G,)` bool; crowd regions (COCO `iscrowd=1`). They
            take no part in the matching (no positives, and no prior taken
            from a real object in the bipartite step); every prior that is
            not positive for a real box and lies at least `iou_threshold`
            inside a crowd box (intersection over the prior's area, the
            "ioa" of Detectron's crowd filter) gets class -1, "ignore".

    Returns:
        float32 `(N, 5)`: the 4 encoded offsets, then the class index as a
        float with 0 = background (object label `k` -> `k + 1`).

    Example:

    >>> encoder = TargetEncoder(generate_anchors(SSDConfig.ssd300(20)))
    >>> encoder([[0.1, 0.1, 0.5, 0.6]], [14]).shape
    (8732, 5)
    """

    def __init__(self, anchors, iou_threshold=0.5, variances=DEFAULT_VARIANCES,
                 num_classes=None, grid=None):
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"anchors must have shape (N, 4), got {anchors.shape}")
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
        self.anchors = anchors
        self.anchors_xyxy = cxcywh_to_xyxy(anchors).astype(np.float32)
        self._grid = anchor_grid(self.anchors_xyxy, grid) if grid is not None else None
        self._local = threading.local()
        self.iou_threshold = float(iou_threshold)
        self.variances = np.asarray(variances, dtype=np.float32)
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, config, iou_threshold=0.5, **kwargs):
        """An encoder for the anchors of an `SSDConfig` (with its variances)."""
        from keras_ssd.anchors import generate_anchors
        from keras_ssd.config import SSDConfig

        config = SSDConfig.from_dict(config)
        grid = list(zip(config.feature_map_shapes, config.boxes_per_cell))
        kwargs.setdefault("num_classes", config.num_classes)
        return cls(generate_anchors(config), iou_threshold=iou_threshold,
                   variances=config.variances, grid=grid, **kwargs)

    def __getstate__(self):
        # Scratch buffers are per thread and rebuilt on demand: don't pickle
        # them (worker processes started with "spawn" pickle the encoder).
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    @property
    def num_anchors(self):
        return self.anchors.shape[0]

    def _scratch(self, num_boxes):
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0].shape[0] < num_boxes:
            rows = max(num_boxes, 32)
            bufs = tuple(
                np.empty((rows, self.num_anchors), dtype=np.float32) for _ in range(2)
            )
            self._local.bufs = bufs
        return bufs[0][:num_boxes], bufs[1][:num_boxes]

    def overlaps(self, boxes):
        """IoU `(G, N)` of float32 xyxy `boxes` (positive width and height)
        with the anchors: `keras_ssd.boxes.grid_iou` when the grid is known,
        else `keras_ssd.boxes.iou` (the same values).

        Returns a view into a per-thread buffer, valid until the next call.
        """
        buffers = self._scratch(boxes.shape[0])
        if self._grid is None:
            return iou(boxes, self.anchors_xyxy, *buffers)
        return grid_iou(boxes, self._grid, *buffers)

    def crowd_cover(self, boxes):
        """Intersection over each anchor's area with the xyxy `boxes`:
        float32 `(G, N)`, 1 for an anchor wholly inside a box."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        a = self.anchors_xyxy
        iw = (np.minimum(boxes[:, None, 2], a[None, :, 2])
              - np.maximum(boxes[:, None, 0], a[None, :, 0]))
        ih = (np.minimum(boxes[:, None, 3], a[None, :, 3])
              - np.maximum(boxes[:, None, 1], a[None, :, 1]))
        inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
        area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        return inter / np.maximum(area, np.float32(1e-12))[None, :]

    @staticmethod
    def _mask(mask, name, labels):
        if mask is None:
            return None
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != labels.shape:
            raise ValueError(
                f"encode_targets: {name} has shape {mask.shape}, labels {labels.shape}"
            )
        return mask

    def __call__(self, boxes, labels, ignore=None, crowd=None):
        labels = np.asarray(labels)
        boxes = validate_boxes(boxes, where="encode_targets boxes")
        if labels.ndim != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"encode_targets: got {boxes.shape[0]} boxes but labels of shape "
                f"{labels.shape}"
            )
        if labels.size and (
            not np.all(np.equal(np.mod(labels, 1), 0)) or labels.min() < 0
        ):
            raise ValueError(f"encode_targets: labels must be integers >= 0, got {labels}")
        if self.num_classes is not None and labels.size and labels.max() >= self.num_classes:
            raise ValueError(
                f"encode_targets: label {int(labels.max())} out of range for "
                f"{self.num_classes} classes"
            )
        ignore = self._mask(ignore, "ignore", labels)
        crowd = self._mask(crowd, "crowd", labels)
        out = np.zeros((self.num_anchors, 5), dtype=np.float32)
        if boxes.shape[0] == 0:
            return out
        boxes = boxes.astype(np.float32)
        if crowd is not None and crowd.any():
            # Real objects are matched as if the crowd regions were absent;
            # what is left background inside a crowd region is ignored.
            real = ~crowd
            out = self(boxes[real], labels[real], None if ignore is None else ignore[real])
            covered = self.crowd_cover(boxes[crowd]).max(axis=0) >= self.iou_threshold
            out[covered & (out[:, 4] == 0), 4] = -1.0
            return out
        overlaps = self.overlaps(boxes)
        matches = match_anchors(overlaps, self.iou_threshold)
        pos = np.flatnonzero(matches >= 0)
        idx = matches[pos]
        out[pos, :4] = encode(boxes[idx], self.anchors[pos], self.variances)
        cls = labels[idx].astype(np.float32) + 1.0
        if ignore is not None:
            cls = np.where(ignore[idx], -1.0, cls)
        out[pos, 4] = cls
        return out


def encode_targets(boxes, labels, anchors, iou_threshold=0.5,
                   variances=DEFAULT_VARIANCES, ignore=None, crowd=None):
    """Encode one image's ground truth as SSD training targets.

    Args:
        boxes: `(G, 4)` normalised xyxy boxes (may be empty).
        labels: `(G,)` 0-based class labels.
        anchors: `(N, 4)` anchors from `generate_anchors`.
        iou_threshold: float, IoU from which an anchor is positive.
        variances: 4 floats, the encoding variances.
        ignore: optional `(G,)` bool mask of boxes to ignore in the loss.
        crowd: optional `(G,)` bool mask of crowd regions (see
            `TargetEncoder`): never positive, and the priors they cover are
            ignored.

    Returns:
        float32 `(N, 5)` targets: 4 offsets then class index (0 = background,
        -1 = ignore).

    Raises:
        ValueError: on degenerate or non-finite boxes, or mismatched labels.
    """
    return _cached_encoder(anchors, iou_threshold, variances)(boxes, labels, ignore, crowd)


#: Encoders `encode_targets` built, newest last: `(anchors copy, threshold,
#: variances, encoder)`. A few entries: programs use one or two anchor sets.
_ENCODERS = []
_ENCODERS_LOCK = threading.Lock()
_MAX_ENCODERS = 4


def _cached_encoder(anchors, iou_threshold, variances):
    """The `TargetEncoder` for these anchors and settings, built once.

    Entries are found by value (an `np.array_equal` on the anchors, about 20
    us for SSD300's), so an array changed in place never gets a stale encoder.
    The encoder itself is thread-safe; the lock only guards the list.
    """
    anchors = np.asarray(anchors, dtype=np.float32)
    threshold = float(iou_threshold)
    variances = tuple(float(v) for v in np.asarray(variances, dtype=np.float32).ravel())
    with _ENCODERS_LOCK:
        for i, (kept, t, v, encoder) in enumerate(_ENCODERS):
            if t == threshold and v == variances and kept.shape == anchors.shape \
                    and np.array_equal(kept, anchors):
                _ENCODERS.append(_ENCODERS.pop(i))
                return encoder
    encoder = TargetEncoder(anchors, threshold, variances)  # validates the arguments
    with _ENCODERS_LOCK:
        _ENCODERS.append((anchors.copy(), threshold, variances, encoder))
        del _ENCODERS[:-_MAX_ENCODERS]
    return encoder
