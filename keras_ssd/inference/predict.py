"""Detect objects in images of any size: `predict_image` and `predict_images`.

Both run through `keras_ssd.inference.detector.Detector`, the one path from
images to detections in pixels.
"""

import numbers

import numpy as np
from PIL import Image

from keras_ssd.inference.detector import Detector, get_detector, load_batch

__all__ = ["predict_image", "predict_images", "preprocess_images", "get_detector"]

#: keras-ssd 0.1's private name of the detector class.
_Detector = Detector


def preprocess_images(images, size):
    """Load and resize images for the network, as training does (aspect ratio
    not kept; see `keras_ssd.inference.detector.load_for_model`).

    Args:
        images: list of paths, PIL images or arrays.
        size: `(height, width)` of the network input.

    Returns:
        `(batch, original_sizes)`: float32 `(B, H, W, 3)` RGB 0..255 and a
        list of `(width, height)` of the originals.
    """
    return load_batch(images, size)


def predict_images(model, images, confidence_threshold=0.5, iou_threshold=0.45, top_k=200,
                   batch_size=8):
    """Detect objects in a list of images.

    Args:
        model: a keras-ssd training model (`SSD300`, `SSDTiny`, ... or one
            loaded from `.keras`), an inference model from
            `keras_ssd.inference.inference_model`, or a `Detector` (its model
            is decoded with the settings given here).
        images: list (or tuple) of image paths, PIL images or `(H, W, 3)`
            arrays of any size; a single `(B, H, W, 3)` array is split into
            B images.
        confidence_threshold: keep detections scoring strictly above this.
        iou_threshold: per-class NMS IoU threshold.
        top_k: at most this many detections per image.
        batch_size: images per forward pass.

    Returns:
        A list with one dict per image, as `predict_image` returns.

    Raises:
        ValueError: an unreadable or missing image file (named), an array of
            the wrong shape, or bad options.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    elif isinstance(images, (str, bytes, Image.Image, np.ndarray)) or not hasattr(
        images, "__iter__"
    ):
        raise ValueError(
            "predict_images expects a list of images; use predict_image for one image"
        )
    if isinstance(model, Detector):
        model = model.model
    detector = get_detector(model, confidence_threshold, iou_threshold, top_k)
    return detector.detect(list(images), batch_size=int(batch_size))


def predict_image(model, image, confidence_threshold=0.5, iou_threshold=0.45, top_k=200):
    """Detect objects in one image of any size.

    The image is resized to the model's input (aspect ratio not kept, as in
    training), run through the network and the SSD decoder (softmax,
    per-class NMS, top-k), and the boxes are mapped back to the original
    image's pixels. The decoder is built on the first call for a model and
    reused afterwards.

    Args:
        model: a keras-ssd training model (`SSD300`, `SSDTiny`, ... or one
            loaded from `.keras`) or an inference model from
            `keras_ssd.inference.inference_model`.
        image: an image path, a `PIL.Image.Image` or an `(H, W, 3)` array
            (RGB uint8, or floats in [0, 255]; grayscale and RGBA are
            converted).
        confidence_threshold: keep detections scoring strictly above this.
        iou_threshold: per-class NMS IoU threshold.
        top_k: at most this many detections.

    Returns:
        dict with `"boxes"` float32 `(K, 4)` `(xmin, ymin, xmax, ymax)` in the
        original image's pixels (clipped to it), `"scores"` float32 `(K,)`,
        `"labels"` int64 `(K,)` 0-based and `"names"` (list of `K` class
        names), sorted by descending score: the per-image keys of
        docs/outputs.md.

    Raises:
        ValueError: the file is missing or not an image (the message names
            it), the array has the wrong shape, or the options are invalid.

    Example:

    >>> detections = predict_image(model, "street.jpg", confidence_threshold=0.5)
    >>> for name, score, box in zip(detections["names"], detections["scores"],
    ...                             detections["boxes"]):
    ...     print(f"{name} {score:.2f} {box.round(1)}")
    """
    if isinstance(image, (list, tuple)):
        raise ValueError("predict_image takes one image; use predict_images for a list")
    return predict_images(model, [image], confidence_threshold, iou_threshold, top_k,
                          batch_size=1)[0]
