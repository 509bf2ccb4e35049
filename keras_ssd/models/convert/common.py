"""What the three SSD300 checkpoint converters share: the layer table of
keras-ssd's SSD300, the `Source` description of a checkpoint's origin, and
the state-dict -> model conversion with its checks.

Every published SSD300 (torchvision `ssd300_vgg16`, amdegroot/ssd.pytorch,
lufficc/SSD) has exactly the layers keras-ssd's `SSD300` builds: VGG16
conv1_1..conv5_3, fc6 (3x3, dilation 6), fc7 (1x1), the L2Norm scale on
conv4_3, four extra blocks (1x1 then 3x3) and six box / six class heads.
Only their state-dict names differ; each source module lists its names in
`SSD300_LAYERS` order. Kernels go from torch's `(out, in, kh, kw)` to
Keras' `(kh, kw, in, out)`. A head's output channel `a * K + k` (prior `a`
of the cell, value `k`) is what both torch's `view(N, A, K, H, W)` (or
`permute(0, 2, 3, 1).view(N, -1, K)`) and keras-ssd's NHWC `Reshape` read,
so head kernels need no reordering.
"""

import copy
import dataclasses
from typing import Callable, List, Mapping, Optional, Tuple

import numpy as np

from keras_ssd import presets
from keras_ssd.models.vgg16 import SSD300_EXTRAS, VGG16_BLOCKS


#: torchvision's 91 COCO outputs: index = COCO category id (0 = background),
#: "N/A" where the id is not a COCO category (12, 26, 29, 30, 45, 66, 68,
#: 69, 71, 83), as in torchvision's `_COCO_CATEGORIES`.
COCO_CATEGORIES_91 = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus",
    "train", "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "N/A", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana",
    "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A",
    "toilet", "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "N/A", "book", "clock",
    "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

#: The COCO category ids without a category (torchvision's "N/A" outputs).
COCO_PLACEHOLDER_IDS = tuple(i for i, n in enumerate(COCO_CATEGORIES_91) if n == "N/A")

#: keras-ssd class names of the 90 object outputs of torchvision's COCO
#: model: label `i` (0-based, background excluded) is COCO category id
#: `i + 1`; the placeholders are named `"N/A-<id>"` (class names must be
#: unique) and never are real COCO categories.
COCO_CLASS_NAMES = tuple(
    f"N/A-{i}" if n == "N/A" else n for i, n in enumerate(COCO_CATEGORIES_91)
)[1:]

#: label (0-based, as keras-ssd's detections give it) -> COCO category id.
COCO_CATEGORY_IDS = tuple(range(1, len(COCO_CATEGORIES_91)))

#: `SSDConfig.category_ids` of the torchvision COCO model: `COCO_CATEGORY_IDS`
#: with `None` for the placeholder outputs (no category: never scored).
COCO_CONFIG_CATEGORY_IDS = tuple(
    None if cid in COCO_PLACEHOLDER_IDS else cid for cid in COCO_CATEGORY_IDS)


def coco_category_id(label):
    """The COCO category id of a keras-ssd label of the torchvision COCO model
    (label `i` -> id `i + 1`); `ValueError` for a placeholder output."""
    label = int(label)
    if not 0 <= label < len(COCO_CATEGORY_IDS):
        raise ValueError(f"COCO label must lie in [0, {len(COCO_CATEGORY_IDS)}), got {label}")
    cid = COCO_CATEGORY_IDS[label]
    if cid in COCO_PLACEHOLDER_IDS:
        raise ValueError(f"label {label} (COCO id {cid}) is an unused 'N/A' output")
    return cid


