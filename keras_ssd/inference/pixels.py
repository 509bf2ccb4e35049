"""Images in, detections out, in each image's own pixels.

`load_for_model` renders an image at the network's input size exactly as the
evaluation input of training does; `to_pixels` maps one image's row of a
model's decoded output (`SSD.predict`) back to that image's pixels. The key
names are those of docs/outputs.md: `OUTPUT_KEYS` for the batched, padded
decoder output, `DETECTION_KEYS` for one image's detections.
"""

import os

import numpy as np

from keras_ssd.data.augment import apply_plan, resize_plan, source_boxes
from keras_ssd.data.images import (MEAN_RGB, check_image_file, decode_image, image_size,
                                   load_image)
from keras_ssd.layers.decode_detections import OUTPUT_KEYS

__all__ = ["DETECTION_KEYS", "OUTPUT_KEYS", "load_batch", "load_for_model", "to_pixels"]

#: One image's detections in its own pixels.
DETECTION_KEYS = ("boxes", "scores", "labels", "names")

_NO_BOXES = np.zeros((0, 4))


# ------------------------------------------------------------ images
def load_for_model(image, size, letterbox=False):
    """Render one image at the network's input size, as training does.

    Exactly `SSDSequence(augment=False)`'s rendering: the whole image is
    stretched to `size` (aspect ratio not kept), or with `letterbox=True`
    scaled to fit and padded with the mean pixel, by
    `keras_ssd.data.apply_plan` of a `resize_plan`, and files are decoded as
    the dataset readers decode them (EXIF orientation, colour modes, JPEG
    DCT-scaled decoding of images at least twice the input size).

    Args:
        image: a file path, a `PIL.Image.Image` or an `(H, W[, C])` array
            (see `keras_ssd.data.load_image`).
        size: int or `(height, width)` of the network input.
        letterbox: the model's `SSDConfig.letterbox`.

    Returns:
        `(array, (width, height))`: uint8 `(H, W, 3)` at the input size and
        the original image's size.

    Raises:
        ValueError: (`keras_ssd.data.DataError` for files) the file is
            missing or unreadable (named), or the array is unusable.
    """
    if isinstance(image, (str, os.PathLike)):
        path = check_image_file(image)
        width, height = image_size(path)
        plan = resize_plan(width, height, _NO_BOXES, size, letterbox)
        source, k = decode_image(path, reduce_factor=plan.reduce_factor)
    else:
        source, k = load_image(image), 1
        height, width = source.shape[:2]
        plan = resize_plan(width, height, _NO_BOXES, size, letterbox)
    return apply_plan(source, plan, k, MEAN_RGB), (int(width), int(height))


# ------------------------------------------------------------ pixels
def load_batch(images, size, letterbox=False):
    """`load_for_model` over a list: `(batch, sizes)`, float32 `(B, H, W, 3)`
    RGB 0..255 at `size = (height, width)` and the originals' `(width, height)`."""
    height, width = size
    batch = np.empty((len(images), height, width, 3), dtype=np.float32)
    sizes = []
    for i, image in enumerate(images):
        batch[i], original = load_for_model(image, (height, width), letterbox)
        sizes.append(original)
    return batch, sizes


def to_pixels(out, index, width, height, names=None, score_threshold=None, top_k=None,
              input_size=None, letterbox=False, category_ids=True):
    """Image `index` of a batched decoder output, in that image's pixels.

    Args:
        out: dict with `boxes` `(B, K, 4)` normalised xyxy, `scores` and
            `labels` `(B, K)` (padding rows labelled -1), optionally
            `num_detections` `(B,)`.
        index: the image's row.
        width, height: the original image's size.
        names: optional class names; adds `"names"`.
        score_threshold: optional: keep only scores strictly above it.
        top_k: optional: keep at most this many (the best: rows are sorted).
        input_size: `(height, width)` of the network input; needed with
            `letterbox`.
        letterbox: whether the image was letterboxed into the input
            (`SSDConfig.letterbox`): the padding is taken off and the scale
            undone (`keras_ssd.data.source_boxes`); otherwise boxes are
            scaled by the image's width and height.
        category_ids: bool: keep the rows' `"category_ids"` when `out` has
            them (a model whose classes have COCO ids; -1 for a placeholder).

    Returns:
        dict with `"boxes"` float32 `(K, 4)` pixel xyxy clipped to
        the image, `"scores"` float32 `(K,)`, `"labels"` int64 `(K,)`,
        with `names`, `"names"` (list of K str) and, with `category_ids`,
        `"category_ids"` int64 `(K,)`.
    """
    labels = np.asarray(out["labels"][index]).astype(np.int64)
    scores = np.asarray(out["scores"][index]).astype(np.float32)
    keep = labels >= 0
    count = out.get("num_detections")
    if count is not None:
        keep &= np.arange(len(labels)) < int(np.asarray(count)[index])
    if score_threshold is not None:
        keep &= scores > score_threshold
    rows = np.flatnonzero(keep)
    if top_k is not None:
        rows = rows[:int(top_k)]
    if letterbox:
        if input_size is None:
            raise ValueError("to_pixels: letterbox=True needs the network's input_size")
        boxes = source_boxes(np.asarray(out["boxes"][index])[rows], width, height,
                             input_size, letterbox=True)
    else:
        scale = np.array([width, height, width, height], dtype=np.float32)
        boxes = np.asarray(out["boxes"][index])[rows].astype(np.float32).reshape(-1, 4)
        boxes *= scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height)
    result = {"boxes": boxes, "scores": scores[rows], "labels": labels[rows]}
    if names is not None:
        result["names"] = [str(names[j]) for j in result["labels"]]
    if category_ids and "category_ids" in out:
        ids = np.asarray(out["category_ids"][index])[rows]
        result["category_ids"] = ids.astype(np.int64)
    return result
