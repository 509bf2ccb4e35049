"""Anchor boxes (the SSD paper's "default boxes", Caffe's "priors"),
computed from an `SSDConfig`.

This is the single place the anchor formula lives: the model's
`AnchorBoxes` layer, `encode_targets` and `DecodeDetections` all take their
anchors from here.
"""

import numpy as np

from keras_ssd.boxes import clip, cxcywh_to_xyxy, xyxy_to_cxcywh
from keras_ssd.config import SSDConfig, normalize_clip


def cell_box_sizes(config, index):
    """Widths and heights, in pixels, of the anchors of one cell of map `index`.

    Caffe order: the min square, the sqrt(min * max) square, then for each
    aspect ratio `r` a box of ratio `r` followed by one of ratio `1 / r`.

    Returns:
        float64 array `(k, 2)` of `(w, h)` pixels.
    """
    config = SSDConfig.from_dict(config)
    lo = config.min_sizes[index]
    hi = config.max_sizes[index]
    sizes = [(lo, lo), (np.sqrt(lo * hi),) * 2]
    for r in config.aspect_ratios[index]:
        s = np.sqrt(r)
        sizes.append((lo * s, lo / s))
        sizes.append((lo / s, lo * s))
    return np.asarray(sizes, dtype=np.float64)


def feature_map_anchors(config, index):
    """Anchors of feature map `index` as normalised `(cx, cy, w, h)`.

    Ordered row, then column, then box within the cell: the order in which a
    head's `(H, W, k * 4)` output is reshaped to `(H * W * k, 4)`.

    Coordinates are normalised per axis (x by the image width, y by its
    height), so on a non-square input a square prior of `s` pixels has
    `w = s / width` and `h = s / height`: square in pixels.

    Returns:
        float32 array `(fh * fw * k, 4)` for a `fh x fw` map.
    """
    config = SSDConfig.from_dict(config)
    height, width = (float(v) for v in config.image_shape)
    fh, fw = config.feature_map_shapes[index]
    step_y, step_x = config.step_shapes[index]
    wh = cell_box_sizes(config, index) / np.array([width, height])  # (k, 2)
    k = wh.shape[0]
    centres_x = (np.arange(fw, dtype=np.float64) + config.offset) * step_x / width
    centres_y = (np.arange(fh, dtype=np.float64) + config.offset) * step_y / height
    cy, cx = np.meshgrid(centres_y, centres_x, indexing="ij")  # (fh, fw)
    out = np.empty((fh, fw, k, 4), dtype=np.float64)
    out[..., 0] = cx[:, :, None]
    out[..., 1] = cy[:, :, None]
    out[..., 2] = wh[None, None, :, 0]
    out[..., 3] = wh[None, None, :, 1]
    out = out.reshape(-1, 4)
    return clip_priors(out, config.clip).astype(np.float32)


def clip_priors(priors, mode):
    """Priors `(..., 4)` cxcywh clipped to the image as `SSDConfig.clip` says.

    - `"none"`: unchanged (Caffe VOC).
    - `"corners"`: the corners `(xmin, ymin, xmax, ymax)` clipped to [0, 1],
      then back to cxcywh (`clip=True`).
    - `"wh"`: widths and heights clipped to [0, 1], centres unchanged
      (torchvision's `DefaultBoxGenerator(clip=True)`).
    - `"cxcywh"`: each of `cx, cy, w, h` clipped to [0, 1]
      (the `PriorBox` of amdegroot/ssd.pytorch and lufficc/SSD).

    Args:
        priors: array `(..., 4)` of normalised `(cx, cy, w, h)`.
        mode: one of `keras_ssd.config.CLIP_MODES` (a bool is deprecated,
            as for `SSDConfig.clip`).

    Returns:
        An array of the same shape and dtype (a new one unless `"none"`).
    """
    mode = normalize_clip(mode, "clip mode")
    priors = np.asarray(priors)
    if mode == "none":
        return priors
    if mode == "corners":
        return xyxy_to_cxcywh(clip(cxcywh_to_xyxy(priors), 0.0, 1.0))
    out = np.array(priors, copy=True)
    if mode == "wh":
        out[..., 2:] = np.clip(out[..., 2:], 0.0, 1.0)
    else:
        out = np.clip(out, 0.0, 1.0)
    return out


def generate_anchors(config):
    """All anchors (priors) of a configuration, normalised `(cx, cy, w, h)`.

    Args:
        config: an `SSDConfig`, its dict form, or a model with a `config`
            attribute (as built by `keras_ssd.SSD300`).

    Returns:
        float32 numpy array `(config.num_anchors, 4)`, ordered by feature
        map, then row, then column, then box: the order the heads emit.

    Example:

    >>> generate_anchors(SSDConfig.ssd300(20)).shape
    (8732, 4)
    """
    if hasattr(config, "config") and not isinstance(config, (SSDConfig, dict)):
        config = config.config
    config = SSDConfig.from_dict(config)
    return np.concatenate(
        [feature_map_anchors(config, i) for i in range(len(config.feature_map_sizes))],
        axis=0,
    )