# ------------------------------------------------------------ architecture
def _ssd300_convs():
    """`(layer, in_channels, out_channels, kernel)` of SSD300's convolutions
    in keras-ssd's names, from the tables in `keras_ssd.models.vgg16`."""
    convs = []
    channels = 3
    for block, (filters, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            convs.append((f"conv{block}_{i}", channels, filters, 3))
            channels = filters
    convs.append(("fc6", channels, 1024, 3))
    convs.append(("fc7", 1024, 1024, 1))
    channels = 1024
    for name, mid, out, kernel, _, _ in SSD300_EXTRAS:
        convs.append((f"{name}_1", channels, mid, 1))
        convs.append((f"{name}_2", mid, out, kernel))
        channels = out
    return convs


#: The feature maps feeding the heads, with their channels.
SSD300_SOURCES = (("conv4_3_norm", 512), ("fc7", 1024)) + tuple(
    (f"{name}_2", out) for name, _, out, _, _, _ in SSD300_EXTRAS)

#: Priors per cell of each SSD300 source map (Caffe ratios {2} / {2, 3}).
SSD300_BOXES_PER_CELL = (4, 6, 6, 6, 4, 4)

#: The L2Normalization layer on conv4_3.
L2_LAYER = "conv4_3_norm"


def ssd300_layers(num_outputs):
    """keras-ssd SSD300's weight layers in a fixed order, each as
    `(layer, kind, torch shape of the weight)`: kind `"conv"` (weight and
    bias, weight shape OIHW) or `"scale"` (the L2Norm scale).

    Args:
        num_outputs: class logits per prior, background included.
    """
    layers = [(name, "conv", (cout, cin, k, k)) for name, cin, cout, k in _ssd300_convs()]
    layers.append((L2_LAYER, "scale", (512,)))
    for (name, channels), boxes in zip(SSD300_SOURCES, SSD300_BOXES_PER_CELL):
        layers.append((f"{name}_mbox_loc", "conv", (boxes * 4, channels, 3, 3)))
    for (name, channels), boxes in zip(SSD300_SOURCES, SSD300_BOXES_PER_CELL):
        layers.append((f"{name}_mbox_conf", "conv", (boxes * num_outputs, channels, 3, 3)))
    return layers


#: The Caffe SSD300 VOC prior geometry (amdegroot's and lufficc's `PriorBox`):
#: the registry's `ssd300` geometry, with the variances written out.
CAFFE_SSD300_GEOMETRY = dict(
    copy.deepcopy(dict(presets.get("ssd300").geometry)),
    variances=[0.1, 0.1, 0.2, 0.2],
)


# ------------------------------------------------------------------ sources
@dataclasses.dataclass(frozen=True)
class Source:
    """Where a checkpoint comes from and how that code runs it.

    Attributes:
        name: `"torchvision"`, `"amdegroot"` or `"lufficc"`.
        description: one line naming the code and the checkpoint.
        geometry: the `SSDConfig` fields of its priors (`clip` included),
            all but the classes.
        preprocessing: the `ImagePreprocessing` arguments that reproduce its
            input normalisation on RGB 0..255 pixels.
        postprocessing: its `DecodeDetections` options for its own class
            count (`postprocessing_for(num_classes)` for another): the
            `decode` of its checkpoint's `keras_ssd.presets.PretrainedPreset`.
        class_names: the object classes of its published checkpoint
            (background excluded), label order.
        keys: `(layer, kind) -> [torch keys]`: its state-dict names of each
            keras-ssd layer (`[weight, bias]` for a conv, `[scale]`).
        marker: a state-dict key only this source has (for sniffing).
        top_k_per_class: when set, `postprocessing_for(n)` keeps up to this
            many detections per class and no per-image limit (`top_k = n *
            top_k_per_class`).
        category_ids: the COCO category id of each of `class_names` (`None`
            for a placeholder output), or `None` for classes without COCO
            ids; becomes `SSDConfig.category_ids` of the converted model.
        absent: a key this source never has: its presence rules the source
            out when sniffing (lufficc's SSD300 and SSD512 share the marker).
    """

    name: str
    description: str
    geometry: Mapping
    preprocessing: Mapping
    postprocessing: Mapping
    class_names: Tuple[str, ...]
    keys: Callable[[str, str], List[str]]
    marker: str
    top_k_per_class: Optional[int] = None
    category_ids: Optional[Tuple[Optional[int], ...]] = None
    absent: Optional[str] = None

    @property
    def num_classes(self):
        """Object classes of the published checkpoint (background excluded)."""
        return len(self.class_names)

    def postprocessing_for(self, num_classes):
        """`postprocessing` for a model of `num_classes` object classes
        (amdegroot keeps up to 200 per class and no per-image limit, so its
        `top_k` grows with the classes)."""
        options = dict(self.postprocessing)
        if self.top_k_per_class is not None:
            options["top_k"] = self.top_k_per_class * int(num_classes)
        return options

    def expected_keys(self, num_outputs):
        """`{torch key: (layer, kind, index, torch shape)}` of every tensor
        the state dict must hold (index 0 = weight, 1 = bias)."""
        out = {}
        for layer, kind, shape in ssd300_layers(num_outputs):
            names = self.keys(layer, kind)
            shapes = [shape, (shape[0],)] if kind == "conv" else [shape]
            for index, (key, s) in enumerate(zip(names, shapes)):
                out[key] = (layer, kind, index, tuple(s))
        return out


#: torchvision's `BoxCoder.bbox_xform_clip`: decoded log-scales are capped here.
TORCHVISION_MAX_LOG_SCALE = presets.TORCHVISION_MAX_LOG_SCALE


class ConversionError(ValueError):
    """A state dict that does not fit the source's SSD300: missing or extra
    keys, or tensors of the wrong shape (the message names them)."""


def _describe(keys, limit=12):
    keys = sorted(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{shown}{more}"


def _strip_module_prefix(state):
    """Drop the `module.` prefix `nn.DataParallel` puts on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def num_outputs_of(state, source, where=""):
    """Class logits per prior (background included) of a state dict, from its
    first class head's bias."""
    key = source.keys("conv4_3_norm_mbox_conf", "conv")[1]
    if key not in state:
        raise ConversionError(
            f"{where}the state dict has no {key!r} (the first class head's bias of a "
            f"{source.name} SSD300), so its class count is unknown")
    bias = np.asarray(state[key])
    boxes = SSD300_BOXES_PER_CELL[0]
    if bias.ndim != 1 or bias.shape[0] % boxes or bias.shape[0] // boxes < 2:
        raise ConversionError(
            f"{where}{key!r} has shape {tuple(bias.shape)}; a {source.name} SSD300 class "
            f"head has {boxes} * (classes + 1) outputs")
    return bias.shape[0] // boxes


def check_state_dict(state, source, num_outputs, where=""):
    """Raise `ConversionError` unless `state` holds exactly the tensors of
    `source`'s SSD300 with `num_outputs` logits, each of the right shape."""
    expected = source.expected_keys(num_outputs)
    missing = set(expected) - set(state)
    extra = set(state) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_describe(extra)}")
    for key, (layer, _, _, shape) in expected.items():
        if key in state:
            got = tuple(np.shape(state[key]))
            if got != shape:
                problems.append(
                    f"{key!r} (keras-ssd layer {layer}) has shape {got}, expected {shape}")
    if problems:
        raise ConversionError(
            f"{where}the state dict is not a {source.name} SSD300 with {num_outputs} "
            f"class outputs: " + "; ".join(problems))


def keras_weights(state, source, num_outputs):
    """`{layer: [arrays]}` in keras-ssd's layouts (HWIO kernels, float32)."""
    out = {}
    for layer, kind, _ in ssd300_layers(num_outputs):
        arrays = [np.asarray(state[k], dtype=np.float32) for k in source.keys(layer, kind)]
        if kind == "conv":
            arrays[0] = np.ascontiguousarray(arrays[0].transpose(2, 3, 1, 0))
        out[layer] = arrays
    return out
