"""keras-ssd: the SSD (Single Shot MultiBox Detector) for Keras 3.

Importing the package registers every keras-ssd layer, model, loss and
schedule with Keras, so `keras.saving.load_model("model.keras")` works after
`import keras_ssd` (`keras_ssd.load_model` does the same explicitly).

The `keras-ssd` command sets `KERAS_SSD_LAZY_IMPORTS=1` before importing the
package: the Keras-dependent names are then imported on first use, so that
`keras-ssd --help` and argument errors answer at once, without loading (and
hearing from) TensorFlow.
"""

import importlib as _importlib
import os as _os

from keras_ssd.version import __version__
from keras_ssd.config import SSDConfig
from keras_ssd.anchors import generate_anchors
from keras_ssd.encoding import TargetEncoder, encode_targets
from keras_ssd import boxes

# Public name -> module that defines it (the Keras-dependent part of the API).
_KERAS_API = {
    "layers": "keras_ssd.layers",
    "AnchorBoxes": "keras_ssd.layers",
    "CaffePreprocessing": "keras_ssd.layers",
    "DecodeDetections": "keras_ssd.layers",
    "ImagePreprocessing": "keras_ssd.layers",
    "L2Normalization": "keras_ssd.layers",
    "WinogradConv2D": "keras_ssd.layers",
    "SSDLoss": "keras_ssd.losses",
    "models": "keras_ssd.models",
    "SSD": "keras_ssd.models",
    "SSD300": "keras_ssd.models",
    "SSD512": "keras_ssd.models",
    "SSDMobileNetV2": "keras_ssd.models",
    "SSDTiny": "keras_ssd.models",
    "build_model": "keras_ssd.models",
    "inference_model": "keras_ssd.inference",
    "get_config_from_model": "keras_ssd.inference",
    "load_model": "keras_ssd.saving",
    "callbacks": "keras_ssd.callbacks",
    "evaluation": "keras_ssd.evaluation",
    "coco_map": "keras_ssd.evaluation",
    "evaluate": "keras_ssd.evaluation",
    "voc_map": "keras_ssd.evaluation",
    "WarmupPiecewiseDecay": "keras_ssd.schedules",
    "TrainingCheckpoint": "keras_ssd.checkpoints",
    "resume": "keras_ssd.checkpoints",
    "data": "keras_ssd.data",
    "COCODataset": "keras_ssd.data",
    "DataError": "keras_ssd.data",
    "SSDAugmentation": "keras_ssd.data",
    "VOC_CLASSES": "keras_ssd.data",
    "VOCDataset": "keras_ssd.data",
    "make_synthetic_voc": "keras_ssd.data",
    "SSDSequence": "keras_ssd.data.sequence",
    "runtime": "keras_ssd.runtime",
    "predict_image": "keras_ssd.predict",
    "predict_images": "keras_ssd.predict",
    "draw_detections": "keras_ssd.visualize",
    "train_detector": "keras_ssd.training",
    "run_demo": "keras_ssd.demo",
    "distribute": "keras_ssd.distribute",
    # The function `keras_ssd.export(...)`; the module stays importable as
    # `import keras_ssd.export` / `from keras_ssd.export import ...`.
    "export": "keras_ssd.export",
}


def _resolve(name):
    module_name = _KERAS_API[name]
    module = _importlib.import_module(module_name)
    value = module if module_name == f"keras_ssd.{name}" and name != "export" else getattr(
        module, name
    )
    globals()[name] = value
    return value


def __getattr__(name):
    if name in _KERAS_API:
        return _resolve(name)
    raise AttributeError(f"module 'keras_ssd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_KERAS_API))


if _os.environ.get("KERAS_SSD_LAZY_IMPORTS", "") != "1":
    for _name in _KERAS_API:
        _resolve(_name)
    del _name
