"""The SSD anchor and head configuration: one object feeds the model, the
target encoder and the decoder."""

import dataclasses
import math
import os
from typing import List, Optional, Sequence

import yaml

from keras_ssd import presets

DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)

#: How `keras_ssd.anchors` clips the priors to the image (`SSDConfig.clip`):
#: `"none"` (Caffe VOC), `"corners"` (the corners to [0, 1], keras-ssd 0.1's
#: `clip=True`), `"wh"` (only the widths and heights to [0, 1]: torchvision's
#: `DefaultBoxGenerator`), `"cxcywh"` (all four of `(cx, cy, w, h)` to [0, 1]:
#: amdegroot/ssd.pytorch and lufficc/SSD's `PriorBox`).
CLIP_MODES = ("none", "corners", "wh", "cxcywh")


def normalize_clip(value, where="SSDConfig.clip"):
    """A clip mode of `CLIP_MODES` from a mode or a bool (False -> "none",
    True -> "corners", the meaning of `clip=True` in keras-ssd 0.1 files)."""
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


@dataclasses.dataclass
class SSDConfig:
    """Geometry of an SSD detector: input size, feature maps and priors.

    The same configuration object drives the model builder (how many boxes
    each head predicts), `generate_anchors` (the priors), `encode_targets`
    (training targets) and `DecodeDetections` (inference), so the four can
    never disagree.

    Args:
        image_size: int, side of the square input image in pixels.
        feature_map_sizes: list of int, side of each prediction feature map.
        steps: list of float, distance in pixels between neighbouring prior
            centres on each feature map.
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
            (False) or `"corners"` (True, keras-ssd 0.1's meaning).
        class_names: optional list of `num_classes` names.
        class_subset: optional list of 0-based class indices (into the
            `num_classes` classes the network predicts): the classes the
            detector reports, relabelled 0..len-1 in this order
            (`detection_names`). The network and its softmax keep all the
            classes, so scores are unchanged; `DecodeDetections` (and so
            prediction, evaluation and export) only reports these. Made by
            `SSD300.from_preset(..., classes=[...])`; such a model is not
            trained.

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

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self):
        """Normalise types and raise `ValueError` naming the bad field."""
        if isinstance(self.image_size, bool) or not isinstance(
            self.image_size, (int, float)
        ):
            raise ValueError(
                f"SSDConfig.image_size must be a positive int, got {self.image_size!r}"
            )
        if self.image_size <= 0 or int(self.image_size) != self.image_size:
            raise ValueError(
                f"SSDConfig.image_size must be a positive int, got {self.image_size!r}"
            )
        self.image_size = int(self.image_size)
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(
                f"SSDConfig.num_classes must be a positive int, got {self.num_classes!r}"
            )
        if self.num_classes <= 0:
            raise ValueError(
                f"SSDConfig.num_classes must be a positive int, got {self.num_classes!r}"
            )
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
        sizes = []
        for s in self.feature_map_sizes:
            if isinstance(s, bool) or int(s) != s or s <= 0:
                raise ValueError(
                    f"SSDConfig.feature_map_sizes must hold positive ints, got {s!r}"
                )
            sizes.append(int(s))
        self.feature_map_sizes = sizes
        for name in ("steps", "min_sizes", "max_sizes"):
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
        if self.class_names is not None:
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
        if self.class_subset is not None:
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

    # ----------------------------------------------------------- derived sizes
    @property
    def boxes_per_cell(self):
        """Number of priors per cell on each feature map."""
        return [2 + 2 * len(r) for r in self.aspect_ratios]

    @property
    def num_anchors(self):
        """Total number of priors."""
        return int(
            sum(f * f * k for f, k in zip(self.feature_map_sizes, self.boxes_per_cell))
        )

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

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # --------------------------------------------------------- serialisation
    def to_dict(self):
        d = dataclasses.asdict(self)
        d["aspect_ratios"] = [list(r) for r in self.aspect_ratios]
        if d["class_subset"] is None:  # files without a subset stay as before
            del d["class_subset"]
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
                `"tiny"`) or one of its aliases.
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
