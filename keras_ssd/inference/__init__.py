"""Inference: images in, detections in each image's pixels out.

The model decodes (`SSD.predict`, with its `prediction_decoder`); this
package renders images for it and maps the boxes back:

- `predict.py`: `predict_image` and `predict_images`, and the steps they,
  `evaluate` and the mAP callback share (`decoding_options`,
  `detect_batch`, `detections_in_pixels`).
- `pixels.py`: `load_for_model` (images rendered as training renders them),
  `to_pixels` and the output vocabulary (`OUTPUT_KEYS`, `DETECTION_KEYS`;
  docs/outputs.md).
"""

from keras_ssd.inference.pixels import (
    DETECTION_KEYS,
    OUTPUT_KEYS,
    load_for_model,
    to_pixels,
)
from keras_ssd.inference.predict import predict_image, predict_images

__all__ = [
    "DETECTION_KEYS",
    "OUTPUT_KEYS",
    "load_for_model",
    "predict_image",
    "predict_images",
    "to_pixels",
]
