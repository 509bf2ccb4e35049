"""keras-ssd: the SSD (Single Shot MultiBox Detector) for Keras 3.

Importing the package registers every keras-ssd layer, model, loss and
schedule with Keras, so `keras.saving.load_model("model.keras")` works after
`import keras_ssd` (`keras_ssd.load_model` does the same explicitly).

Started as the command line (`keras-ssd` or `python -m keras_ssd`), or with
`KERAS_SSD_LAZY_IMPORTS=1`, the package imports its Keras-dependent names on
first use instead, so that `keras-ssd --help` and argument errors answer at
once, without loading (and hearing from) TensorFlow.
"""

import importlib as _importlib
import os as _os
import sys as _sys

from keras_ssd.version import __version__
from keras_ssd.config import SSDConfig
from keras_ssd.anchors import generate_anchors
from keras_ssd.targets import TargetEncoder, encode_targets
from keras_ssd import boxes, presets

# Public name -> (module that defines it, attribute or None for the module).
_KERAS_API = {
    "layers": ("keras_ssd.layers", None),
    "AnchorBoxes": ("keras_ssd.layers", "AnchorBoxes"),
    "CaffePreprocessing": ("keras_ssd.layers", "CaffePreprocessing"),
    "DecodeDetections": ("keras_ssd.layers", "DecodeDetections"),
    "ImagePreprocessing": ("keras_ssd.layers", "ImagePreprocessing"),
    "L2Normalization": ("keras_ssd.layers", "L2Normalization"),
    "SSDLoss": ("keras_ssd.losses", "SSDLoss"),
    "models": ("keras_ssd.models", None),
    "SSD": ("keras_ssd.models", "SSD"),
    "SSD300": ("keras_ssd.models", "SSD300"),
    "SSD512": ("keras_ssd.models", "SSD512"),
    "SSDMobileNetV2": ("keras_ssd.models", "SSDMobileNetV2"),
    "SSDLite320": ("keras_ssd.models", "SSDLite320"),
    "SSDLite320MobileNetV2": ("keras_ssd.models", "SSDLite320MobileNetV2"),
    "SSDTiny": ("keras_ssd.models", "SSDTiny"),
    "build_model": ("keras_ssd.models", "build_model"),
    # Pretrained SSD300s: `SSD300.from_preset(name)` (the builders carry
    # `from_preset`), and the converter of a checkpoint file on disk.
    "convert_checkpoint": ("keras_ssd.models.convert", "convert_checkpoint"),
    "pretrained": ("keras_ssd.models.pretrained", None),
    "load_model": ("keras_ssd.saving", "load_model"),
    "data": ("keras_ssd.data", None),
    "COCODataset": ("keras_ssd.data", "COCODataset"),
    "CSVDataset": ("keras_ssd.data", "CSVDataset"),
    "DataError": ("keras_ssd.data", "DataError"),
    "SSDAugmentation": ("keras_ssd.data", "SSDAugmentation"),
    "VOC_CLASSES": ("keras_ssd.data", "VOC_CLASSES"),
    "VOCDataset": ("keras_ssd.data", "VOCDataset"),
    "YOLODataset": ("keras_ssd.data", "YOLODataset"),
    "anchor_fit": ("keras_ssd.data", "anchor_fit"),
    "load_dataset": ("keras_ssd.data", "load_dataset"),
    "make_synthetic_voc": ("keras_ssd.data", "make_synthetic_voc"),
    "SSDSequence": ("keras_ssd.data.sequence", "SSDSequence"),
    "training": ("keras_ssd.training", None),
    "callbacks": ("keras_ssd.training.callbacks", None),
    "distribute": ("keras_ssd.training.distribute", None),
    "train_detector": ("keras_ssd.training.fit", "train_detector"),
    "WarmupPiecewiseDecay": ("keras_ssd.training.schedules", "WarmupPiecewiseDecay"),
    "WarmupCosineDecay": ("keras_ssd.training.schedules", "WarmupCosineDecay"),
    "Recipe": ("keras_ssd.presets", "Recipe"),
    "recipe_for": ("keras_ssd.presets", "recipe_for"),
    "TrainingCheckpoint": ("keras_ssd.training.checkpoints", "TrainingCheckpoint"),
    "resume": ("keras_ssd.training.checkpoints", "resume"),
    "accel": ("keras_ssd.accel", None),
    "runtime": ("keras_ssd.accel.runtime", None),
    "WinogradConv2D": ("keras_ssd.accel.winograd_conv", "WinogradConv2D"),
    "inference": ("keras_ssd.inference", None),
    "predict_image": ("keras_ssd.inference.predict", "predict_image"),
    "predict_images": ("keras_ssd.inference.predict", "predict_images"),
    "evaluation": ("keras_ssd.evaluation", None),
    "coco_map": ("keras_ssd.evaluation", "coco_map"),
    "evaluate": ("keras_ssd.evaluation", "evaluate"),
    "voc_map": ("keras_ssd.evaluation", "voc_map"),
    "draw_detections": ("keras_ssd.visualize", "draw_detections"),
    "run_demo": ("keras_ssd.demo", "run_demo"),
    # The function `keras_ssd.export(...)`; the module stays importable as
    # `import keras_ssd.export` / `from keras_ssd.export import ...`.
    "export": ("keras_ssd.export", "export"),
}

def _resolve(name):
    module_name, attribute = _KERAS_API[name]
    module = _importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __getattr__(name):
    if name in _KERAS_API:
        return _resolve(name)
    raise AttributeError(f"module 'keras_ssd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_KERAS_API))


def _lazy_imports():
    """Import the Keras-dependent names on first use instead of now?

    `KERAS_SSD_LAZY_IMPORTS=1` says yes and any other value no; unset, the
    answer is yes only when this process is the command line (the `keras-ssd`
    script or `python -m keras_ssd`), so that `--help` and argument errors
    need not load TensorFlow.
    """
    setting = _os.environ.get("KERAS_SSD_LAZY_IMPORTS")
    if setting is not None:
        return setting == "1"
    script = _sys.argv[0] if _sys.argv else ""
    name = _os.path.splitext(_os.path.basename(script))[0]  # Windows: .exe, -script.py
    if name.removesuffix("-script") == "keras-ssd":
        return True
    if script == "-m":  # `python -m MODULE` while MODULE is located
        argv = list(getattr(_sys, "orig_argv", ()))
        for i, arg in enumerate(argv[1:], 1):
            if arg.startswith("-m"):
                return (arg[2:] or "".join(argv[i + 1:i + 2])) == "keras_ssd"
    return False


if not _lazy_imports():
    for _name in _KERAS_API:
        _resolve(_name)
    del _name
