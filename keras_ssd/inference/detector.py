"""The one path from images to detections in pixels: `Detector`.

A `Detector` wraps a keras-ssd training model (building its decoder) or an
inference model (using its decoder, or decoding its predictions again with
other settings), applies the machine's speed-ups once
(`keras_ssd.accel.prepare_for_inference`), renders images at the input size
exactly as training's `SSDSequence(augment=False)` does, runs batches, and
maps the boxes back to each original image's pixels. `predict_image(s)`,
`evaluate`, the `MeanAveragePrecision` callback, `draw_detections`' inputs and
`export` all go through it.

The key names it speaks are written down once, in docs/outputs.md:

- batched, padded decoder output (normalised boxes): `OUTPUT_KEYS`,
  `boxes`, `scores`, `labels`, `num_detections`;
- one image's detections in its pixels: `DETECTION_KEYS`, `boxes`,
  `scores`, `labels`, `names`.

keras-ssd 0.1 called `scores` "confidence" (decoder) and `num_detections`
"count" (exported artifacts); the dicts returned here (`Detections`) still
answer those keys for one release, with a `DeprecationWarning`.
"""

import numbers
import os
import warnings

import keras
import numpy as np

from keras_ssd.accel import prepare_for_inference
from keras_ssd.data.augment import apply_plan, resize_plan, source_boxes
from keras_ssd.data.images import (
    MEAN_RGB,
    check_image_file,
    decode_image,
    image_size,
    load_image,
)
from keras_ssd.inference.model import get_config_from_model, inference_model, iter_layers
from keras_ssd.layers.decode_detections import DecodeDetections

__all__ = [
    "DECODE_DEFAULTS",
    "DETECTION_KEYS",
    "Detections",
    "Detector",
    "OUTPUT_KEYS",
    "RENAMED_KEYS",
    "find_decoder",
    "get_detector",
    "load_for_model",
    "split_detector",
    "to_pixels",
]

#: Batched decoder output: `(B, top_k, 4)` normalised xyxy boxes, `(B,
#: top_k)` scores and 0-based labels (-1 on padding), `(B,)` counts.
OUTPUT_KEYS = ("boxes", "scores", "labels", "num_detections")
#: One image's detections in its own pixels.
DETECTION_KEYS = ("boxes", "scores", "labels", "names")
#: keras-ssd 0.1 key -> its name now; the old keys go in 0.3.
RENAMED_KEYS = {"confidence": "scores", "count": "num_detections"}
#: Decoder settings used when a training model gets its decoder here.
DECODE_DEFAULTS = {"confidence_threshold": 0.01, "iou_threshold": 0.45, "top_k": 200}
#: Every `DecodeDetections` setting an inference model's decoder carries.
DECODE_OPTIONS = (
    "confidence_threshold",
    "iou_threshold",
    "max_candidates_per_class",
    "top_k",
    "clip_boxes",
)

_NO_BOXES = np.zeros((0, 4))


def _warn_renamed(old, new, stacklevel):
    warnings.warn(
        f"detections[{old!r}] is deprecated and goes in keras-ssd 0.3; "
        f"use detections[{new!r}] (see docs/outputs.md)",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )


class Detections(dict):
    """A dict of detections that still answers keras-ssd 0.1's key names.

    Holds `OUTPUT_KEYS` (a batch) or `DETECTION_KEYS` (one image). Reading
    `"confidence"` returns `"scores"` and `"count"` returns
    `"num_detections"`, with a `DeprecationWarning`; those keys are not
    stored (`"confidence" in d` is False) and go in keras-ssd 0.3.
    """

    def __missing__(self, key):
        new = RENAMED_KEYS.get(key) if isinstance(key, str) else None
        if new is not None and dict.__contains__(self, new):
            _warn_renamed(key, new, stacklevel=2)
            return dict.__getitem__(self, new)
        raise KeyError(key)

    def get(self, key, default=None):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        new = RENAMED_KEYS.get(key) if isinstance(key, str) else None
        if new is not None and dict.__contains__(self, new):
            _warn_renamed(key, new, stacklevel=2)
            return dict.__getitem__(self, new)
        return default


