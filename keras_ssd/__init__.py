"""keras-ssd: the SSD (Single Shot MultiBox Detector) for Keras 3.

Importing the package registers every keras-ssd layer, model and loss with
Keras, so `keras.saving.load_model("model.keras")` works after
`import keras_ssd`.
"""

from keras_ssd.version import __version__
from keras_ssd.config import SSDConfig
from keras_ssd.anchors import generate_anchors
from keras_ssd.encoding import TargetEncoder, encode_targets
from keras_ssd import boxes
from keras_ssd import layers
from keras_ssd.layers import (
    AnchorBoxes,
    CaffePreprocessing,
    DecodeDetections,
    ImagePreprocessing,
    L2Normalization,
)
from keras_ssd.losses import SSDLoss
from keras_ssd.models import (
    SSD,
    SSD300,
    SSD512,
    SSDMobileNetV2,
    SSDTiny,
    build_model,
)
from keras_ssd.inference import inference_model
from keras_ssd import callbacks
from keras_ssd import evaluation
from keras_ssd.evaluation import coco_map, evaluate, voc_map
from keras_ssd.schedules import WarmupPiecewiseDecay
from keras_ssd.checkpoints import TrainingCheckpoint, resume
from keras_ssd import data
from keras_ssd.data import (
    COCODataset,
    DataError,
    SSDAugmentation,
    VOC_CLASSES,
    VOCDataset,
    make_synthetic_voc,
)
from keras_ssd.data.sequence import SSDSequence
from keras_ssd import runtime
from keras_ssd.predict import predict_image, predict_images
from keras_ssd.visualize import draw_detections

# Last: the function `keras_ssd.export(...)` shadows the submodule attribute
# of the same name (`import keras_ssd.export` still finds the module).
from keras_ssd.export import export
