"""The backbone networks the variants of `keras_ssd.presets` are built on.

A backbone turns the preprocessed image into the list of source feature
maps the SSD heads read. Variants name their backbone by key
(`Preset.backbone`); several variants may share one.
"""

import dataclasses
from typing import Callable, Optional

from keras_ssd.models import mobilenet_v2, mobilenet_v2_ssdlite, mobilenet_v3, tiny, vgg16


@dataclasses.dataclass(frozen=True)
class Backbone:
    """How to build one backbone and load its pretrained weights.

    Attributes:
        build_features: `(x, normalization, regularizer) -> [(name, map)]`.
        load_weights: `(model, weights) -> None` for `backbone_weights`
            (`"imagenet"` or a file path); `None` without pretrained weights.
        build_heads: `(sources, config, regularizer) -> predictions`, the
            heads this network is published with; `None`: the SSD paper's
            3x3 convolutions (`keras_ssd.models.heads.build_heads`).
        freeze: `freeze=` mode -> the names of the layers it freezes
            (`keras_ssd.models.pretrained.freeze_layers`); `None`: the VGG16
            modes of `keras_ssd.models.pretrained.FREEZE_MODES`.
    """

    build_features: Callable
    load_weights: Optional[Callable] = None
    build_heads: Optional[Callable] = None
    freeze: Optional[dict] = None


BACKBONES = {
    "vgg16_300": Backbone(vgg16.ssd300_vgg16_features, vgg16.load_vgg16_weights),
    "vgg16_512": Backbone(vgg16.ssd512_vgg16_features, vgg16.load_vgg16_weights),
    "mobilenet_v2": Backbone(mobilenet_v2.mobilenet_v2_features,
                             mobilenet_v2.load_mobilenet_v2_weights),
    "tiny": Backbone(tiny.tiny_features),
    "mobilenet_v3_large_ssdlite": Backbone(
        mobilenet_v3.mobilenet_v3_ssdlite_features, build_heads=mobilenet_v3.ssdlite_heads,
        freeze={"backbone": tuple(mobilenet_v3.backbone_layer_names())}),
    "mobilenet_v2_ssdlite": Backbone(
        mobilenet_v2_ssdlite.mobilenet_v2_ssdlite_features,
        build_heads=mobilenet_v2_ssdlite.ssdlite_heads,
        freeze={"backbone": tuple(mobilenet_v2_ssdlite.backbone_layer_names())}),
}


def get_backbone(key):
    """The `Backbone` called `key` (a `Preset.backbone`)."""
    if key not in BACKBONES:
        raise ValueError(f"unknown SSD backbone {key!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[key]
