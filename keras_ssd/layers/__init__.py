"""Serializable Keras layers of the SSD graph."""

from keras_ssd.layers.anchor_boxes import AnchorBoxes
from keras_ssd.layers.decode_detections import DecodeDetections
from keras_ssd.layers.l2_normalization import L2Normalization
from keras_ssd.layers.preprocessing import CaffePreprocessing, ImagePreprocessing

__all__ = [
    "AnchorBoxes",
    "CaffePreprocessing",
    "DecodeDetections",
    "ImagePreprocessing",
    "L2Normalization",
]
