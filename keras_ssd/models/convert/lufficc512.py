"""lufficc/SSD's VGG16 SSD512 (`vgg_ssd512_voc0712.pth`, release 1.2, VOC07
test mAP 80.7): state-dict names and how its code runs it.

Names (`ssd/modeling/backbone/vgg.py` with `INPUT.IMAGE_SIZE: 512`): the
VGG16 is its SSD300's (`backbone.vgg.<i>`, amdegroot's indices); the extras
(`extras_base['512']` and the two layers `add_extras` appends for 512) are
ten convolutions `backbone.extras.0` .. `.9`: 1x1 then 3x3 stride 2 pad 1
four times, then 1x1 and 4x4 stride 1 pad 1 (maps 64, 32, 16, 8, 4, 2,
1): keras-ssd's `ssd512` network, layer for layer. The scale is
`backbone.l2_norm.weight`, the heads `box_head.predictor.reg_headers.<i>` /
`cls_headers.<i>` (3x3, 4, 6, 6, 6, 6, 4, 4 priors per cell).

Running it (`configs/vgg_ssd512_voc0712.yaml`, `ssd/config/defaults.py`,
`modeling/anchors/prior_box.py`, `box_head/inference.py`): the Caffe
SSD512 priors but with the last max size 537.65 (the Caffe model's 537.6
elsewhere), all of `(cx, cy, w, h)` clamped to [0, 1]; RGB minus (123, 117,
104); variances 0.1 / 0.2; softmax; scores > 0.01 over all classes, NMS
0.45 per class (no limit per class), the best 100 per image; boxes not
clipped.
"""

from keras_ssd import presets
from keras_ssd.models.convert import lufficc
from keras_ssd.models.vgg16 import SSD512_EXTRAS, VGG16_BLOCKS

_VGG_INDEX = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
              "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
              "conv5_1": 24, "conv5_2": 26, "conv5_3": 28, "fc6": 31, "fc7": 33}
#: The maps feeding the heads, their channels and priors per cell.
SSD512_SOURCES = (("conv4_3_norm", 512, 4), ("fc7", 1024, 6)) + tuple(
    (f"{name}_2", out, 6 if i < 3 else 4) for i, (name, _, out, _, _, _) in
    enumerate(SSD512_EXTRAS))


def _conv(layer, prefix, cin, cout, k):
    return (layer, "conv", [(f"{prefix}.weight", (cout, cin, k, k)),
                            (f"{prefix}.bias", (cout,))])


def layer_table(num_outputs):
    """keras-ssd SSD512 layers and lufficc's tensors (see `layer_table`)."""
    table = []
    channels = 3
    for block, (filters, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            name = f"conv{block}_{i}"
            table.append(_conv(name, f"backbone.vgg.{_VGG_INDEX[name]}", channels, filters,
                               3))
            channels = filters
    table.append(_conv("fc6", "backbone.vgg.31", 512, 1024, 3))
    table.append(_conv("fc7", "backbone.vgg.33", 1024, 1024, 1))
    table.append(("conv4_3_norm", "scale", [("backbone.l2_norm.weight", (512,))]))
    channels = 1024
    for i, (name, mid, out, kernel, _, _) in enumerate(SSD512_EXTRAS):
        table.append(_conv(f"{name}_1", f"backbone.extras.{2 * i}", channels, mid, 1))
        table.append(_conv(f"{name}_2", f"backbone.extras.{2 * i + 1}", mid, out, kernel))
        channels = out
    for kind, head, width in lufficc.heads(num_outputs):
        for i, (name, channels, boxes) in enumerate(SSD512_SOURCES):
            table.append(_conv(f"{name}_mbox_{kind}", f"{head}.{i}", channels,
                               boxes * width, 3))
    return table


#: lufficc's SSD512 priors: the registry's ssd512 geometry with its own last
#: max size (537.65, `configs/vgg_ssd512_voc0712.yaml`) and the clamp.
GEOMETRY = dict(presets.get("ssd512").geometry, clip="cxcywh",
                variances=[0.1, 0.1, 0.2, 0.2])
GEOMETRY["max_sizes"] = list(GEOMETRY["max_sizes"][:-1]) + [537.65]

SOURCE = lufficc.layer_table_source(
    "lufficc512",
    description="lufficc/SSD VGG16 SSD512 (vgg_ssd512_voc0712.pth, VOC07 test mAP 80.7)",
    geometry=GEOMETRY,
    marker="backbone.extras.9.weight",
    architecture="ssd512",
    table=layer_table,
    class_head_bias=f"{lufficc.CONF_HEADS}.0.bias",
    boxes_first=4,
    normalization="l2",
)