def as_detections(out, warn=True):
    """`out` (a dict of arrays or tensors) as `Detections` of numpy arrays,
    with keras-ssd 0.1 keys renamed (`DeprecationWarning` when `warn`)."""
    result = Detections()
    for key, value in out.items():
        new = RENAMED_KEYS.get(key, key)
        if new != key:
            if new in out:
                continue
            if warn:
                warnings.warn(
                    f"detections with the key {key!r} are deprecated and go in keras-ssd "
                    f"0.3; name it {new!r} (see docs/outputs.md)",
                    DeprecationWarning,
                    stacklevel=2,
                )
        result[new] = value if isinstance(value, list) else np.asarray(value)
    return result


# ------------------------------------------------------- finding the decoder
def find_decoder(model):
    """The `DecodeDetections` layer of an inference model, `None` for a
    training model; `ValueError` when there are several."""
    decoders = [layer for layer in iter_layers(model) if isinstance(layer, DecodeDetections)]
    if len(decoders) > 1:
        raise ValueError(
            f"model {getattr(model, 'name', '')!r} holds {len(decoders)} DecodeDetections "
            "layers; expected one (an inference model) or none (a training model)"
        )
    return decoders[0] if decoders else None


def split_detector(model):
    """Split a training SSD or an inference model into network and decoder.

    Args:
        model: a keras-ssd training model (a `keras.Model` with an `SSDConfig`
            `config`, output `(B, N, 4 + num_classes + 1)`), or an inference
            model holding one `DecodeDetections` layer (e.g. from
            `keras_ssd.inference_model`, also after `.keras` loading).

    Returns:
        `(predictor, config, decode_options)`: `predictor` maps images to the
        decoder's inputs (the raw predictions, plus the priors for an
        inference model), `config` is the `SSDConfig`, `decode_options` the
        inference model's decoder settings (`DECODE_OPTIONS`; empty for a
        training model).

    Raises:
        ValueError: when the model is neither.
    """
    from keras_ssd.config import SSDConfig

    if not isinstance(model, keras.Model):
        raise ValueError(f"expected a keras-ssd keras.Model, got {type(model).__name__}")
    decoder = find_decoder(model)
    if decoder is None:
        config = getattr(model, "config", None)
        if not isinstance(config, SSDConfig):
            raise ValueError(
                f"model {model.name!r} is not a keras-ssd model: it has no "
                "SSDConfig `config` attribute and no DecodeDetections layer"
            )
        return model, config, {}
    try:
        decoder_inputs = decoder.input
    except (AttributeError, ValueError) as e:
        raise ValueError(
            f"cannot trace the inputs of the DecodeDetections layer in "
            f"{model.name!r} ({e}); use the training model instead"
        ) from None
    if not isinstance(decoder_inputs, (list, tuple)):
        decoder_inputs = [decoder_inputs]
    if len(model.inputs) != 1:
        raise ValueError(
            f"the model must take one image input, {model.name!r} takes "
            f"{len(model.inputs)}"
        )
    predictor = keras.Model(model.inputs[0], list(decoder_inputs),
                            name=f"{model.name}_predictor")
    options = {name: getattr(decoder, name) for name in DECODE_OPTIONS}
    return predictor, decoder.config, options


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
            f"got {confidence_threshold!r}"
        )
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(
            top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")


def _resolve_options(decoder, confidence_threshold, iou_threshold, top_k, model=None):
    """The decoder settings a detector will apply: those given, else the
    inference model's own (`decoder`), else the training model's
    `postprocessing` (a converted checkpoint's source settings), else
    `DECODE_DEFAULTS`."""
    _check_options(confidence_threshold, iou_threshold, top_k)
    given = {"confidence_threshold": confidence_threshold,
             "iou_threshold": iou_threshold, "top_k": top_k}
    if decoder is None:
        source = getattr(model, "postprocessing", None) or {}
        own = {name: source.get(name, value) for name, value in DECODE_DEFAULTS.items()}
    else:
        own = {name: getattr(decoder, name) for name in DECODE_DEFAULTS}
    options = {name: own[name] if value is None else value for name, value in given.items()}
    return (float(options["confidence_threshold"]), float(options["iou_threshold"]),
            int(options["top_k"]))


# ------------------------------------------------------------ images
def load_for_model(image, size, letterbox=False):
    """Render one image at the network's input size, as training does.

    Exactly `SSDSequence(augment=False)`'s rendering: the whole image is
    stretched to `size` (aspect ratio not kept), or with `letterbox=True`
    scaled to fit and padded with the mean pixel, by
    `keras_ssd.data.apply_plan` of a `resize_plan`, and files are decoded as the dataset readers decode
    them (EXIF orientation, colour modes, JPEG DCT-scaled decoding of images
    at least twice the input size).

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
              input_size=None, letterbox=False, category_ids=None):
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
        category_ids: optional COCO category id per label (`None` for a
            placeholder output, `SSDConfig.detection_category_ids`); adds
            `"category_ids"` (-1 for a placeholder).

    Returns:
        `Detections` with `"boxes"` float32 `(K, 4)` pixel xyxy clipped to
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
        boxes = np.asarray(out["boxes"][index])[rows].astype(np.float32).reshape(-1, 4) * scale
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0.0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0.0, height)
    result = Detections(boxes=boxes, scores=scores[rows], labels=labels[rows])
    if names is not None:
        result["names"] = [str(names[j]) for j in result["labels"]]
    if category_ids is not None:
        ids = np.array([-1 if c is None else int(c) for c in category_ids], dtype=np.int64)
        result["category_ids"] = ids[result["labels"]]
    return result


# ------------------------------------------------------------ the detector
class Detector:
    """Detection on images, from whatever keras-ssd model was given.

    Args:
        model: a keras-ssd training model (`SSD300`, `SSDTiny`, ..., or one
            loaded from `.keras`; its decoder is built here and shares its
            weights, so the detector stays valid while training goes on) or
            an inference model (`keras_ssd.inference_model`, also loaded from
            `.keras`, from keras-ssd 0.1 too).
        confidence_threshold, iou_threshold, top_k: decoder settings. `None`
            (default) keeps an inference model's own setting, and for a
            training model means its `postprocessing` (a converted
            checkpoint's source settings), else `DECODE_DEFAULTS` (0.01,
            0.45, 200). An
            inference model whose decoder is looser (lower threshold, larger
            `top_k`, same IoU) is used as it is and its output filtered;
            otherwise its predictions are decoded again.

    Attributes:
        model: the model given.
        config: its `SSDConfig`.
        inference_model: the model mapping images to the decoder output
            (`model` itself when its decoder serves).
        network: `inference_model` with the machine's speed-ups applied
            (`keras_ssd.accel.prepare_for_inference`), what runs.
        decode_options: dict of the settings applied (the three above).
        input_hw: `(height, width)` of the network input.
        image_size: the config's `image_size` (an int, or `(height,
            width)` for a non-square input).
        letterbox: the config's `letterbox`: images are letterboxed into
            the input and boxes mapped back accordingly.

    Example:

    >>> detector = Detector(model, confidence_threshold=0.5)
    >>> [dets] = detector.detect(["street.jpg"])
    >>> dets["boxes"], dets["names"]
    """

    #: Output filter of a subclass that does not call `__init__`: none.
    decode_options = {}
    #: ... and its rendering: stretched, at its `image_size`.
    letterbox = False
    input_hw = None

    def __init__(self, model, confidence_threshold=None, iou_threshold=None, top_k=None):
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"expected a keras.Model (keras-ssd training or inference model), got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.config = get_config_from_model(model)
        decoder = find_decoder(model)
        confidence, iou, k = _resolve_options(decoder, confidence_threshold,
                                              iou_threshold, top_k, model)
        self.decode_options = {"confidence_threshold": confidence,
                               "iou_threshold": iou, "top_k": k}
        if decoder is None:
            network = inference_model(model, **self.decode_options)
        elif (decoder.iou_threshold == iou and decoder.top_k >= k
              and decoder.confidence_threshold <= confidence):
            # Its decoder serves: a higher threshold or a smaller top_k is
            # applied to its output (greedy NMS keeps the same boxes above
            # any threshold, in the same order).
            network = model
        else:
            predictor, config, options = split_detector(model)
            options.update(self.decode_options)
            decode = DecodeDetections(config, name="detections", **options)
            network = keras.Model(predictor.inputs, decode(*predictor.outputs),
                                  name=f"{model.name}_redecoded")
        self.inference_model = network
        self.network = prepare_for_inference(network)
        inputs = getattr(network, "inputs", None)
        shape = tuple(inputs[0].shape[1:3]) if inputs else (None, None)
        self.image_size = self.config.image_size
        self.letterbox = bool(getattr(self.config, "letterbox", False))
        self.input_hw = tuple(int(d) if d is not None else size
                              for d, size in zip(shape, self.config.image_shape))

    # ------------------------------------------------------------- steps
    def preprocess(self, images):
        """Render images for the network (see `load_for_model`).

        Returns:
            `(batch, sizes)`: float32 `(B, H, W, 3)` RGB 0..255 and the
            originals' `(width, height)`.
        """
        return load_batch(images, self.input_hw, self.letterbox)

    def predict_batch(self, images):
        """Detect on a batch `(B, H, W, 3)` of RGB 0..255 images at the input size.

        Returns:
            `Detections` of numpy arrays, `OUTPUT_KEYS`: `boxes` `(B, K, 4)`
            normalised xyxy, `scores` `(B, K)`, `labels` `(B, K)` (-1 =
            padding), `num_detections` `(B,)`; `K` is the decoder's `top_k`.
        """
        out = self.network.predict_on_batch(np.asarray(images, dtype="float32"))
        # A decoder from a keras-ssd 0.1 file says "confidence" (it warned at load).
        return as_detections(out, warn=False)

    __call__ = predict_batch

    def to_pixels(self, out, index, width, height, names=None):
        """Image `index` of `predict_batch`'s output in its own pixels,
        filtered to this detector's threshold and `top_k` (see `to_pixels`)."""
        options = self.decode_options
        # The model's own labels carry its COCO category ids (if it has them).
        category_ids = (getattr(self.config, "detection_category_ids", None)
                        if names is None else None)
        return to_pixels(out, index, width, height,
                         self.config.detection_names if names is None else names,
                         score_threshold=options.get("confidence_threshold"),
                         top_k=options.get("top_k"), input_size=self.input_hw,
                         letterbox=self.letterbox, category_ids=category_ids)

    def detect(self, images, batch_size=8):
        """Detections for a list of images (paths, PIL images, arrays) of any size.

        Returns:
            list with one `Detections` per image, `DETECTION_KEYS`: `boxes`
            float32 `(K, 4)` pixel xyxy clipped to the image, `scores`,
            `labels` int64 0-based, `names` (and `category_ids` for a model
            with COCO ids); sorted by descending score.
        """
        results = []
        for start in range(0, len(images), batch_size):
            batch, sizes = self.preprocess(images[start:start + batch_size])
            out = self.predict_batch(batch)
            results.extend(self.to_pixels(out, i, w, h) for i, (w, h) in enumerate(sizes))
        return results


#: Where a model keeps its detectors: {(confidence, iou, top_k): Detector}.
#: An attribute of the model itself (set past Keras' attribute tracking, so
#: it is never saved), so they live exactly as long as the model.
_CACHE_ATTRIBUTE = "_keras_ssd_detectors"


def get_detector(model, confidence_threshold=0.5, iou_threshold=0.45, top_k=200):
    """The cached `Detector` of `model` for these settings.

    Built on first use and reused by every later call with the same model and
    settings, so prediction and evaluation never rebuild or retrace the
    decoder per call. The defaults are `predict_image`'s; `None` means what
    it means for `Detector` (an inference model's own setting, else
    `DECODE_DEFAULTS`), and settings are compared once resolved. A
    `Detector` is returned as it is.
    """
    if isinstance(model, Detector):
        return model
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"expected a keras.Model (keras-ssd training or inference model), got "
            f"{type(model).__name__}"
        )
    get_config_from_model(model)  # a clear error before anything else
    key = _resolve_options(find_decoder(model), confidence_threshold, iou_threshold, top_k,
                           model)
    cache = model.__dict__.get(_CACHE_ATTRIBUTE)
    if cache is None or any(d.model is not model for d in cache.values()):  # a copy's
        cache = {}
        object.__setattr__(model, _CACHE_ATTRIBUTE, cache)
    if key not in cache:
        cache[key] = Detector(model, *key)
    return cache[key]
