"""lufficc/SSD's MobileNetV2 SSDLite320 (`mobilenet_v2_ssd320_voc0712_v2.pth`,
release 1.2, VOC07 test mAP 68.9): state-dict names and how its code runs it.

Names (`ssd/modeling/backbone/mobilenet.py`, `ssd/layers/separable_conv.py`,
`ssd/modeling/box_head/box_predictor.py`): the stem is
`backbone.features.0` (a `ConvBNReLU`: convolution `.0`, batch norm `.1`),
block `i` is `backbone.features.<i>.conv` (an `nn.Sequential`: with an
expansion `.0` and the depthwise `.1` are `ConvBNReLU`s, the projection
convolution `.2` and its batch norm `.3`; block 1, ratio 1, has no
expansion: depthwise `.0`, projection `.1`, batch norm `.2`), the last 1x1
convolution `backbone.features.18`, the extra blocks
`backbone.extras.<j>.conv` (laid out as the blocks). The heads are
`box_head.predictor.reg_headers.<i>` / `cls_headers.<i>`: a
`SeparableConv2d` (`.conv.0` depthwise with bias, `.conv.1` batch norm,
`.conv.3` the 1x1 convolution with bias) on maps 0-4, a plain 1x1
convolution on map 5.

Running it (`configs/mobilenet_v2_ssd320_voc0712.yaml`,
`ssd/config/defaults.py`, `modeling/anchors/prior_box.py`,
`box_head/inference.py`): priors of the `ssdlite320_mobilenet_v2` geometry
(steps 16, 32, 64, 107, 160, 320, the strides of the `_v2` file; all of
`(cx, cy, w, h)` clamped to [0, 1]); PIL RGB images minus `PIXEL_MEAN =
(123, 117, 104)`, no scaling; variances 0.1 / 0.2; softmax; scores > 0.01
over all classes, NMS 0.45 per class (no limit per class), the best 100 per
image; boxes not clipped.
"""

from keras_ssd import presets
from keras_ssd.models import mobilenet_v2_ssdlite as net
from keras_ssd.models.convert import lufficc
from keras_ssd.models.convert.layer_table import bn_keys

#: Priors per cell of every map (ratios {2, 3}).
BOXES_PER_CELL = 6


def _conv_bn(layer, bn_layer, conv_key, bn_prefix, cin, cout):
    return [(layer, "conv", [(conv_key, (cout, cin, 1, 1))]),
            (bn_layer, "bn", bn_keys(bn_prefix, cout))]


def _inverted_residual(name, prefix, cin, hidden, out, expand):
    """The layers of an `InvertedResidual` at `prefix` (`....conv`)."""
    table, j = [], 0
    if expand:
        table += _conv_bn(f"{name}_expand", f"{name}_expand_bn", f"{prefix}.0.0.weight",
                          f"{prefix}.0.1", cin, hidden)
        j = 1
    table.append((f"{name}_dw", "dw", [(f"{prefix}.{j}.0.weight", (hidden, 1, 3, 3))]))
    table.append((f"{name}_dw_bn", "bn", bn_keys(f"{prefix}.{j}.1", hidden)))
    table += _conv_bn(f"{name}_project", f"{name}_project_bn", f"{prefix}.{j + 1}.weight",
                      f"{prefix}.{j + 2}", hidden, out)
    return table


def layer_table(num_outputs):
    """Every keras-ssd layer with weights and its lufficc tensors (see
    `keras_ssd.models.convert.layer_table`)."""
    table = [("stem_conv", "conv", [("backbone.features.0.0.weight",
                                     (net.STEM_FILTERS, 3, 3, 3))]),
             ("stem_bn", "bn", bn_keys("backbone.features.0.1", net.STEM_FILTERS))]
    blocks = net.block_layout()
    for i, cin, hidden, out, _, expand, _ in blocks:
        table += _inverted_residual(f"block{i}", f"backbone.features.{i}.conv", cin, hidden,
                                    out, expand)
    last = len(blocks) + 1
    table += _conv_bn("last_conv", "last_bn", f"backbone.features.{last}.0.weight",
                      f"backbone.features.{last}.1", blocks[-1][3], net.LAST_FILTERS)
    for j, cin, hidden, out in net.extra_layout():
        table += _inverted_residual(f"extra{j}", f"backbone.extras.{j - 1}.conv", cin,
                                    hidden, out, True)
    sources = net.source_channels()
    for kind, head, width in lufficc.heads(num_outputs):
        for level, (name, channels) in enumerate(sources):
            prefix = f"{head}.{level}"
            cout = BOXES_PER_CELL * width
            if level == len(sources) - 1:  # the last map: a plain 1x1 convolution
                table.append((f"{name}_mbox_{kind}", "conv",
                              [(f"{prefix}.weight", (cout, channels, 1, 1)),
                               (f"{prefix}.bias", (cout,))]))
                continue
            table.append((f"{name}_mbox_{kind}_dw", "dw",
                          [(f"{prefix}.conv.0.weight", (channels, 1, 3, 3)),
                           (f"{prefix}.conv.0.bias", (channels,))]))
            table.append((f"{name}_mbox_{kind}_dw_bn", "bn",
                          bn_keys(f"{prefix}.conv.1", channels)))
            table.append((f"{name}_mbox_{kind}", "conv",
                          [(f"{prefix}.conv.3.weight", (cout, channels, 1, 1)),
                           (f"{prefix}.conv.3.bias", (cout,))]))
    return table


#: The first class head's last bias: the marker of this source and its class count.
_CLASS_HEAD_BIAS = f"{lufficc.CONF_HEADS}.0.conv.3.bias"

SOURCE = lufficc.layer_table_source(
    "lufficc_mobilenet_v2",
    description="lufficc/SSD MobileNetV2 SSDLite320 (mobilenet_v2_ssd320_voc0712_v2.pth, "
                "VOC07 test mAP 68.9)",
    geometry=dict(presets.get("ssdlite320_mobilenet_v2").geometry,
                  variances=[0.1, 0.1, 0.2, 0.2]),
    marker=_CLASS_HEAD_BIAS,
    architecture="ssdlite320_mobilenet_v2",
    table=layer_table,
    class_head_bias=_CLASS_HEAD_BIAS,
    boxes_first=BOXES_PER_CELL,
)
