"""amdegroot/ssd.pytorch (`ssd300_mAP_77.43_v2.pth`, VOC07 test mAP 77.4):
state-dict names and how its code runs it.

Names (`ssd.py`): the VGG16 layers are one `nn.ModuleList` `vgg`, convs at
`vgg.{0,2,5,7,10,12,14,17,19,21,24,26,28}` (conv1_1..conv5_3, ReLUs and
pools in between), fc6 `vgg.31`, fc7 `vgg.33`; the L2Norm scale
`L2Norm.weight`; the extra layers `extras.0` .. `extras.7` (1x1, 3x3 in
turn); the heads `loc.<i>` and `conf.<i>`.

Running it (`layers/functions/prior_box.py`, `detection.py`,
`data/config.py`, `eval.py`): the Caffe priors (min sizes 30, 60, 111, 162,
213, 264; max 60 .. 315) with all of `(cx, cy, w, h)` clamped to [0, 1]
(`clip="cxcywh"`); images read by OpenCV (BGR), `(104, 117, 123)`
subtracted, then turned to RGB: RGB minus `(123, 117, 104)`, no scaling;
variances 0.1 / 0.2; no box clipping; softmax; per class scores > 0.01, the
best 200 into NMS 0.45, up to 200 kept per class and no limit per image
(its `Detect` sorts the detections of all classes but never cuts them).
"""

from keras_ssd import presets
from keras_ssd.classes import VOC_CLASSES
from keras_ssd.models.convert.common import CAFFE_SSD300_GEOMETRY, SSD300_SOURCES, Source

_VGG = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
        "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
        "conv5_1": 24, "conv5_2": 26, "conv5_3": 28, "fc6": 31, "fc7": 33}
_EXTRAS = {f"conv{6 + i // 2}_{1 + i % 2}": i for i in range(8)}
_HEADS = {name: i for i, (name, _) in enumerate(SSD300_SOURCES)}


def keys(layer, kind, vgg="vgg", extras="extras", loc="loc", conf="conf",
         scale="L2Norm.weight"):
    """amdegroot's state-dict keys of keras-ssd SSD300 layer `layer` (the
    keyword arguments let lufficc/SSD reuse the same indices)."""
    if kind == "scale":
        return [scale]
    if layer in _VGG:
        prefix = f"{vgg}.{_VGG[layer]}"
    elif layer in _EXTRAS:
        prefix = f"{extras}.{_EXTRAS[layer]}"
    elif layer.endswith("_mbox_loc"):
        prefix = f"{loc}.{_HEADS[layer[:-len('_mbox_loc')]]}"
    elif layer.endswith("_mbox_conf"):
        prefix = f"{conf}.{_HEADS[layer[:-len('_mbox_conf')]]}"
    else:  # pragma: no cover - the layer table is fixed
        raise KeyError(layer)
    return [f"{prefix}.weight", f"{prefix}.bias"]


#: RGB minus the VOC mean (123, 117, 104), no scaling.
VOC_PORT_PREPROCESSING = dict(mode="custom", channel_order="rgb", scale=1.0,
                              mean=[123.0, 117.0, 104.0], std=[1.0, 1.0, 1.0])

SOURCE = Source(
    name="amdegroot",
    description="amdegroot/ssd.pytorch SSD300 (ssd300_mAP_77.43_v2.pth, VOC07 test mAP 77.4)",
    geometry=dict(CAFFE_SSD300_GEOMETRY, clip="cxcywh"),
    preprocessing=VOC_PORT_PREPROCESSING,
    postprocessing=presets.for_source("amdegroot").decode,
    class_names=VOC_CLASSES,
    keys=keys,
    marker="L2Norm.weight",
    top_k_per_class=200,
)
