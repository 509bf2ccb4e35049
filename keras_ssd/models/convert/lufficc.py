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


def keys(layer, kind):
    """lufficc's state-dict keys of keras-ssd SSD300 layer `layer`."""
    return amdegroot.keys(layer, kind, vgg="backbone.vgg", extras="backbone.extras",
                          loc="box_head.predictor.reg_headers",
                          conf="box_head.predictor.cls_headers",
                          scale="backbone.l2_norm.weight")


SOURCE = Source(
    name="lufficc",
    description="lufficc/SSD VGG16 SSD300 (vgg_ssd300_voc0712.pth, VOC07 test mAP 77.7)",
    geometry=dict(CAFFE_SSD300_GEOMETRY, clip="cxcywh"),
    preprocessing=amdegroot.VOC_PORT_PREPROCESSING,
    postprocessing=presets.for_source("lufficc").decode,
    class_names=VOC_CLASSES,
    keys=keys,
    marker="backbone.l2_norm.weight",
    absent="backbone.extras.9.weight",  # lufficc's SSD512 (`lufficc512`)
)
