"""The SSD anchor and head configuration: one object feeds the model, the
target encoder and the decoder."""

import dataclasses
import math
import numbers
import os
from typing import List, Optional, Sequence

import yaml

from keras_ssd import presets

DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)

#: How `keras_ssd.anchors` clips the priors to the image (`SSDConfig.clip`):
#: `"none"` (Caffe VOC), `"corners"` (the corners to [0, 1]; `clip=True`),
#: `"wh"` (only the widths and heights to [0, 1]: torchvision's
#: `DefaultBoxGenerator`), `"cxcywh"` (all four of `(cx, cy, w, h)` to [0, 1]:
#: amdegroot/ssd.pytorch and lufficc/SSD's `PriorBox`).
CLIP_MODES = ("none", "corners", "wh", "cxcywh")


def normalize_clip(value, where="SSDConfig.clip"):
    """A clip mode of `CLIP_MODES` from a mode or a bool (False -> "none",
    True -> "corners")."""
    if isinstance(value, bool):
        return "corners" if value else "none"
    if isinstance(value, str) and value.strip().lower() in CLIP_MODES:
        return value.strip().lower()
    raise ValueError(
        f"{where} must be one of {', '.join(repr(m) for m in CLIP_MODES)} (or a bool: "
        f"False = 'none', True = 'corners'), got {value!r}"
    )


def _as_float_list(name, values):
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"SSDConfig.{name} must be a list of numbers, got {values!r}")


def _is_pair(value):
    return not isinstance(value, (str, bytes)) and isinstance(value, Sequence)


def _as_int_hw(value, what):
    """An int or a `(height, width)` pair of positive ints -> an int when
    both are equal (a square), else a `(height, width)` tuple."""
    parts = list(value) if _is_pair(value) else [value]
    if len(parts) not in (1, 2) or any(
        isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
        or v <= 0 or int(v) != v for v in parts
    ):
        raise ValueError(
            f"{what} must be a positive int or a (height, width) pair of them, "
            f"got {value!r}"
        )
    h, w = int(parts[0]), int(parts[-1])
    return h if h == w else (h, w)


def _as_float_hw(value, what):
    """A number or a `(y, x)` pair of positive numbers -> a float when both
    are equal, else a `(y, x)` tuple of floats."""
    parts = list(value) if _is_pair(value) else [value]
    ok = len(parts) in (1, 2) and all(
        not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v)
        and v > 0 for v in parts)
    if not ok:
        raise ValueError(
            f"{what} must be a positive number or a (y, x) pair of them, got {value!r}"
        )
    y, x = float(parts[0]), float(parts[-1])
    return y if y == x else (y, x)


def _as_list(value):
    return list(value) if isinstance(value, tuple) else value


def _hw(value):
    """`(height, width)` of an int-or-pair field value."""
    return (value, value) if not isinstance(value, tuple) else value


def parse_image_size(text):
    """`"300"` or `"300x540"` (height x width, also `300,540`) -> `300` or
    `(300, 540)`; `ValueError` otherwise. The CLI's `--image-size`."""
    parts = str(text).strip().lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ValueError(f"image size must be S or HxW (e.g. 300x540), got {text!r}")
    return _as_int_hw(values, "image size")


