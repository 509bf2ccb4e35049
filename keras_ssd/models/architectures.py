"""The backbones an `SSD` model can be built on, by name."""

import dataclasses
from typing import Callable

from keras_ssd.config import SSDConfig
from keras_ssd.models import mobilenet_v2, tiny, vgg16


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How to build one SSD variant.

    Attributes:
        name: registry name (stored in the saved model's config).
        preprocessing: `ImagePreprocessing` mode the backbone expects.
        default_normalization: normalisation of the first source map.
        build_features: `(x, normalization, regularizer) -> [(name, map)]`.
        load_weights: `(model, weights) -> None`, for `backbone_weights`
            (`"imagenet"` or a file path); `None` if there are no pretrained
            weights.
        default_config: `(num_classes, class_names) -> SSDConfig`.
    """

    name: str
    preprocessing: str
    default_normalization: str
    build_features: Callable
    load_weights: Callable
    default_config: Callable


ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("ssd300_vgg16", "caffe", "l2", vgg16.ssd300_vgg16_features,
                     vgg16.load_vgg16_weights, SSDConfig.ssd300),
        Architecture("ssd512_vgg16", "caffe", "l2", vgg16.ssd512_vgg16_features,
                     vgg16.load_vgg16_weights, SSDConfig.ssd512),
        Architecture("ssd_mobilenet_v2", "tf", "none", mobilenet_v2.mobilenet_v2_features,
                     mobilenet_v2.load_mobilenet_v2_weights,
                     mobilenet_v2.mobilenet_v2_config),
        Architecture("ssd_tiny", "tf", "none", tiny.tiny_features, None,
                     SSDConfig.tiny),
    )
}


def get_architecture(name):
    """The `Architecture` called `name`; `ValueError` listing the known ones."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"unknown SSD architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[name]
