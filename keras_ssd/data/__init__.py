"""Data: Pascal VOC, COCO, YOLO and CSV readers (`load_dataset` tells them
apart), SSD augmentation, training batches, and a synthetic shapes dataset.

`SSDSequence` and `eval_batches` need Keras and are imported on first use,
so the readers and augmentation stay importable (and fast to import in
worker processes) without loading a backend.
"""

from keras_ssd.data.anchor_fit import AnchorFitReport, anchor_fit, plot_anchor_fit
from keras_ssd.data.augment import (
    DEFAULT_MIN_IOUS,
    AugmentPlan,
    ExpandParams,
    PhotometricParams,
    SSDAugmentation,
    apply_photometric,
    apply_plan,
    crop_boxes,
    expand,
    hflip,
    letterbox_geometry,
    photometric_distort,
    random_crop,
    random_flip,
    resize,
    resize_image,
    resize_plan,
    sample_crop,
    sample_expand,
    sample_photometric,
    source_boxes,
)
from keras_ssd.data.coco import COCODataset
from keras_ssd.data.csv_dataset import CSVDataset
from keras_ssd.data.dataset import DetectionDataset
from keras_ssd.data.errors import DataError
from keras_ssd.data.formats import FORMATS, load_dataset, sniff_format
from keras_ssd.data.images import MEAN_RGB, decode_image, image_size, load_image
from keras_ssd.data.synthetic import (
    ALL_SYNTHETIC_CLASSES,
    SYNTHETIC_CLASSES,
    make_synthetic_voc,
)
from keras_ssd.data.voc import VOC_CLASSES, VOCDataset, parse_voc_xml, write_voc, write_voc_xml
from keras_ssd.data.yolo import YOLODataset, write_yolo

_LAZY = {"SSDSequence", "eval_batches"}


def __getattr__(name):
    if name in _LAZY:
        from keras_ssd.data import sequence

        return getattr(sequence, name)
    raise AttributeError(f"module 'keras_ssd.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
