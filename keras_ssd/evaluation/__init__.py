"""Detection metrics: Pascal VOC mAP, COCO AP and dataset evaluation."""

from keras_ssd.evaluation.coco import coco_map
from keras_ssd.evaluation.evaluate import evaluate, predict_dataset
from keras_ssd.evaluation.voc import average_precision, voc_map

__all__ = [
    "average_precision",
    "coco_map",
    "evaluate",
    "predict_dataset",
    "voc_map",
]
