"""mmdetection's VGG16 SSD300 / SSD512 (its v2 model zoo: `ssd300_coco`,
`ssd512_coco`, `ssd300_voc0712`, `ssd512_voc0712`): state-dict names and how
its code runs them.

The checkpoint is `{"meta": {...}, "state_dict": {...}}` (`meta` holds plain
values: versions, the config text, the class names; the restricted reader
needs no new global for it). Names, in the layout of mmdetection >= 2.14
(every checkpoint its model zoo serves now):

- `backbone.features.<i>` (`SSDVGG` on mmcv's `VGG`, `with_last_pool=False`,
  `ceil_mode=True`, then pool5 3x3/1/1, fc6 3x3 dilation 6, fc7 1x1): the
  convolutions sit at amdegroot's indices 0, 2, 5, ..., 28, 31, 33;
- `neck.l2_norm.weight` (`SSDNeck`'s `L2Norm`, scale 20, `eps` 1e-10 added
  to the norm) and `neck.extra_layers.<level>.<0|1>.conv` (1x1, then 3x3
  stride 2 pad 1 / stride 1 pad 0 for 300; four 3x3 stride 2 pad 1 and a
  4x4 stride 1 pad 1 for 512): keras-ssd's `ssd300` / `ssd512` layer for
  layer;
- `bbox_head.reg_convs.<i>.0` and `bbox_head.cls_convs.<i>.0` (`SSDHead`
  with `stacked_convs=0`: one 3x3 convolution per map).

Files in the layout before 2.14 (`backbone.extra.<i>`,
`backbone.l2_norm.weight`, `bbox_head.cls_convs.<i>.weight`: the 2020
`ssd300_coco_20200307-a92d2092.pth` and `ssd512_coco_20200308-038c5591.pth`)
are renamed as mmdetection's `upgrade_ssd_version.py` does, then converted.

Running it (`configs/_base_/models/ssd300.py`, `configs/ssd/ssd512_coco.py`,
`configs/pascal_voc/ssd*_voc0712.py`, `SSDAnchorGenerator`,
`DeltaXYWHBBoxCoder`, `BaseDenseHead._predict_by_feat_single`):

- priors: `SSDAnchorGenerator(scale_major=False)` from `basesize_ratio_range`
  (COCO 300: (0.15, 0.9), VOC 300: (0.2, 0.9), COCO 512: (0.1, 0.9), VOC
  512: (0.15, 0.9)), sizes truncated to whole pixels (`min_sizes` below),
  centres `(j + 0.5) * stride`, not clipped. Per cell its base anchors are
  `(min, min)`, `sqrt(min * max)` square, then per ratio `r` the wide box
  `(min sqrt(r), min / sqrt(r))` and the tall one: the Caffe order
  keras-ssd's priors have, so the box heads need no reordering;
- classes: softmax over `num_classes + 1` logits with the background LAST
  (keras-ssd's is first): each prior's class channels are rotated;
- input: RGB minus (123.675, 116.28, 103.53), std 1, resized to the square
  input without keeping the aspect ratio;
- boxes: `DeltaXYWHBBoxCoder`, stds 0.1, 0.1, 0.2, 0.2, log-scales clamped
  to +-log(1000 / 16) on both sides (`max_log_scale`, `min_log_scale`),
  boxes clipped to the image;
- `test_cfg`: per feature map the best 1000 (prior, class) scores above
  0.02 (`nms_pre`, `score_thr`), boxes of zero width or height dropped
  (`min_bbox_size=0`), NMS 0.45 per class, the best 200 per image.
"""

import dataclasses
import re
from typing import Optional

import numpy as np

from keras_ssd import presets
from keras_ssd.classes import VOC_CLASSES
from keras_ssd.models.convert.common import COCO_CATEGORIES_91
from keras_ssd.models.convert.layer_table import LayerTableSource
from keras_ssd.models.vgg16 import SSD300_EXTRAS, SSD512_EXTRAS, VGG16_BLOCKS

#: mmdetection's 80 COCO classes (`CocoDataset.METAINFO["classes"]`, label
#: order) and their COCO category ids.
COCO80_CLASSES = tuple(n for n in COCO_CATEGORIES_91[1:] if n != "N/A")
COCO80_CATEGORY_IDS = tuple(i for i, n in enumerate(COCO_CATEGORIES_91)
                            if i > 0 and n != "N/A")

