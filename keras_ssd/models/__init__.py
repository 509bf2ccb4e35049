"""SSD models: the serializable `SSD` class and the builders."""

from keras_ssd.models.ssd import SSD
from keras_ssd.models.builders import (
    MODEL_BUILDERS,
    SSD300,
    SSD512,
    SSDLite320,
    SSDLite320MobileNetV2,
    SSDMobileNetV2,
    SSDTiny,
    build_model,
    get_builder,
)
from keras_ssd.models.mobilenet_v2 import mobilenet_v2_config
from keras_ssd.models.vgg16 import decimate_fc6, decimate_fc7

__all__ = [
    "SSD",
    "SSD300",
    "SSD512",
    "SSDTiny",
    "SSDMobileNetV2",
    "SSDLite320",
    "SSDLite320MobileNetV2",
    "build_model",
    "get_builder",
    "MODEL_BUILDERS",
    "mobilenet_v2_config",
    "decimate_fc6",
    "decimate_fc7",
]
