"""lufficc/SSD (`vgg_ssd300_voc0712.pth`, release 1.2, VOC07 test mAP 77.7):
state-dict names and how its code runs it.

The checkpoint is `{"model": state_dict, "optimizer": ..., "scheduler":
..., "iteration": ...}`; `keras_ssd.pth.state_dict` finds the `"model"`
entry. Names (`ssd/modeling/backbone/vgg.py`, `box_head/box_predictor.py`):
amdegroot's layer indices under `backbone.vgg.<i>`, `backbone.extras.<i>`,
the scale `backbone.l2_norm.weight`, and the heads
`box_head.predictor.reg_headers.<i>` / `cls_headers.<i>`.

Running it (`ssd/config/defaults.py`, `modeling/anchors/prior_box.py`,
`box_head/inference.py`): the Caffe priors with all of `(cx, cy, w, h)`
clamped to [0, 1] (`clip="cxcywh"`); PIL RGB images minus `PIXEL_MEAN =
(123, 117, 104)`, no scaling; variances 0.1 / 0.2; no box clipping;
softmax; scores > 0.01 over all classes, batched NMS 0.45 (no limit per
class), the best 100 per image.
"""

from keras_ssd import presets
from keras_ssd.models.convert import amdegroot
from keras_ssd.classes import VOC_CLASSES
from keras_ssd.models.convert.common import CAFFE_SSD300_GEOMETRY, Source
from keras_ssd.models.convert.layer_table import LayerTableSource

#: The `nn.ModuleList`s of the box and class heads of every lufficc network
#: (`box_predictor.py`): entry `i` predicts on map `i`.
LOC_HEADS = "box_head.predictor.reg_headers"
CONF_HEADS = "box_head.predictor.cls_headers"


def heads(num_outputs):
    """`(kind, head list, outputs per prior)` of the box then the class heads,
    in the order the layer tables list them."""
    return (("loc", LOC_HEADS, 4), ("conf", CONF_HEADS, num_outputs))


def running(name):
    """How lufficc's code runs its network `name`, as `Source` fields: PIL
    RGB minus `PIXEL_MEAN` (`preprocessing`), the decode settings of its
    checkpoint's preset (`postprocessing`) and the VOC classes."""
    return dict(preprocessing=amdegroot.VOC_PORT_PREPROCESSING,
                postprocessing=presets.for_source(name).decode, class_names=VOC_CLASSES)


def layer_table_source(name, **fields):
    """The `LayerTableSource` of lufficc's network `name` (SSD512,
    MobileNetV2 SSDLite320): `running(name)`, no `keys` (its `table` names
    the tensors), and the network's own `fields`."""
    return LayerTableSource(name=name, keys=None, **running(name), **fields)


def keys(layer, kind):
    """lufficc's state-dict keys of keras-ssd SSD300 layer `layer`."""
    return amdegroot.keys(layer, kind, vgg="backbone.vgg", extras="backbone.extras",
                          loc=LOC_HEADS, conf=CONF_HEADS, scale="backbone.l2_norm.weight")


SOURCE = Source(
    name="lufficc",
    description="lufficc/SSD VGG16 SSD300 (vgg_ssd300_voc0712.pth, VOC07 test mAP 77.7)",
    geometry=dict(CAFFE_SSD300_GEOMETRY, clip="cxcywh"),
    **running("lufficc"),
    keys=keys,
    # not `backbone.l2_norm.weight`: mmdetection's SSDs before 2.14 have it too
    marker=f"{CONF_HEADS}.0.bias",
    absent="backbone.extras.9.weight",  # lufficc's SSD512 (`lufficc512`)
)
