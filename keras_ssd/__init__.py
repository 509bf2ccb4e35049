"""keras-ssd: the SSD (Single Shot MultiBox Detector) for Keras 3."""

from keras_ssd.version import __version__
from keras_ssd.config import SSDConfig
from keras_ssd.anchors import generate_anchors
from keras_ssd.encoding import TargetEncoder, encode_targets
from keras_ssd import boxes
