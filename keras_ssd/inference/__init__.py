"""Inference: one path from images to detections in pixels.

- `detector.py`: `Detector` (decoder discovery, speed-ups, preprocessing,
  batches, boxes back to pixels), `get_detector` (its per-model cache),
  `split_detector`, and the output vocabulary (`OUTPUT_KEYS`,
  `DETECTION_KEYS`, `Detections`; see docs/outputs.md).
- `model.py`: `inference_model` (an SSD plus its decoder as one model) and
  `get_config_from_model`.
- `predict.py`: `predict_image` and `predict_images`.
"""

from keras_ssd.inference.detector import (
    DETECTION_KEYS,
    OUTPUT_KEYS,
    Detections,
    Detector,
    get_detector,
    split_detector,
)
from keras_ssd.inference.model import get_config_from_model, inference_model, iter_layers
from keras_ssd.inference.predict import predict_image, predict_images

__all__ = [
    "DETECTION_KEYS",
    "Detections",
    "Detector",
    "OUTPUT_KEYS",
    "get_config_from_model",
    "get_detector",
    "inference_model",
    "iter_layers",
    "predict_image",
    "predict_images",
    "split_detector",
]