_FEATURES = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
             "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
             "conv5_1": 24, "conv5_2": 26, "conv5_3": 28, "fc6": 31, "fc7": 33}

#: input size -> (extra blocks, priors per cell of each map).
_NETWORKS = {300: (SSD300_EXTRAS, (4, 6, 6, 6, 4, 4)),
             512: (SSD512_EXTRAS, (4, 6, 6, 6, 6, 4, 4))}

def _conv(layer, prefix, cin, cout, k):
    return (layer, "conv", [(f"{prefix}.weight", (cout, cin, k, k)),
                            (f"{prefix}.bias", (cout,))])


def head_maps(size):
    """`(keras map name, channels, priors per cell)` of the maps feeding the heads."""
    extras, boxes = _NETWORKS[size]
    maps = [("conv4_3_norm", 512), ("fc7", 1024)] + [
        (f"{name}_2", out) for name, _, out, _, _, _ in extras]
    return [(name, channels, b) for (name, channels), b in zip(maps, boxes)]


def layer_table(size, num_outputs):
    """keras-ssd SSD300 / SSD512 layers and mmdetection's tensors (see
    `keras_ssd.models.convert.layer_table`)."""
    table = []
    channels = 3
    for block, (filters, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            name = f"conv{block}_{i}"
            table.append(_conv(name, f"backbone.features.{_FEATURES[name]}", channels,
                               filters, 3))
            channels = filters
    table.append(_conv("fc6", "backbone.features.31", 512, 1024, 3))
    table.append(_conv("fc7", "backbone.features.33", 1024, 1024, 1))
    table.append(("conv4_3_norm", "scale", [("neck.l2_norm.weight", (512,))]))
    channels = 1024
    for i, (name, mid, out, kernel, _, _) in enumerate(_NETWORKS[size][0]):
        table.append(_conv(f"{name}_1", f"neck.extra_layers.{i}.0.conv", channels, mid, 1))
        table.append(_conv(f"{name}_2", f"neck.extra_layers.{i}.1.conv", mid, out, kernel))
        channels = out
    for kind, head, width in (("loc", "reg_convs", 4), ("conf", "cls_convs", num_outputs)):
        for i, (name, channels, boxes) in enumerate(head_maps(size)):
            table.append(_conv(f"{name}_mbox_{kind}", f"bbox_head.{head}.{i}.0", channels,
                               boxes * width, 3))
    return table


def background_first(boxes, num_outputs):
    """Output-channel order that turns a class head with the background
    logit last (mmdetection: prior `a`, logits `a * K + 0 .. K - 1`, the
    background at `K - 1`) into keras-ssd's background-first layout: keras
    channel `a * K + k` takes mmdetection's `a * K + (k - 1) mod K`."""
    k = np.arange(num_outputs)
    return (np.arange(boxes)[:, None] * num_outputs + (k - 1) % num_outputs).reshape(-1)


def anchor_sizes(size, basesize_ratio_range):
    """mmdetection `SSDAnchorGenerator`'s `min_sizes` and `max_sizes` from its
    `basesize_ratio_range` (percentages and sizes truncated to integers, the
    first map's sizes fixed per input size and range start)."""
    levels = len(_NETWORKS[size][1])
    low, high = (int(r * 100) for r in basesize_ratio_range)
    step = int(np.floor(high - low) / (levels - 2))
    mins = [int(size * r / 100) for r in range(low, high + 1, step)]
    maxs = [int(size * (r + step) / 100) for r in range(low, high + 1, step)]
    first = {(300, 15): (7, 15), (300, 20): (10, 20), (512, 10): (4, 10),
             (512, 15): (7, 15)}[(size, low)]
    return ([int(size * first[0] / 100)] + mins, [int(size * first[1] / 100)] + maxs)


def geometry(size, basesize_ratio_range):
    """The `SSDConfig` prior fields of an mmdetection SSD."""
    mins, maxs = anchor_sizes(size, basesize_ratio_range)
    base = presets.get(f"ssd{size}").geometry
    return dict(image_size=size, feature_map_sizes=list(base["feature_map_sizes"]),
                steps=list(base["steps"]), min_sizes=[float(m) for m in mins],
                max_sizes=[float(m) for m in maxs],
                aspect_ratios=[list(r) for r in base["aspect_ratios"]],
                variances=[0.1, 0.1, 0.2, 0.2], clip="none")


@dataclasses.dataclass(frozen=True)
class MMDetSource(LayerTableSource):
    """An mmdetection SSD: the layer table of its input size, its class heads
    turned background-first, and (for sniffing) its published class count.

    Attributes (beyond `LayerTableSource`'s):
        size: 300 or 512.
        published_outputs: logits per prior of the published checkpoint (81
            COCO, 21 VOC): sniffing picks this source only for that count.
    """

    size: int = 300
    published_outputs: Optional[int] = None

    def prepare(self, state):
        """The layout before mmdetection 2.14 (`backbone.extra.<i>`,
        `backbone.l2_norm.weight`, `bbox_head.{cls,reg}_convs.<i>.weight`)
        renamed as its `tools/model_converters/upgrade_ssd_version.py` does;
        other state dicts unchanged."""
        if "backbone.l2_norm.weight" not in state or not any(
                _OLD_HEAD.match(k) for k in state):
            return state
        out = {}
        for key, value in state.items():
            extra, head = _OLD_EXTRA.match(key), _OLD_HEAD.match(key)
            if extra:
                i = int(extra.group(1))
                key = f"neck.extra_layers.{i // 2}.{i % 2}.conv.{extra.group(2)}"
            elif key == "backbone.l2_norm.weight":
                key = "neck.l2_norm.weight"
            elif head:
                key = f"bbox_head.{head.group(1)}.{head.group(2)}.0.{head.group(3)}"
            out[key] = value
        return out

    def claims(self, state):
        state = self.prepare(state)
        if not super().claims(state):
            return False
        bias = state.get(self.class_head_bias)
        return (self.published_outputs is None or bias is None
                or np.shape(bias) == (self.boxes_first * self.published_outputs,))

    def keras_weights(self, state, num_outputs):
        out = super().keras_weights(state, num_outputs)
        for name, _, boxes in head_maps(self.size):
            kernel, bias = out[f"{name}_mbox_conf"]
            order = background_first(boxes, num_outputs)
            out[f"{name}_mbox_conf"] = [np.ascontiguousarray(kernel[..., order]),
                                        bias[order]]
        return out


_MARKER_512 = "neck.extra_layers.4.0.conv.weight"
_OLD_EXTRA = re.compile(r"backbone\.extra\.(\d+)\.(weight|bias)$")
_OLD_HEAD = re.compile(r"bbox_head\.(cls_convs|reg_convs)\.(\d+)\.(weight|bias)$")


def _source(size, data, ratio_range):
    name = f"mmdet_ssd{size}_{data}"
    preset = presets.for_source(name)
    coco = data == "coco"
    return MMDetSource(
        name=name,
        description=preset.description,
        geometry=geometry(size, ratio_range),
        preprocessing=dict(mode="custom", channel_order="rgb", scale=1.0,
                           mean=[123.675, 116.28, 103.53], std=[1.0, 1.0, 1.0]),
        postprocessing=preset.decode,
        class_names=COCO80_CLASSES if coco else VOC_CLASSES,
        category_ids=COCO80_CATEGORY_IDS if coco else None,
        keys=None,
        marker=_MARKER_512 if size == 512 else "neck.l2_norm.weight",
        absent=None if size == 512 else _MARKER_512,
        architecture=f"ssd{size}",
        table=lambda num_outputs: layer_table(size, num_outputs),
        class_head_bias="bbox_head.cls_convs.0.0.bias",
        boxes_first=4,
        normalization="l2",
        size=size,
        published_outputs=(len(COCO80_CLASSES) if coco else len(VOC_CLASSES)) + 1,
    )


#: The four mmdetection sources (`basesize_ratio_range` of each config).
SOURCES = (
    _source(300, "coco", (0.15, 0.9)),
    _source(512, "coco", (0.1, 0.9)),
    _source(300, "voc", (0.2, 0.9)),
    _source(512, "voc", (0.15, 0.9)),
)
