"""Detect objects in images of any size: `predict_image` and `predict_images`.

Both sit on the model's own `predict` (`SSD.predict_step` decoding with its
`prediction_decoder`), run through the machine's speed-ups
(`keras_ssd.accel.prepare_for_inference`), and map the boxes back to each
image's pixels (`keras_ssd.inference.pixels`). `evaluate` and the
`MeanAveragePrecision` callback use the same three steps: `decoding_options`,
`detect_batch`, `to_pixels`.
"""

import logging
import numbers
import os
import re

import keras
import numpy as np
from PIL import Image

from keras_ssd.accel import prepare_for_inference
from keras_ssd.config import SSDConfig
from keras_ssd.data.errors import DataError, check_on_error
from keras_ssd.inference.pixels import load_for_model, to_pixels
from keras_ssd.models.decoding import DecodingPredictions
from keras_ssd.sources import URL_TIMEOUT, VIDEO_EXTENSIONS, is_url, iter_sources

logger = logging.getLogger("keras_ssd.inference")
_CAMERA = re.compile(r"camera\d+")

__all__ = ["check_model", "decoding_options", "detect_batch", "detections_in_pixels",
           "predict_image", "predict_images"]


def check_model(model, caller="predict"):
    """The `SSDConfig` of a keras-ssd model; `ValueError` naming `caller`
    for anything else."""
    config = getattr(model, "config", None)
    if not (isinstance(model, keras.Model) and isinstance(config, SSDConfig)
            and hasattr(model, "prediction_decoder")):
        raise ValueError(
            f"{caller}: {type(model).__name__} {getattr(model, 'name', '')!r} is not a "
            "keras-ssd model (expected an SSD: SSD300, SSDTiny, ..., or one loaded from "
            ".keras)")
    return config


