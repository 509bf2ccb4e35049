"""Matching ground-truth boxes to anchors (priors): the SSD "bipartite +
per-anchor" strategy, vectorised over anchors."""

import numpy as np

_MIN_OVERLAP = 1e-6


def bipartite_match(overlaps):
    """Give every ground truth its own anchor, greedily by highest IoU.

    Repeatedly takes the (ground truth, anchor) pair with the highest IoU
    among unmatched ground truths and unmatched anchors, as Caffe does, so two
    objects competing for the same anchor end up on different anchors. Ties go
    to the lower ground-truth index, then the lower anchor index. A ground
    truth that overlaps no anchor at all stays unmatched.

    Args:
        overlaps: `(G, N)` IoU matrix.

    Returns:
        int array `(G,)`: the anchor index of each ground truth, or -1.
    """
    overlaps = np.asarray(overlaps)
    num_gt = overlaps.shape[0]
    result = np.full(num_gt, -1, dtype=np.int64)
    if num_gt == 0 or overlaps.shape[1] == 0:
        return result
    best = overlaps.argmax(axis=1)
    best_iou = overlaps[np.arange(num_gt), best]
    # Fast path: no two ground truths want the same anchor. The greedy global
    # procedure then gives every ground truth its own row maximum.
    if len(set(best.tolist())) == num_gt:
        return np.where(best_iou > _MIN_OVERLAP, best, -1)
    work = overlaps.astype(np.float64, copy=True)
    for _ in range(num_gt):
        flat = int(work.argmax())
        g, p = divmod(flat, work.shape[1])
        if work[g, p] <= _MIN_OVERLAP:
            break
        result[g] = p
        work[g, :] = -1.0
        work[:, p] = -1.0
    return result


def match_anchors(overlaps, iou_threshold=0.5):
    """Assign each anchor to a ground truth or to background.

    First every ground truth takes its anchor through `bipartite_match`
    (even when the IoU is below the threshold); then every other anchor whose
    best IoU with any ground truth is at least `iou_threshold` takes that
    best ground truth (ties to the lower index).

    Args:
        overlaps: `(G, N)` IoU matrix between ground truths and anchors.
        iou_threshold: float, IoU from which an anchor is positive.

    Returns:
        int array `(N,)`: matched ground-truth index per anchor, -1 for
        background.
    """
    overlaps = np.asarray(overlaps)
    num_gt, num_anchors = overlaps.shape
    if num_gt == 0:
        return np.full(num_anchors, -1, dtype=np.int64)
    # argmax over the short axis is slow on a (G, N) array; only the anchors
    # that clear the threshold need to know which ground truth is best.
    matches = np.full(num_anchors, -1, dtype=np.int64)
    positive = np.nonzero(overlaps.max(axis=0) >= iou_threshold)[0]
    if positive.size:
        matches[positive] = overlaps[:, positive].argmax(axis=0)
    forced = bipartite_match(overlaps)
    has = forced >= 0
    matches[forced[has]] = np.nonzero(has)[0]
    return matches
