"""Training targets: match ground truth to priors and encode the offsets."""

import numpy as np

from keras_ssd.boxes import cxcywh_to_xyxy, encode_boxes, iou, validate_boxes
from keras_ssd.config import DEFAULT_VARIANCES
from keras_ssd.matching import match_anchors


class TargetEncoder:
    """Encodes one image's boxes against a fixed set of priors.

    Holds the priors in both formats so that encoding many images (the data
    pipeline) does not redo the conversion. `encode_targets` is the one-shot
    functional form.

    Args:
        anchors: `(N, 4)` normalised `(cx, cy, w, h)` priors, as returned by
            `keras_ssd.generate_anchors`.
        iou_threshold: float, IoU from which a prior is positive.
        variances: 4 floats, the encoding variances.
        num_classes: optional int; when given, labels must be below it.

    Call arguments:
        boxes: `(G, 4)` normalised xyxy boxes of one image.
        labels: `(G,)` 0-based class labels.
        ignore: optional `(G,)` bool; priors whose match is an ignored box
            (e.g. VOC "difficult") get class -1, "ignore", in the loss.

    Returns:
        float32 `(N, 5)`: the 4 encoded offsets, then the class index as a
        float with 0 = background (object label `k` -> `k + 1`).

    Example:

    >>> encoder = TargetEncoder(generate_anchors(SSDConfig.ssd300(20)))
    >>> encoder([[0.1, 0.1, 0.5, 0.6]], [14]).shape
    (8732, 5)
    """

    def __init__(self, anchors, iou_threshold=0.5, variances=DEFAULT_VARIANCES,
                 num_classes=None):
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"anchors must have shape (N, 4), got {anchors.shape}")
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise ValueError(f"iou_threshold must lie in (0, 1], got {iou_threshold}")
        self.anchors = anchors
        self.anchors_xyxy = cxcywh_to_xyxy(anchors).astype(np.float32)
        self.iou_threshold = float(iou_threshold)
        self.variances = np.asarray(variances, dtype=np.float32)
        self.num_classes = num_classes

    @property
    def num_anchors(self):
        return self.anchors.shape[0]

    def __call__(self, boxes, labels, ignore=None):
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
        out = np.zeros((self.num_anchors, 5), dtype=np.float32)
        if boxes.shape[0] == 0:
            return out
        boxes = boxes.astype(np.float32)
        overlaps = iou(boxes, self.anchors_xyxy)
        matches = match_anchors(overlaps, self.iou_threshold)
        pos = matches >= 0
        idx = matches[pos]
        out[pos, :4] = encode_boxes(boxes[idx], self.anchors[pos], self.variances)
        cls = labels[idx].astype(np.float32) + 1.0
        if ignore is not None:
            ignore = np.asarray(ignore, dtype=bool)
            if ignore.shape != labels.shape:
                raise ValueError(
                    f"encode_targets: ignore has shape {ignore.shape}, labels {labels.shape}"
                )
            cls = np.where(ignore[idx], -1.0, cls)
        out[pos, 4] = cls
        return out


def encode_targets(boxes, labels, anchors, iou_threshold=0.5,
                   variances=DEFAULT_VARIANCES, ignore=None):
    """Encode one image's ground truth as SSD training targets.

    Args:
        boxes: `(G, 4)` normalised xyxy boxes (may be empty).
        labels: `(G,)` 0-based class labels.
        anchors: `(N, 4)` priors from `generate_anchors`.
        iou_threshold: float, IoU from which a prior is positive.
        variances: 4 floats, the encoding variances.
        ignore: optional `(G,)` bool mask of boxes to ignore in the loss.

    Returns:
        float32 `(N, 5)` targets: 4 offsets then class index (0 = background,
        -1 = ignore).

    Raises:
        ValueError: on degenerate or non-finite boxes, or mismatched labels.
    """
    return TargetEncoder(anchors, iou_threshold, variances)(boxes, labels, ignore)
