"""Detect objects in images of any size: `predict_image` and `predict_images`."""

import weakref

import numpy as np
from PIL import Image

from keras_ssd.imaging import load_image
from keras_ssd.inference.model import iter_layers

__all__ = ["predict_image", "predict_images", "preprocess_images", "get_detector"]

# model -> {(confidence, iou, top_k): detector}. Weak keys: a detector (and
# the graph it traced) lives exactly as long as the model it wraps.
_DETECTORS = weakref.WeakKeyDictionary()


def _decode_layer(model):
    from keras_ssd.layers.decode_detections import DecodeDetections

    for layer in iter_layers(model):
        if isinstance(layer, DecodeDetections):
            return layer
    return None


def _inner_training_model(model):
    """The SSD inside an inference model (a sub-model carrying an SSDConfig)."""
    from keras_ssd.config import SSDConfig

    for layer in iter_layers(model):
        if layer is not model and isinstance(getattr(layer, "config", None), SSDConfig):
            if hasattr(layer, "layers"):
                return layer
    return None


class _Detector:
    """A model that outputs final detections plus its input geometry."""

    def __init__(self, model, confidence_threshold, iou_threshold, top_k):
        from keras_ssd.inference.model import get_config_from_model, inference_model
        from keras_ssd.accel.runtime import apply_runtime_defaults

        self.config = get_config_from_model(model)
        decoder = _decode_layer(model)
        if decoder is None:
            network = inference_model(
                model,
                confidence_threshold=confidence_threshold,
                iou_threshold=iou_threshold,
                top_k=top_k,
            )
        elif (
            decoder.iou_threshold == iou_threshold
            and decoder.top_k >= top_k
            and decoder.confidence_threshold <= confidence_threshold
        ):
            # An inference model already decoding with these settings (a
            # higher confidence threshold is applied to its output below).
            network = model
        else:
            inner = _inner_training_model(model)
            if inner is None:
                raise ValueError(
                    "predict_image: this inference model decodes with "
                    f"iou_threshold={decoder.iou_threshold}, top_k={decoder.top_k}, "
                    f"confidence_threshold={decoder.confidence_threshold} and the SSD "
                    "inside it cannot be found to decode differently; pass the "
                    "training model instead"
                )
            network = inference_model(
                inner,
                confidence_threshold=confidence_threshold,
                iou_threshold=iou_threshold,
                top_k=top_k,
            )
        self.network = apply_runtime_defaults(network)
        shape = tuple(self.network.inputs[0].shape[1:3])
        size = self.config.image_size
        self.input_hw = (
            int(shape[0]) if shape[0] is not None else size,
            int(shape[1]) if shape[1] is not None else size,
        )

    def __call__(self, batch):
        out = self.network.predict_on_batch(batch)
        return {k: np.asarray(v) for k, v in out.items()}


def get_detector(model, confidence_threshold=0.5, iou_threshold=0.45, top_k=200):
    """The cached detector (decoder + NMS) of `model` for these settings.

    Built on first use and reused by every later call with the same model and
    settings, so prediction never rebuilds or retraces the decoder per image.
    """
    key = (float(confidence_threshold), float(iou_threshold), int(top_k))
    try:
        per_model = _DETECTORS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no caching
        return _Detector(model, *key)
    if key not in per_model:
        per_model[key] = _Detector(model, *key)
    return per_model[key]


def _check_options(confidence_threshold, iou_threshold, top_k):
    for name, value in (("confidence_threshold", confidence_threshold),
                        ("iou_threshold", iou_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    if float(confidence_threshold) >= 1.0:
        raise ValueError(
            f"confidence_threshold must be below 1 (scores are probabilities), "
            f"got {confidence_threshold!r}"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")


def preprocess_images(images, size):
    """Load and resize images for the network (aspect ratio not kept, as in training).

    Args:
        images: list of paths, PIL images or arrays.
        size: `(height, width)` of the network input.

    Returns:
        `(batch, original_sizes)`: float32 `(B, H, W, 3)` RGB 0..255 and a
        list of `(width, height)` of the originals.
    """
    h, w = size
    batch = np.empty((len(images), h, w, 3), dtype=np.float32)
    sizes = []
    for i, image in enumerate(images):
        array = load_image(image)
        sizes.append((array.shape[1], array.shape[0]))
        if array.shape[:2] != (h, w):
            array = np.asarray(Image.fromarray(array).resize((w, h), Image.BILINEAR))
        batch[i] = array
    return batch, sizes


def _to_pixels(out, i, width, height, confidence_threshold, names):
    n = int(out["num_detections"][i])
    scores = out["confidence"][i, :n].astype(np.float32)
    keep = scores > confidence_threshold
    boxes = out["boxes"][i, :n][keep].astype(np.float32)
    scale = np.array([width, height, width, height], dtype=np.float32)
    boxes = boxes * scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height)
    labels = out["labels"][i, :n][keep].astype(np.int64)
    return {
        "boxes": boxes.reshape(-1, 4),
        "scores": scores[keep],
        "labels": labels,
        "names": [names[j] for j in labels],
    }


def predict_images(model, images, confidence_threshold=0.5, iou_threshold=0.45, top_k=200,
                   batch_size=8):
    """Detect objects in a list of images.

    Args:
        model: a keras-ssd training model (`SSD300`, `SSDTiny`, ... or one
            loaded from `.keras`) or an inference model from
            `keras_ssd.inference.inference_model`.
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
    _check_options(confidence_threshold, iou_threshold, top_k)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
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
    images = list(images)
    detector = get_detector(model, confidence_threshold, iou_threshold, top_k)
    names = detector.config.names
    results = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch, sizes = preprocess_images(chunk, detector.input_hw)
        out = detector(batch)
        for i, (width, height) in enumerate(sizes):
            results.append(_to_pixels(out, i, width, height, confidence_threshold, names))
    return results


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
        names), sorted by descending score.

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