def _check_options(confidence_threshold, iou_threshold, top_k):
    for name, value in (("confidence_threshold", confidence_threshold),
                        ("iou_threshold", iou_threshold)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    if confidence_threshold is not None and float(confidence_threshold) >= 1.0:
        raise ValueError(
            f"confidence_threshold must be below 1 (scores are probabilities), "
            f"got {confidence_threshold!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(
            top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")


def decoding_options(model, confidence_threshold=None, iou_threshold=None, top_k=None):
    """The detection settings to apply, with a model decoder that serves them.

    `None` means the setting of `model.prediction_decoder`. The decoder
    serves when it has the same IoU threshold, a threshold no higher and a
    `top_k` no smaller: its output is then cut to the settings (greedy NMS
    keeps the same boxes above any threshold, in the same order). Otherwise
    `model.prediction_decoder` is replaced by one that serves
    (`DecodeDetections.replace`), which later calls with these settings reuse.

    Returns:
        dict `confidence_threshold`, `iou_threshold`, `top_k`.

    Raises:
        ValueError: a setting out of range.
    """
    _check_options(confidence_threshold, iou_threshold, top_k)
    decoder = model.prediction_decoder
    options = {
        "confidence_threshold": float(decoder.confidence_threshold
                                      if confidence_threshold is None
                                      else confidence_threshold),
        "iou_threshold": float(decoder.iou_threshold if iou_threshold is None
                               else iou_threshold),
        "top_k": int(decoder.top_k if top_k is None else top_k),
    }
    if (options["iou_threshold"] != decoder.iou_threshold
            or options["confidence_threshold"] < decoder.confidence_threshold
            or options["top_k"] > decoder.top_k):
        model.prediction_decoder = decoder.replace(
            iou_threshold=options["iou_threshold"],
            confidence_threshold=min(options["confidence_threshold"],
                                     decoder.confidence_threshold),
            top_k=max(options["top_k"], decoder.top_k))
    return options


def detect_batch(model, batch):
    """`model.predict_on_batch(batch)` through the machine's speed-ups
    (`keras_ssd.accel.prepare_for_inference`): the decoded detections of a
    float32 batch `(B, H, W, 3)` of RGB 0..255 images at the input size, as
    numpy arrays. (A model that decodes otherwise, e.g. a stand-in in a
    test, is asked for its own `predict_on_batch`.)"""
    decodes = isinstance(model, DecodingPredictions)
    runner = prepare_for_inference(model) if decodes else model
    out = runner.predict_on_batch(np.asarray(batch, dtype="float32"))
    return {key: np.asarray(value) for key, value in out.items()}


def detections_in_pixels(model, out, index, width, height, options, names=None):
    """Image `index` of `detect_batch`'s output in its own pixels, cut to
    `options` (`decoding_options`), named by `names` (default: the model's
    classes, with their COCO ids where it has them; see `to_pixels`)."""
    config = model.config
    return to_pixels(out, index, width, height,
                     config.detection_names if names is None else names,
                     score_threshold=options["confidence_threshold"],
                     top_k=options["top_k"], input_size=config.image_shape,
                     letterbox=config.letterbox, category_ids=names is None)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _as_sources(images):
    """`images` as an iterable of sources for `iter_sources` (a `(B, H, W, 3)`
    array: its B images; one path, URL, folder or pattern: itself)."""
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        raise ValueError("predict_images expects a list of images (or a (B, H, W, 3) "
                         "array); use predict_image for one image")
    if isinstance(images, Image.Image):
        raise ValueError("predict_images expects a list of images; use predict_image for "
                         "one image")
    if isinstance(images, (str, os.PathLike)):
        return [images]  # a folder, a pattern, a URL, a video or one file
    if isinstance(images, bytes) or not hasattr(images, "__iter__"):
        raise ValueError(f"predict_images expects images (paths, folders, patterns, URLs, "
                         f"arrays, PIL images or a list of them), got "
                         f"{type(images).__name__}")
    return images


def _loaded(item, config):
    """`load_for_model` of a `SourceItem`: the file (DCT-scaled decoding) or
    the decoded image; `DataError` naming the input."""
    if item.path is not None:
        return load_for_model(item.path, config.image_shape, config.letterbox)
    try:
        return load_for_model(item.image, config.image_shape, config.letterbox)
    except DataError:
        raise
    except ValueError as e:
        raise DataError(item.name, str(e)) from None


def predict_images(model, images, confidence_threshold=0.5, iou_threshold=0.45, top_k=200,
                   batch_size=8, on_error="raise", timeout=URL_TIMEOUT):
    """Detect objects in many images: files, folders, patterns, URLs, videos,
    arrays, PIL images, or a list mixing them.

    Inputs are read as `keras_ssd.sources.iter_sources` reads them (the
    streaming API, `predict_stream`, takes the same): folders are searched
    recursively for images and videos, glob patterns (`"photos/**/*.jpg"`)
    are expanded, `http(s)` URLs are downloaded with a timeout and a size
    limit (`keras_ssd.sources.MAX_URL_BYTES`; only decoded as an image,
    nothing is executed), and videos give one result per frame (PyAV, the
    `video` extra). At most `batch_size` images are held at a time; the
    results of all of them are returned together (use `predict_stream`
    for an endless input such as a camera).

    Args:
        model: a keras-ssd model (`SSD300`, `SSDTiny`, ... or one loaded
            from `.keras`).
        images: an image path, folder, glob pattern, URL or video file; a
            `(B, H, W, 3)` array (B images); or a list (any iterable) of
            paths, folders, patterns, URLs, videos, PIL images and
            `(H, W, 3)` arrays of any size.
        confidence_threshold: keep detections scoring strictly above this.
        iou_threshold: per-class NMS IoU threshold.
        top_k: at most this many detections per image.
        batch_size: images per forward pass.
        on_error: `"raise"` (default): an input that cannot be read (a
            missing or corrupt file, a URL that answers 404, times out, is
            too large or is not an image, an empty folder, a pattern that
            matches nothing) raises one `ValueError` naming it; `"skip"`:
            it is logged (logger `keras_ssd.inference`) and left out.
        timeout: seconds a URL may take to answer.

    Returns:
        A list with one dict per image (video frame), in input order
        (folders and patterns sorted by name), as `predict_image` returns,
        each with `"source"`: the path or URL of the image it is for,
        `"clip.mp4#12"` for frame 12 of a video, `"array0"`, `"pil0"` for
        in-memory images.

    Raises:
        ValueError: (`keras_ssd.data.DataError` for files) with
            `on_error="raise"`, an input that cannot be read, named; an
            array of the wrong shape; bad options.

    Example:

    >>> results = predict_images(model, ["photos/", "https://example.com/a.jpg"],
    ...                          on_error="skip")
    >>> for det in results:
    ...     print(det["source"], len(det["scores"]))
    """
    _check_batch_size(batch_size)
    check_on_error(on_error)
    sources = _as_sources(images)
    config = check_model(model)
    options = decoding_options(model, confidence_threshold, iou_threshold, top_k)
    results, pending, skipped = [], [], []

    def fail(error):
        if on_error == "raise":
            raise error
        skipped.append(str(error))
        logger.warning("predict_images: skipped %s", error)

    def flush():
        if not pending:
            return
        batch = np.empty((len(pending), *config.image_shape, 3), dtype=np.float32)
        for i, (_, rendered, _) in enumerate(pending):
            batch[i] = rendered
        out = detect_batch(model, batch)
        for i, (name, _, (width, height)) in enumerate(pending):
            detections = detections_in_pixels(model, out, i, width, height, options)
            detections["source"] = name
            results.append(detections)
        pending.clear()

    for item in iter_sources(sources, timeout=timeout, decode_files=False):
        if item.kind == "video" and _CAMERA.fullmatch(item.source) \
                and not os.path.exists(item.source):
            raise ValueError(f"{item.source}: a camera never ends; predict_stream reads "
                             "one frame batch at a time")
        if not item.ok:
            fail(DataError(item.name, item.error))
            continue
        try:
            rendered, size = _loaded(item, config)
        except DataError as e:
            fail(e)
            continue
        pending.append((item.name, rendered, size))
        if len(pending) >= batch_size:
            flush()
    flush()
    if skipped:
        logger.warning("predict_images: skipped %d unreadable input(s) of %d",
                       len(skipped), len(skipped) + len(results))
    return results


def predict_image(model, image, confidence_threshold=0.5, iou_threshold=0.45, top_k=200):
    """Detect objects in one image of any size.

    The image is rendered at the model's input size as in training
    (stretched, or letterboxed for a `config.letterbox` model), run through
    `model.predict` (the network and its `prediction_decoder`: softmax,
    per-class NMS, top-k), and the boxes are mapped back to the original
    image's pixels. A decoder that cannot serve the settings (another IoU
    threshold, a lower confidence threshold, a larger `top_k`) is replaced
    on the model by one that can (`decoding_options`).

    Args:
        model: a keras-ssd model (`SSD300`, `SSDTiny`, ... or one loaded
            from `.keras`).
        image: an image path, an `http(s)` URL of an image (downloaded as
            `predict_images` does), a `PIL.Image.Image` or an `(H, W, 3)`
            array (RGB uint8, or floats in [0, 255]; grayscale and RGBA are
            converted). Folders, patterns and videos hold many images:
            `predict_images` takes them.
        confidence_threshold: keep detections scoring strictly above this.
        iou_threshold: per-class NMS IoU threshold.
        top_k: at most this many detections.

    Returns:
        dict with `"boxes"` float32 `(K, 4)` `(xmin, ymin, xmax, ymax)` in the
        original image's pixels (clipped to it), `"scores"` float32 `(K,)`,
        `"labels"` int64 `(K,)` 0-based and `"names"` (list of `K` class
        names), plus `"category_ids"` for a model with COCO ids, sorted by
        descending score: the per-image keys of docs/outputs.md; and
        `"source"`, the path or URL (`"array0"`, `"pil0"` in memory).

    Raises:
        ValueError: the file or URL is missing or not an image (the message
            names it), the array has the wrong shape, or the options are
            invalid.

    Example:

    >>> detections = predict_image(model, "street.jpg", confidence_threshold=0.5)
    >>> for name, score, box in zip(detections["names"], detections["scores"],
    ...                             detections["boxes"]):
    ...     print(f"{name} {score:.2f} {box.round(1)}")
    """
    if isinstance(image, (list, tuple)):
        raise ValueError("predict_image takes one image; use predict_images for a list")
    if isinstance(image, (str, os.PathLike)) and not is_url(os.fspath(image)):
        path = os.fspath(image)
        many = ("a folder" if os.path.isdir(path) else
                "a video" if path.lower().endswith(VIDEO_EXTENSIONS) else
                "a pattern" if not os.path.exists(path) and any(c in path for c in "*?[")
                else None)
        if many:
            raise ValueError(f"{path}: {many} holds many images; predict_image takes one "
                             "(use predict_images)")
    return predict_images(model, [image], confidence_threshold, iou_threshold, top_k,
                          batch_size=1)[0]
