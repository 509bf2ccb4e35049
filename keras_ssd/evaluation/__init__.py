"""Detection metrics: Pascal VOC mAP, COCO AP and dataset evaluation."""

from keras_ssd.evaluation.voc import average_precision, voc_map

__all__ = ["average_precision", "voc_map"]
