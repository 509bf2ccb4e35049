"""Inference: one path from images to detections in pixels.

- `model.py`: `inference_model` (an SSD plus its decoder as one model) and
  `get_config_from_model`.
- `predict.py`: `predict_image` and `predict_images`.
"""

from keras_ssd.inference.model import get_config_from_model, inference_model, iter_layers
from keras_ssd.inference.predict import get_detector, predict_image, predict_images

__all__ = [
    "get_config_from_model",
    "get_detector",
    "inference_model",
    "iter_layers",
    "predict_image",
    "predict_images",
]
