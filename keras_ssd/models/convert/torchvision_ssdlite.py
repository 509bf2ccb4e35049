"""torchvision's `ssdlite320_mobilenet_v3_large` (weights `COCO_V1`,
`ssdlite320_mobilenet_v3_large_coco-a79551df.pth`): state-dict names and how
torchvision runs it.

Names (`torchvision/models/detection/ssdlite.py`,
`SSDLiteFeatureExtractorMobileNet`): the MobileNetV3 `features` are cut at
the expansion layer of the 13th bottleneck into two `nn.Sequential`s:
`backbone.features.0.<i>` holds the stem (`.0`), bottlenecks 1-12
(`.<i>.block.<j>`) and, as `.13`, the 13th block's expansion layer;
`backbone.features.1.0` the rest of the 13th block (depthwise `.0`,
squeeze-excite `.2`, projection `.3`: the slice keeps the names), `.1` and `.2` bottlenecks 14 and 15,
`.3` the last 1x1 convolution. In a bottleneck, `block.<j>` counts the
expansion (when there is one), the depthwise, the squeeze-excite (`fc1`,
`fc2`) and the projection. A `Conv2dNormActivation` holds its convolution
at `.0` and its batch norm at `.1`. The extra blocks are
`backbone.extra.<i>.<0|1|2>`; the heads
`head.regression_head.module_list.<i>` and
`head.classification_head.module_list.<i>`, each a depthwise
`Conv2dNormActivation` (`.0`) and a 1x1 convolution with bias (`.1`).

Running it (`ssdlite.py`, `ssd.py`, `anchor_utils.py`, `_utils.py`):
`DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)` with
widths and heights clipped to [0, 1] (the `ssdlite320` geometry of
`keras_ssd.presets`); input `(x / 255 - 0.5) / 0.5`, i.e. [-1, 1];
`BoxCoder(weights=(10, 10, 5, 5))` with the log-scales capped at
`log(1000 / 16)`; boxes clipped to the image; softmax; per class scores >
0.001, the best 300, NMS 0.55; the best 300 per image. 91 outputs:
background and COCO category ids 1..90.
"""

from keras_ssd import presets
from keras_ssd.models import mobilenet_v3
from keras_ssd.models.convert.common import (
    COCO_CLASS_NAMES, COCO_CONFIG_CATEGORY_IDS,
)
from keras_ssd.models.convert.layer_table import LayerTableSource, bn_keys

#: The keras-ssd source maps, in head order, with their channels.
SSDLITE_SOURCES = (("block13_expand", 672), ("last_conv", mobilenet_v3.LAST_FILTERS)) + \
    tuple((f"extra{j}", c) for j, c in enumerate(mobilenet_v3.SSDLITE_EXTRAS, start=1))
#: Priors per cell of every map (ratios {2, 3}).
BOXES_PER_CELL = 6


def _conv_bn(layer, bn_layer, prefix, cin, cout, k):
    return [(layer, "conv", [(f"{prefix}.0.weight", (cout, cin, k, k))]),
            (bn_layer, "bn", bn_keys(f"{prefix}.1", cout))]


def _dw_bn(layer, prefix, channels, k):
    return [(layer, "dw", [(f"{prefix}.0.weight", (channels, 1, k, k))]),
            (f"{layer}_bn", "bn", bn_keys(f"{prefix}.1", channels))]


