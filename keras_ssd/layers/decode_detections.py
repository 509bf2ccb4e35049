"""`DecodeDetections`: SSD predictions -> final detections (decode, softmax,
per-class NMS, top-k), batched with fixed output shapes."""

import math
import numbers

import keras
from keras import ops

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import clip_ops, decode_ops
from keras_ssd.config import SSDConfig
from keras_ssd.nms import check_overlap_dtype, multiclass_nms
from keras_ssd.xla import xla_compiled

_TILE_SIZE = 64

#: The output keys, the vocabulary of docs/outputs.md.
OUTPUT_KEYS = ("boxes", "scores", "labels", "num_detections")
#: The decoding options, the one list of them: what `DecodeDetections` takes
#: besides its config and how it runs, what `SSD(postprocessing=...)` may set
#: and what `keras_ssd.export` forwards.
DECODE_OPTIONS = ("confidence_threshold", "iou_threshold", "max_candidates_per_class",
                  "top_k", "clip_boxes", "max_log_scale", "min_log_scale",
                  "max_candidates_per_level", "drop_empty_boxes")


def check_decode_options(options, caller):
    """`options` as a dict of `DECODE_OPTIONS` entries; `ValueError` naming
    `caller` and any key outside the list (the values are checked by
    `DecodeDetections`)."""
    if not isinstance(options, dict):
        raise ValueError(f"{caller}: decode options must be a dict, got {options!r}")
    unknown = sorted(set(options) - set(DECODE_OPTIONS))
    if unknown:
        raise ValueError(
            f"{caller}: unknown decode option(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(DECODE_OPTIONS)}")
    return dict(options)


def _check_number(name, value, low, high, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"DecodeDetections: {name} must be a number, got {value!r}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    if bad_low or value > high:
        lo = "(" if low_open else "["
        raise ValueError(
            f"DecodeDetections: {name} must lie in {lo}{low}, {high}], got {value}"
        )
    return value


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"DecodeDetections: {name} must be a positive int, got {value!r}")
    return int(value)


def _check_log_scale(name, value):
    if value is None:
        return None
    number = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if not number or not math.isfinite(float(value)):
        raise ValueError(
            f"DecodeDetections: {name} must be None or a finite number, got {value!r}")
    return float(value)


def _decode_and_score(predictions, anchors, variances, clip_boxes, max_log_scale=None,
                      min_log_scale=None):
    """`(B, N, 4 + C + 1)` predictions -> xyxy boxes `(B, N, 4)` and class
    probabilities without the background `(B, N, C)`.

    `max_log_scale` and `min_log_scale` (floats or None) bound the decoded
    log-scales `offset_w * variance_w` and `offset_h * variance_h` before
    `exp`: torchvision's `BoxCoder` caps them at `log(1000 / 16)`,
    mmdetection's `DeltaXYWHBBoxCoder` clamps them to +-log(1000 / 16)."""
    offsets = predictions[..., :4]
    scales = offsets[..., 2:]
    if max_log_scale is not None:
        scales = ops.minimum(scales, ops.convert_to_tensor(
            [max_log_scale / variances[2], max_log_scale / variances[3]], "float32"))
    if min_log_scale is not None:
        scales = ops.maximum(scales, ops.convert_to_tensor(
            [min_log_scale / variances[2], min_log_scale / variances[3]], "float32"))
    if max_log_scale is not None or min_log_scale is not None:
        offsets = ops.concatenate([offsets[..., :2], scales], axis=-1)
    boxes = decode_ops(offsets, anchors, variances)
    if clip_boxes:
        boxes = clip_ops(boxes, 0.0, 1.0)
    scores = ops.softmax(predictions[..., 4:], axis=-1)[..., 1:]
    return boxes, scores


def _keep_best_per_level(scores, level_sizes, k):
    """`scores` `(B, N, C)` with every (prior, class) score of a feature map
    that is not among that map's `k` best set to 0 (mmdetection's `nms_pre`:
    per level, the best `k` pairs over all classes enter NMS). A score tied
    with the k-th best is kept too."""
    parts, start = [], 0
    for size in level_sizes:
        part = scores[:, start:start + size, :]
        start += size
        pairs = size * int(scores.shape[-1])
        if pairs > k:
            flat = ops.reshape(part, (-1, pairs))
            kth = ops.min(ops.top_k(flat, k, sorted=False)[0], axis=-1)
            part = ops.where(part >= kth[:, None, None], part, ops.zeros_like(part))
        parts.append(part)
    return ops.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