@dataclasses.dataclass
class SSDConfig:
    """Geometry of an SSD detector: input size, feature maps and priors.

    The same configuration object drives the model builder (how many boxes
    each head predicts), `generate_anchors` (the priors), `encode_targets`
    (training targets) and `DecodeDetections` (inference), so the four can
    never disagree.

    Args:
        image_size: int (a square input of that side) or `(height, width)`
            of the input image in pixels. A square pair is stored as an int.
        feature_map_sizes: list with, per prediction feature map, its side
            (int) or its `(height, width)`.
        steps: list with, per feature map, the distance in pixels between
            neighbouring prior centres: a number, or `(step_y, step_x)`.
        min_sizes: list of float, side in pixels of each map's small square
            prior.
        max_sizes: list of float, each map's larger square prior has side
            `sqrt(min_size * max_size)`.
        aspect_ratios: list of lists of float, the extra aspect ratios of each
            map; each ratio `r` adds a box of ratio `r` and one of `1 / r`.
        num_classes: int, number of object classes (background excluded).
        offset: float, prior centre offset within a cell, in units of `step`.
        variances: 4 floats, the box encoding variances `(cx, cy, w, h)`.
        clip: how the priors are clipped to the image, one of `CLIP_MODES`:
            `"none"` (default, Caffe), `"corners"` (the xyxy corners to
            [0, 1]), `"wh"` (widths and heights to [0, 1], centres kept:
            torchvision), `"cxcywh"` (each of cx, cy, w, h to [0, 1]:
            amdegroot/ssd.pytorch, lufficc/SSD). A bool is read as `"none"`
            (False) or `"corners"` (True).
        class_names: optional list of `num_classes` names.
        letterbox: bool. False (default): images are stretched to the input
            size (aspect ratio not kept), as in the paper. True: they are
            scaled to fit, keeping their aspect ratio, and padded with the
            mean pixel (`keras_ssd.data.letterbox_plan`), in training,
            evaluation and prediction alike. Stored with the model, so a
            model trained with it predicts with it.
        class_subset: optional list of 0-based class indices (into the
            `num_classes` classes the network predicts): the classes the
            detector reports, relabelled 0..len-1 in this order
            (`detection_names`). The network and its softmax keep all the
            classes, so scores are unchanged; `DecodeDetections` (and so
            prediction, evaluation and export) only reports these. Made by
            `SSD300.from_preset(..., classes=[...])`; such a model is not
            trained.
        category_ids: optional list of `num_classes` entries, one per class:
            the COCO category id (an int) its label stands for, or `None` for
            an output that is no category (torchvision's 'N/A' placeholder
            logits). Set by the torchvision converter (label `i` -> id `i +
            1`); `evaluate` then matches detections to a COCO annotation
            file's categories by id and never scores a placeholder, and
            per-image detections carry `category_ids`. Default `None`: the
            classes have no COCO ids (matched by name).

    Example:

    >>> config = SSDConfig.ssd300(num_classes=20)
    >>> config.num_anchors
    8732
    """

    image_size: int
    feature_map_sizes: List[int]
    steps: List[float]
    min_sizes: List[float]
    max_sizes: List[float]
    aspect_ratios: List[List[float]]
    num_classes: int
    offset: float = 0.5
    variances: List[float] = dataclasses.field(
        default_factory=lambda: list(DEFAULT_VARIANCES)
    )
    clip: str = "none"
    class_names: Optional[List[str]] = None
    class_subset: Optional[List[int]] = None
    letterbox: bool = False
    category_ids: Optional[List[Optional[int]]] = None

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        """Normalise types and raise `ValueError` naming the bad field."""
        self.image_size = _as_int_hw(self.image_size, "SSDConfig.image_size")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(
                f"SSDConfig.num_classes must be a positive int, got {self.num_classes!r}"
            )
        if self.num_classes <= 0:
            raise ValueError(
                f"SSDConfig.num_classes must be a positive int, got {self.num_classes!r}"
            )
        self._validate_geometry()
        if not (0.0 <= float(self.offset) <= 1.0):
            raise ValueError(f"SSDConfig.offset must lie in [0, 1], got {self.offset!r}")
        self.offset = float(self.offset)
        variances = _as_float_list("variances", self.variances)
        if len(variances) != 4 or any(v <= 0 for v in variances):
            raise ValueError(
                f"SSDConfig.variances must be 4 positive numbers, got {self.variances!r}"
            )
        self.variances = variances
        self.clip = normalize_clip(self.clip)
        if not isinstance(self.letterbox, bool):
            raise ValueError(f"SSDConfig.letterbox must be a bool, got {self.letterbox!r}")
        self._validate_class_names()
        self._validate_class_subset()
        self._validate_category_ids()

    def _validate_geometry(self):
        """The per-map lists: one entry per feature map, sizes and ratios positive."""
        for name in ("feature_map_sizes", "steps", "min_sizes", "max_sizes", "aspect_ratios"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise ValueError(f"SSDConfig.{name} must be a list, got {value!r}")
            if len(value) == 0:
                raise ValueError(f"SSDConfig.{name} must not be empty")
        n = len(self.feature_map_sizes)
        for name in ("steps", "min_sizes", "max_sizes", "aspect_ratios"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"SSDConfig.{name} has {len(getattr(self, name))} entries but "
                    f"feature_map_sizes has {n}; they must have one per feature map"
                )
        self.feature_map_sizes = [
            _as_int_hw(f, "SSDConfig.feature_map_sizes entries") for f in self.feature_map_sizes
        ]
        self.steps = [_as_float_hw(v, "SSDConfig.steps entries") for v in self.steps]
        for name in ("min_sizes", "max_sizes"):
            values = _as_float_list(name, getattr(self, name))
            if any(not math.isfinite(v) or v <= 0 for v in values):
                raise ValueError(f"SSDConfig.{name} must be positive, got {values}")
            setattr(self, name, values)
        for lo, hi in zip(self.min_sizes, self.max_sizes):
            if hi < lo:
                raise ValueError(
                    f"SSDConfig.max_sizes must be >= min_sizes per map, got "
                    f"max {hi} < min {lo}"
                )
        ratios = []
        for r in self.aspect_ratios:
            if isinstance(r, (str, bytes)) or not isinstance(r, Sequence):
                raise ValueError(
                    f"SSDConfig.aspect_ratios must be a list of lists, got {r!r}"
                )
            r = _as_float_list("aspect_ratios", r)
            if any(not math.isfinite(v) or v <= 0 for v in r):
                raise ValueError(f"SSDConfig.aspect_ratios must be positive, got {r}")
            ratios.append(r)
        self.aspect_ratios = ratios

    def _validate_class_names(self):
        if self.class_names is None:
            return
        names = list(self.class_names)
        if len(names) != self.num_classes:
            raise ValueError(
                f"SSDConfig.class_names has {len(names)} names but num_classes "
                f"is {self.num_classes}"
            )
        if not all(isinstance(x, str) and x for x in names):
            raise ValueError("SSDConfig.class_names must be non-empty strings")
        if len(set(names)) != len(names):
            raise ValueError("SSDConfig.class_names must be unique")
        self.class_names = names

    def _validate_class_subset(self):
        if self.class_subset is None:
            return
        subset = self.class_subset
        if isinstance(subset, (str, bytes)) or not isinstance(subset, Sequence) \
                or not subset:
            raise ValueError(
                f"SSDConfig.class_subset must be a non-empty list of class indices, "
                f"got {subset!r}")
        if any(isinstance(i, bool) or int(i) != i or not 0 <= i < self.num_classes
               for i in subset):
            raise ValueError(
                f"SSDConfig.class_subset must hold class indices 0..{self.num_classes - 1}"
                f", got {list(subset)}")
        subset = [int(i) for i in subset]
        if len(set(subset)) != len(subset):
            raise ValueError(f"SSDConfig.class_subset repeats classes: {subset}")
        self.class_subset = subset

    def _validate_category_ids(self):
        if self.category_ids is None:
            return
        ids = self.category_ids
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) \
                or len(ids) != self.num_classes:
            raise ValueError(
                f"SSDConfig.category_ids must be a list of {self.num_classes} entries "
                f"(one per class: a category id or None), got {ids!r}")
        bad = [i for i in ids if i is not None and (
            isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0)]
        if bad:
            raise ValueError(
                f"SSDConfig.category_ids entries must be non-negative ints or None, "
                f"got {bad[:5]}")
        ids = [None if i is None else int(i) for i in ids]
        real = [i for i in ids if i is not None]
        if len(set(real)) != len(real):
            raise ValueError(f"SSDConfig.category_ids repeats ids: "
                             f"{sorted({i for i in real if real.count(i) > 1})}")
        self.category_ids = ids

    # ----------------------------------------------------------- derived sizes
    @property
    def boxes_per_cell(self):
        """Number of priors per cell on each feature map."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    @property
    def num_anchors(self):
        """Total number of priors."""
        return int(
            sum(h * w * k for (h, w), k in zip(self.feature_map_shapes, self.boxes_per_cell))
        )

    @property
    def image_shape(self):
        """`(height, width)` of the input image in pixels."""
        return _hw(self.image_size)

    @property
    def image_height(self):
        return self.image_shape[0]

    @property
    def image_width(self):
        return self.image_shape[1]

    @property
    def is_square(self):
        """Whether the input is square (`image_size` an int)."""
        return not isinstance(self.image_size, tuple)

    @property
    def feature_map_shapes(self):
        """`(height, width)` of each feature map."""
        return [_hw(f) for f in self.feature_map_sizes]

    @property
    def step_shapes(self):
        """`(step_y, step_x)` in pixels of each feature map."""
        return [_hw(s) for s in self.steps]

    @property
    def names(self):
        """Class names, or `class_0`, `class_1`, ... when none were given."""
        if self.class_names is not None:
            return list(self.class_names)
        return [f"class_{i}" for i in range(self.num_classes)]

    @property
    def num_detection_classes(self):
        """Number of classes the detector reports: `len(class_subset)`, else
        `num_classes`."""
        return self.num_classes if self.class_subset is None else len(self.class_subset)

    @property
    def detection_names(self):
        """Names of the classes the detector reports (labels 0, 1, ... of its
        detections): `names` of `class_subset`, else `names`."""
        names = self.names
        return names if self.class_subset is None else [names[i] for i in self.class_subset]

    @property
    def detection_category_ids(self):
        """COCO category ids of the classes the detector reports (labels 0, 1,
        ... of its detections; `None` for a placeholder output), or `None`
        when the classes have no ids (`category_ids`)."""
        ids = self.category_ids
        if ids is None:
            return None
        return list(ids) if self.class_subset is None else [ids[i] for i in self.class_subset]

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_image_size(self, image_size, feature_map_shapes):
        """This geometry at another input size, given the network's map shapes.

        Prior sizes stay in pixels (so priors stay square in pixels on a
        non-square input). Each map's step, per axis, is kept where the
        map's cells at that step still span the image (`step * (f - 1) <
        size <= step * f`: the map's stride, e.g. 8 for SSD300's conv4_3 at
        any size); otherwise (maps whose size comes from unpadded
        convolutions, such as SSD300's last two) it becomes `size / f`, the
        Caffe default. At the geometry's own size nothing changes.

        Args:
            image_size: int or `(height, width)` of the new input.
            feature_map_shapes: the network's `(height, width)` of each map
                at that size (e.g. read from the built backbone).

        Returns:
            A new `SSDConfig`.

        Example:

        >>> c = SSDConfig.ssd300().with_image_size(
        ...     (300, 540), [(38, 68), (19, 34), (10, 17), (5, 9), (3, 7), (1, 5)])
        >>> c.step_shapes[4]
        (100.0, 77.14285714285714)
        """
        height, width = _hw(_as_int_hw(image_size, "with_image_size: image_size"))
        shapes = [_hw(_as_int_hw(s, "with_image_size: feature_map_shapes entries"))
                  for s in feature_map_shapes]
        if len(shapes) != len(self.feature_map_sizes):
            raise ValueError(
                f"with_image_size: got {len(shapes)} feature map shapes for a geometry "
                f"of {len(self.feature_map_sizes)} maps"
            )

        def step(old, size, f):
            return old if old * (f - 1) < size <= old * f else size / f

        steps = [(step(sy, height, fh), step(sx, width, fw))
                 for (sy, sx), (fh, fw) in zip(self.step_shapes, shapes)]
        return self.replace(image_size=(height, width), feature_map_sizes=shapes,
                            steps=steps)

    # --------------------------------------------------------- serialisation
    def to_dict(self):
        d = dataclasses.asdict(self)
        d["aspect_ratios"] = [list(r) for r in self.aspect_ratios]
        if d["class_subset"] is None:  # files without a subset stay as before
            del d["class_subset"]
        # Pairs as lists (YAML and JSON have no tuples).
        d["image_size"] = _as_list(self.image_size)
        d["feature_map_sizes"] = [_as_list(f) for f in self.feature_map_sizes]
        d["steps"] = [_as_list(v) for v in self.steps]
        if not self.letterbox:  # files of stretched-input models stay as before
            del d["letterbox"]
        if d["category_ids"] is None:  # files of models without COCO ids too
            del d["category_ids"]
        return d

    @classmethod
    def from_dict(cls, d):
        if isinstance(d, SSDConfig):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"SSDConfig.from_dict expects a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SSDConfig got unknown keys: {', '.join(unknown)}")
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(d))
        if missing:
            raise ValueError(f"SSDConfig is missing keys: {', '.join(missing)}")
        return cls(**d)

    def to_yaml(self, path=None):
        """Return the YAML text; also write it to `path` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    @classmethod
    def from_yaml(cls, text_or_path):
        """Load from YAML text or a file path (safe loading only)."""
        text = text_or_path
        is_path = isinstance(text_or_path, os.PathLike) or (
            isinstance(text_or_path, str)
            and "\n" not in text_or_path
            and os.path.exists(text_or_path)
        )
        if is_path:
            try:
                with open(text_or_path, "r", encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise ValueError(f"cannot read SSD config file {text_or_path}: {e}") from e
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ValueError(f"invalid SSD config YAML: {e}") from e
        if not isinstance(d, dict) and not is_path and "\n" not in str(text):
            raise ValueError(f"SSD config file not found: {text_or_path}")
        return cls.from_dict(d)

    # --------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, name, num_classes=None, class_names=None):
        """The prior geometry of the variant `name` in `keras_ssd.presets`.

        Args:
            name: a variant name (`"ssd300"`, `"ssd512"`, `"mobilenet_v2"`,
                `"ssdlite320"`, `"ssdlite320_mobilenet_v2"`, `"tiny"`) or one of
                its aliases.
            num_classes: object classes; default `len(class_names)` or the
                preset's (20).
            class_names: optional list of names.
        """
        preset = presets.get(name)
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else preset.num_classes
        geometry = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                    for k, v in preset.geometry.items()}
        return cls(num_classes=num_classes, class_names=class_names, **geometry)

    @classmethod
    def ssd300(cls, num_classes=20, class_names=None):
        """The Caffe SSD300 VOC geometry: 6 maps, 8732 priors (`from_preset("ssd300")`)."""
        return cls.from_preset("ssd300", num_classes, class_names)

    @classmethod
    def ssd512(cls, num_classes=20, class_names=None):
        """The Caffe SSD512 VOC geometry: 7 maps, 24564 priors (`from_preset("ssd512")`)."""
        return cls.from_preset("ssd512", num_classes, class_names)

    @classmethod
    def tiny(cls, num_classes=20, class_names=None):
        """The 160-pixel geometry of `SSDTiny`: 5 maps, 2390 priors (`from_preset("tiny")`)."""
        return cls.from_preset("tiny", num_classes, class_names)

    @classmethod
    def mobilenet_v2(cls, num_classes=20, class_names=None):
        """The MobileNetV2-320 geometry: 6 maps, 3234 priors (`from_preset("mobilenet_v2")`)."""
        return cls.from_preset("mobilenet_v2", num_classes, class_names)