def layer_table(num_outputs):
    """Every keras-ssd layer with weights and its torchvision tensors.

    Returns:
        list of `(keras layer, kind, [(torch key, torch shape)])`; kind
        `"conv"` (weight OIHW, then the bias if listed), `"dw"` (a
        depthwise weight `(C, 1, k, k)`) or `"bn"` (weight, bias, running
        mean and variance; torch's `num_batches_tracked` is not used).
    """
    table = _conv_bn("stem_conv", "stem_bn", "backbone.features.0.0", 3,
                     mobilenet_v3.STEM_FILTERS, 3)
    for i, cin, k, expanded, out, se, _, _, expand, _ in mobilenet_v3.block_layout():
        if i < mobilenet_v3.C4_BLOCK:
            prefix, j = f"backbone.features.0.{i}.block", 0
        elif i == mobilenet_v3.C4_BLOCK:
            # split at the expansion layer (SSDLiteFeatureExtractorMobileNet);
            # the slice `block[1:]` keeps its modules' names (1, 2, 3)
            table += _conv_bn(f"block{i}_expand", f"block{i}_expand_bn",
                              f"backbone.features.0.{i}", cin, expanded, 1)
            prefix, j, expand = "backbone.features.1.0", 1, False
        else:
            prefix, j = f"backbone.features.1.{i - mobilenet_v3.C4_BLOCK}.block", 0
        if expand:
            table += _conv_bn(f"block{i}_expand", f"block{i}_expand_bn", f"{prefix}.{j}",
                              cin, expanded, 1)
            j += 1
        table += _dw_bn(f"block{i}_dw", f"{prefix}.{j}", expanded, k)
        j += 1
        if se:
            table.append((f"block{i}_se_reduce", "conv",
                          [(f"{prefix}.{j}.fc1.weight", (se, expanded, 1, 1)),
                           (f"{prefix}.{j}.fc1.bias", (se,))]))
            table.append((f"block{i}_se_expand", "conv",
                          [(f"{prefix}.{j}.fc2.weight", (expanded, se, 1, 1)),
                           (f"{prefix}.{j}.fc2.bias", (expanded,))]))
            j += 1
        table += _conv_bn(f"block{i}_project", f"block{i}_project_bn", f"{prefix}.{j}",
                          expanded, out, 1)
        cin = out
    blocks = mobilenet_v3.MOBILENET_V3_LARGE_BLOCKS
    table += _conv_bn("last_conv", "last_bn",
                      f"backbone.features.1.{len(blocks) - mobilenet_v3.C4_BLOCK + 1}",
                      blocks[-1][2], mobilenet_v3.LAST_FILTERS, 1)
    channels = mobilenet_v3.LAST_FILTERS
    for j, out in enumerate(mobilenet_v3.SSDLITE_EXTRAS, start=1):
        prefix = f"backbone.extra.{j - 1}"
        table += _conv_bn(f"extra{j}_reduce", f"extra{j}_reduce_bn", f"{prefix}.0",
                          channels, out // 2, 1)
        table += _dw_bn(f"extra{j}_dw", f"{prefix}.1", out // 2, 3)
        table += _conv_bn(f"extra{j}", f"extra{j}_bn", f"{prefix}.2", out // 2, out, 1)
        channels = out
    for kind, head, width in (("loc", "regression_head", 4),
                              ("conf", "classification_head", num_outputs)):
        for i, (name, channels) in enumerate(SSDLITE_SOURCES):
            prefix = f"head.{head}.module_list.{i}"
            table += _dw_bn(f"{name}_mbox_{kind}_dw", f"{prefix}.0", channels, 3)
            cout = BOXES_PER_CELL * width
            table.append((f"{name}_mbox_{kind}", "conv",
                          [(f"{prefix}.1.weight", (cout, channels, 1, 1)),
                           (f"{prefix}.1.bias", (cout,))]))
    return table


SOURCE = LayerTableSource(
    name="torchvision_ssdlite",
    description="torchvision ssdlite320_mobilenet_v3_large, COCO_V1 weights "
                "(ssdlite320_mobilenet_v3_large_coco-a79551df.pth, COCO box AP 21.3)",
    geometry=dict(presets.get("ssdlite320").geometry, variances=[0.1, 0.1, 0.2, 0.2]),
    preprocessing=dict(mode="custom", channel_order="rgb", scale=1.0 / 255.0,
                       mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    postprocessing=presets.for_source("torchvision_ssdlite").decode,
    class_names=COCO_CLASS_NAMES,
    category_ids=COCO_CONFIG_CATEGORY_IDS,
    keys=None,
    marker="backbone.features.1.0.2.fc1.weight",
    architecture="ssdlite320",
    table=layer_table,
    class_head_bias="head.classification_head.module_list.0.1.bias",
    boxes_first=BOXES_PER_CELL,
)