@keras.saving.register_keras_serializable(package="keras_ssd")
class DecodeDetections(keras.layers.Layer):
    """Turns raw SSD predictions into at most `top_k` detections per image.

    Decodes the box offsets against the anchors (the priors) with the
    config's variances (`keras_ssd.boxes.decode_ops`), applies a softmax
    over the classes, then for every image and every object class
    (background skipped): keeps candidates whose score is
    strictly above `confidence_threshold`, takes the best
    `max_candidates_per_class` of them, runs exact greedy NMS (a box is
    dropped when its IoU with a kept, higher-scored box of the same class is
    strictly above `iou_threshold`), and finally keeps the `top_k` best
    detections over all classes. This is the Caffe SSD `DetectionOutput`
    procedure (0.01 / 0.45 / 400 / 200 by default).

    Shapes are fixed, so the layer batches and serialises like any other.
    The computation is done in float32 whatever the dtype policy (the layer's
    dtype defaults to "float32", which upcasts mixed-precision predictions).

    Args:
        config: `SSDConfig` (or its dict form) of the model.
        confidence_threshold: float in [0, 1), minimum class score
            (exclusive).
        iou_threshold: float in [0, 1], NMS overlap threshold.
        max_candidates_per_class: int, candidates per class entering NMS.
        top_k: int, detections returned per image (the output length).
        clip_boxes: bool, clip decoded boxes to [0, 1] before NMS (Caffe SSD
            does not; default False; torchvision does).
        max_log_scale: None (default) or a float: cap each decoded box's
            log-scale `offset_w * variance_w` (and the same for h) at this
            value before `exp`, so a wild offset cannot make a huge box.
            torchvision's `ssd300_vgg16` caps at `log(1000 / 16)` (4.135).
        min_log_scale: None (default) or a float below `max_log_scale`:
            raise each decoded log-scale to at least this value, so a wild
            offset cannot shrink a box to nothing. mmdetection's
            `DeltaXYWHBBoxCoder` clamps both sides, at -log(1000 / 16) here.
        max_candidates_per_level: None (default) or an int: before the
            per-class selection, keep on each feature map only its best
            this many (prior, class) scores over all classes; the others
            are dropped. mmdetection's dense heads do this (`nms_pre`,
            1000 for its SSDs).
        drop_empty_boxes: bool (default False): drop candidates whose
            decoded (and clipped) box has zero width or height, as
            mmdetection does with `min_bbox_size=0`.
        use_xla: TensorFlow backend only: run the decoding and the NMS as
            XLA clusters (the same `keras.ops` graph, fused; several times
            faster on CPU, same detections). `None` (default) means yes;
            ignored on other backends.
        overlap_dtype: "float64", "float32" or None (default): the dtype NMS
            takes its IoU decisions in. None means float64 (decisions
            immune to fused multiply-adds; float32 on JAX without
            `jax_enable_x64`); "float32" for runtimes without float64 kernels,
            such as LiteRT (`keras_ssd.export` sets it there). float32 can
            only change a decision when an IoU lies within rounding of
            `iou_threshold`.
        **kwargs: standard layer arguments.

    Call arguments:
        predictions: `(B, N, 4 + num_classes + 1)`: box offsets, then class
            logits with index 0 the background.
        anchors: optional `(B, N, 4)` or `(N, 4)` anchors `(cx, cy, w, h)`
            (as emitted by `AnchorBoxes`); by default the config's anchors.

    Returns:
        dict of
        - `"boxes"`: `(B, top_k, 4)` float32 normalised `(xmin, ymin, xmax,
          ymax)`,
        - `"scores"`: `(B, top_k)` float32 class probability,
        - `"labels"`: `(B, top_k)` int32 0-based class (-1 for padding),
        - `"num_detections"`: `(B,)` int32 number of real detections.
        Detections come sorted by descending score; padding rows have zero
        boxes and zero scores (docs/outputs.md).

    Example:

    >>> config = SSDConfig.ssd300(num_classes=20)
    >>> out = DecodeDetections(config)(np.zeros((1, 8732, 25), "float32"))
    >>> out["boxes"].shape, out["labels"].shape
    ((1, 200, 4), (1, 200))
    """

    def __init__(
        self,
        config,
        confidence_threshold=0.01,
        iou_threshold=0.45,
        max_candidates_per_class=400,
        top_k=200,
        clip_boxes=False,
        use_xla=None,
        overlap_dtype=None,
        max_log_scale=None,
        max_candidates_per_level=None,
        drop_empty_boxes=False,
        min_log_scale=None,
        **kwargs,
    ):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        try:
            self.config = SSDConfig.from_dict(config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"DecodeDetections: invalid SSD config: {e}") from e
        self.confidence_threshold = _check_number(
            "confidence_threshold", confidence_threshold, 0.0, 1.0
        )
        if self.confidence_threshold >= 1.0:
            raise ValueError(
                "DecodeDetections: confidence_threshold must be below 1 (scores are "
                f"probabilities), got {self.confidence_threshold}"
            )
        self.iou_threshold = _check_number("iou_threshold", iou_threshold, 0.0, 1.0)
        self.max_candidates_per_class = _check_positive_int(
            "max_candidates_per_class", max_candidates_per_class
        )
        self.top_k = _check_positive_int("top_k", top_k)
        if not isinstance(clip_boxes, bool):
            raise ValueError(f"DecodeDetections: clip_boxes must be a bool, got {clip_boxes!r}")
        self.clip_boxes = clip_boxes
        self.max_log_scale = _check_log_scale("max_log_scale", max_log_scale)
        self.min_log_scale = _check_log_scale("min_log_scale", min_log_scale)
        if (self.min_log_scale is not None and self.max_log_scale is not None
                and self.min_log_scale >= self.max_log_scale):
            raise ValueError(
                f"DecodeDetections: min_log_scale ({self.min_log_scale}) must lie below "
                f"max_log_scale ({self.max_log_scale})")
        self.max_candidates_per_level = (None if max_candidates_per_level is None else
                                         _check_positive_int("max_candidates_per_level",
                                                             max_candidates_per_level))
        if not isinstance(drop_empty_boxes, bool):
            raise ValueError("DecodeDetections: drop_empty_boxes must be a bool, got "
                             f"{drop_empty_boxes!r}")
        self.drop_empty_boxes = drop_empty_boxes
        if use_xla is not None and not isinstance(use_xla, bool):
            raise ValueError(f"DecodeDetections: use_xla must be a bool or None, got {use_xla!r}")
        self.use_xla = use_xla
        self.overlap_dtype = check_overlap_dtype(overlap_dtype,
                                                 "DecodeDetections: overlap_dtype")
        self._anchors = generate_anchors(self.config)

    @property
    def options(self):
        """The decoding options of this layer, a dict over `DECODE_OPTIONS`."""
        return {name: getattr(self, name) for name in DECODE_OPTIONS}

    def replace(self, **options):
        """A new `DecodeDetections` like this one with some options changed.

        Args:
            **options: entries of `DECODE_OPTIONS`.

        Returns:
            `DecodeDetections` with the same config, `use_xla` and
            `overlap_dtype`.
        """
        options = check_decode_options(options, "DecodeDetections.replace")
        return type(self)(self.config, use_xla=self.use_xla,
                          overlap_dtype=self.overlap_dtype, **{**self.options, **options})

    @property
    def num_outputs(self):
        """Length of the prediction vector per anchor: 4 + classes + 1."""
        return 4 + self.config.num_classes + 1

    def _check_shapes(self, predictions_shape, anchors_shape=None):
        shape = tuple(predictions_shape)
        n_cfg = self.config.num_anchors
        if len(shape) != 3:
            raise ValueError(
                "DecodeDetections: predictions must have shape (batch, num_anchors, "
                f"4 + num_classes + 1) = (batch, {n_cfg}, {self.num_outputs}), got {shape}"
            )
        if shape[1] is not None and int(shape[1]) != n_cfg:
            raise ValueError(
                f"DecodeDetections: predictions have {shape[1]} priors but the SSD "
                f"config has {n_cfg}"
            )
        if shape[2] is not None and int(shape[2]) != self.num_outputs:
            raise ValueError(
                f"DecodeDetections: predictions have {shape[2]} values per prior; "
                f"expected 4 offsets + {self.config.num_classes} classes + background "
                f"= {self.num_outputs}"
            )
        if anchors_shape is not None:
            a = tuple(anchors_shape)
            if len(a) not in (2, 3) or a[-1] != 4 or (
                a[-2] is not None and int(a[-2]) != n_cfg
            ):
                raise ValueError(
                    f"DecodeDetections: anchors must have shape (batch, {n_cfg}, 4) or "
                    f"({n_cfg}, 4), got {a}"
                )

    def build(self, predictions_shape, anchors_shape=None):
        self._check_shapes(predictions_shape, anchors_shape)

    def call(self, predictions, anchors=None):
        self._check_shapes(
            predictions.shape, None if anchors is None else anchors.shape
        )
        predictions = ops.cast(predictions, "float32")
        if anchors is None:
            anchors = ops.convert_to_tensor(self._anchors, dtype="float32")[None]
        else:
            anchors = ops.cast(anchors, "float32")
            if len(anchors.shape) == 2:
                anchors = anchors[None]
        decode = _decode_and_score
        if self.use_xla is not False:
            decode = xla_compiled(("decode_and_score",), decode)
        boxes, scores = decode(predictions, anchors, tuple(self.config.variances),
                               self.clip_boxes, self.max_log_scale, self.min_log_scale)
        # Static shapes from the config (see `multiclass_nms`).
        n = self.config.num_anchors
        boxes = ops.reshape(boxes, (-1, n, 4))
        scores = ops.reshape(scores, (-1, n, self.config.num_classes))
        if self.max_candidates_per_level is not None:
            sizes = [h * w * k for (h, w), k in zip(self.config.feature_map_shapes,
                                                    self.config.boxes_per_cell)]
            scores = _keep_best_per_level(scores, sizes, self.max_candidates_per_level)
        if self.drop_empty_boxes:
            empty = ops.logical_or(boxes[..., 2] <= boxes[..., 0],
                                   boxes[..., 3] <= boxes[..., 1])
            scores = ops.where(empty[..., None], ops.zeros_like(scores), scores)
        if self.config.class_subset is not None:
            # A class subset: the softmax ran over all the network's classes
            # (scores unchanged); only these are reported, labelled 0..K-1.
            scores = ops.take(scores, self.config.class_subset, axis=-1)
        detections = multiclass_nms(
            boxes,
            scores,
            score_threshold=self.confidence_threshold,
            iou_threshold=self.iou_threshold,
            max_candidates_per_class=self.max_candidates_per_class,
            top_k=self.top_k,
            tile_size=_TILE_SIZE,
            use_xla=self.use_xla,
            overlap_dtype=self.overlap_dtype,
        )
        return {
            "boxes": detections["boxes"],
            "scores": detections["confidence"],
            "labels": detections["labels"],
            "num_detections": detections["num_detections"],
        }

    def compute_output_shape(self, predictions_shape, anchors_shape=None):
        self._check_shapes(predictions_shape, anchors_shape)
        b = predictions_shape[0]
        return {
            "boxes": (b, self.top_k, 4),
            "scores": (b, self.top_k),
            "labels": (b, self.top_k),
            "num_detections": (b,),
        }

    def compute_output_spec(self, predictions, anchors=None):
        shapes = self.compute_output_shape(
            predictions.shape, None if anchors is None else anchors.shape
        )
        dtypes = {
            "boxes": "float32",
            "scores": "float32",
            "labels": "int32",
            "num_detections": "int32",
        }
        return {k: keras.KerasTensor(shapes[k], dtype=dtypes[k]) for k in shapes}

    def get_config(self):
        base = super().get_config()
        base.update(
            {
                "config": self.config.to_dict(),
                "confidence_threshold": self.confidence_threshold,
                "iou_threshold": self.iou_threshold,
                "max_candidates_per_class": self.max_candidates_per_class,
                "top_k": self.top_k,
                "clip_boxes": self.clip_boxes,
                "use_xla": self.use_xla,
                "overlap_dtype": self.overlap_dtype,
                "max_log_scale": self.max_log_scale,
                "min_log_scale": self.min_log_scale,
                "max_candidates_per_level": self.max_candidates_per_level,
                "drop_empty_boxes": self.drop_empty_boxes,
            }
        )
        return base
