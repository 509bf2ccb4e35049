"""torchvision's `ssd300_vgg16` (weights `COCO_V1`,
`ssd300_vgg16_coco-b556d3b4.pth`): state-dict names and how torchvision
runs it.

Names (`torchvision/models/detection/ssd.py`, `SSDFeatureExtractorVGG`):
conv1_1..conv4_3 are `backbone.features.{0,2,5,7,10,12,14,17,19,21}`; the
first `backbone.extra` block holds pool4, conv5_1..conv5_3 (`.1`, `.3`,
`.5`) and, as `.7`, pool5 + fc6 (`.7.1`) + fc7 (`.7.3`); `backbone.extra.1`
to `.4` are the four extra blocks (`.0` the 1x1, `.2` the 3x3); the L2Norm
scale is `backbone.scale_weight`; the heads are
`head.regression_head.module_list.<i>` and
`head.classification_head.module_list.<i>`.

Running it: priors from `DefaultBoxGenerator(scales=[0.07, 0.15, 0.33, 0.51,
0.69, 0.87, 1.05], steps=[8, 16, 32, 64, 100, 300])`, i.e. min sizes 21, 45,
99, 153, 207, 261 px and max sizes 45 .. 315 px, with only w and h clamped
to [0, 1] (`clip="wh"`); input `(x / 255 - mean) / std` with mean
`(0.48235, 0.45882, 0.40784)` and std `1 / 255` (RGB minus about 123, 117,
104); `BoxCoder(weights=(10, 10, 5, 5))` (variances 0.1, 0.1, 0.2, 0.2)
with the decoded log-scales capped at `log(1000 / 16)`; boxes clipped to
the image; softmax; per class scores > 0.01, the best 400, NMS 0.45; the
best 200 per image. 91 outputs: background and COCO category ids 1..90.
"""

from keras_ssd import presets
from keras_ssd.models.convert.common import (
    COCO_CLASS_NAMES, COCO_CONFIG_CATEGORY_IDS, SSD300_SOURCES, Source,
)

_FEATURES = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
             "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21}
_EXTRA = {"conv5_1": "0.1", "conv5_2": "0.3", "conv5_3": "0.5", "fc6": "0.7.1",
          "fc7": "0.7.3", "conv6_1": "1.0", "conv6_2": "1.2", "conv7_1": "2.0",
          "conv7_2": "2.2", "conv8_1": "3.0", "conv8_2": "3.2", "conv9_1": "4.0",
          "conv9_2": "4.2"}
_HEADS = {name: i for i, (name, _) in enumerate(SSD300_SOURCES)}


def keys(layer, kind):
    """torchvision's state-dict keys of keras-ssd SSD300 layer `layer`."""
    if kind == "scale":
        return ["backbone.scale_weight"]
    if layer in _FEATURES:
        prefix = f"backbone.features.{_FEATURES[layer]}"
    elif layer in _EXTRA:
        prefix = f"backbone.extra.{_EXTRA[layer]}"
    elif layer.endswith("_mbox_loc"):
        prefix = f"head.regression_head.module_list.{_HEADS[layer[:-len('_mbox_loc')]]}"
    elif layer.endswith("_mbox_conf"):
        index = _HEADS[layer[:-len("_mbox_conf")]]
        prefix = f"head.classification_head.module_list.{index}"
    else:  # pragma: no cover - the layer table is fixed
        raise KeyError(layer)
    return [f"{prefix}.weight", f"{prefix}.bias"]


SOURCE = Source(
    name="torchvision",
    description="torchvision ssd300_vgg16, COCO_V1 weights (ssd300_vgg16_coco-b556d3b4.pth, "
                "COCO box AP 25.1)",
    geometry=dict(
        image_size=300,
        feature_map_sizes=[38, 19, 10, 5, 3, 1],
        steps=[8, 16, 32, 64, 100, 300],
        min_sizes=[21, 45, 99, 153, 207, 261],
        max_sizes=[45, 99, 153, 207, 261, 315],
        aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        variances=[0.1, 0.1, 0.2, 0.2],
        clip="wh",
    ),
    preprocessing=dict(mode="custom", channel_order="rgb", scale=1.0 / 255.0,
                       mean=[0.48235, 0.45882, 0.40784], std=[1.0 / 255.0] * 3),
    postprocessing=presets.for_source("torchvision").decode,
    class_names=COCO_CLASS_NAMES,
    category_ids=COCO_CONFIG_CATEGORY_IDS,
    keys=keys,
    marker="backbone.scale_weight",
)
