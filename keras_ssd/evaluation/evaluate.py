"""Run a detector over a dataset and score it (VOC mAP or COCO AP).

Inference goes through the model's own `predict` (its `prediction_decoder`),
as `predict_images` does (`keras_ssd.inference.predict`); images are read as the evaluation
input of the training pipeline (`keras_ssd.data.sequence.load_resized`).
"""

import concurrent.futures
import time
import warnings

import keras
import numpy as np

from keras_ssd.data.augment import resize_image
from keras_ssd.data.sequence import load_resized
from keras_ssd.evaluation.voc import voc_map
from keras_ssd.inference.predict import (
    check_model,
    decoding_options,
    detect_batch,
    detections_in_pixels,
)

__all__ = ["ClassMatch", "evaluate", "match_classes", "predict_dataset", "resize_for_model"]


def resize_for_model(image, size):
    """Stretch an RGB uint8 image to `size x size`, as SSD expects.

    SSD does not keep the aspect ratio: the whole image is resized to the
    square input, and detections are scaled back per axis. The resampler is
    the training pipeline's (`keras_ssd.data.resize_image`, bilinear), so
    evaluation sees images exactly as `SSDSequence(augment=False)` makes them.
    """
    return resize_image(np.asarray(image), int(size))


#: The COCO protocol scores at most this many detections per image (the
#: challenge's rule; `maxDets=100` of pycocotools' AP): `evaluate(metric="coco")`
#: decodes no more.
COCO_MAX_DETECTIONS = 100


def _first(detections, k):
    """One image's detections (sorted by score) cut to the best `k`."""
    if len(detections["scores"]) <= k:
        return detections
    cut = type(detections)()
    for key, value in detections.items():
        cut[key] = value[:k]
    return cut


def _check_dataset(dataset):
    for attr in ("__len__", "__getitem__", "load_image"):
        if not hasattr(dataset, attr):
            raise ValueError(
                f"evaluate: dataset must provide len(), ds[i] records and "
                f"load_image(i); {type(dataset).__name__} has no {attr}"
            )


def predict_dataset(
    model,
    dataset,
    batch_size=8,
    confidence_threshold=None,
    iou_threshold=None,
    top_k=None,
    max_images=None,
    verbose=1,
    class_names=None,
):
    """Detections for every image of a dataset, in original image pixels.

    Images are loaded (two threads, overlapping with inference) as the
    training pipeline's evaluation input (`SSDSequence(augment=False)`), run
    through the detector in batches, and the boxes scaled back to each
    image's width and height (clipped to the image).

    Args:
        model: a keras-ssd model (its `prediction_decoder` decodes).
        dataset: records interface (`len`, `ds[i]`, `load_image(i)`).
        batch_size: int, images per inference call (the last batch is padded
            so that the compiled function is traced once).
        confidence_threshold, iou_threshold, top_k: decoding options;
            `None` keeps the `prediction_decoder`'s (0.01 / 0.45 / 200 unless
            set otherwise; see `keras_ssd.inference.predict.decoding_options`).
        max_images: optional int, only the first images.
        verbose: 1 shows a `keras.utils.Progbar`.
        class_names: optional names for the `"names"` entries (default: the
            model's).

    Returns:
        list (one per image) of dicts `boxes` `(K, 4)` float32 pixel xyxy,
        `scores` `(K,)`, `labels` `(K,)` 0-based, `names`: the per-image keys
        of docs/outputs.md, as `predict_image` returns them.
    """
    _check_dataset(dataset)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    config = check_model(model, "evaluate")
    options = decoding_options(model, confidence_threshold, iou_threshold, top_k)
    n = len(dataset)
    if max_images is not None:
        n = min(n, int(max_images))
    size, letterbox = config.image_shape, config.letterbox

    def load(i):
        return load_resized(dataset, i, size, letterbox)

    results = []
    progbar = keras.utils.Progbar(n, unit_name="image") if verbose else None
    starts = list(range(0, n, batch_size))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(load, i) for i in range(starts[0], min(n, batch_size))] if n else []
        for s in starts:
            loaded = [f.result() for f in pending]
            nxt = s + batch_size
            pending = [pool.submit(load, i) for i in range(nxt, min(n, nxt + batch_size))]
            batch = np.zeros((batch_size,) + tuple(size) + (3,), dtype=np.float32)
            for j, (img, _, _) in enumerate(loaded):
                batch[j] = img
            out = detect_batch(model, batch)
            for j, (_, width, height) in enumerate(loaded):
                results.append(detections_in_pixels(model, out, j, width, height, options,
                                                    class_names))
            if progbar is not None:
                progbar.add(len(loaded))
    return results


def _class_names(dataset, config):
    names = getattr(dataset, "class_names", None)
    # A class-subset model reports `detection_names`, labelled 0..K-1.
    if names is None:
        return config.detection_names
    names = [str(x) for x in names]
    if len(names) != config.num_detection_classes:
        raise ValueError(
            f"evaluate: the dataset has {len(names)} classes but the model predicts "
            f"{config.num_detection_classes}"
        )
    if config.class_names is not None and list(config.detection_names) != names:
        raise ValueError(
            "evaluate: the model's class names differ from the dataset's (order "
            f"matters): model {list(config.detection_names)} vs dataset {names}"
        )
    return names


def _same_name(a, b):
    return " ".join(str(a).lower().split()) == " ".join(str(b).lower().split())


class ClassMatch:
    """How a model's detection labels map onto a dataset's labels.

    Attributes:
        names: the dataset's class names (what is scored).
        category_ids: the dataset's COCO category ids per label, or `None`.
        label_map: `None` (labels are the same), else an int array with,
            per model label, its dataset label or -1 (not scored: a
            placeholder output, or a class the dataset does not have).
        by: `"same"`, `"id"` or `"name"`.
    """

    def __init__(self, names, category_ids=None, label_map=None, by="same"):
        self.names = list(names)
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]
        self.label_map = label_map
        self.by = by

    def apply(self, detections):
        """One image's detections (model labels) in dataset labels, the
        unscored ones dropped; `names` (and `category_ids`) of the dataset."""
        if self.label_map is None:
            return detections
        labels = np.asarray(detections["labels"], dtype=np.int64)
        mapped = self.label_map[labels] if labels.size else labels
        keep = mapped >= 0
        out = type(detections)()
        for key, value in detections.items():
            if key in ("labels", "names", "category_ids"):
                continue
            out[key] = np.asarray(value)[keep]
        out["labels"] = mapped[keep]
        out["names"] = [self.names[j] for j in out["labels"]]
        if self.category_ids is not None:
            out["category_ids"] = np.asarray(self.category_ids, np.int64)[out["labels"]] \
                if out["labels"].size else np.zeros((0,), np.int64)
        return out


def match_classes(dataset, config):
    """Match a model's classes (`config`, its `SSDConfig`) to a dataset's.

    - The model has COCO category ids (`SSDConfig.category_ids`, e.g. the
      torchvision COCO model) and the dataset too (`COCODataset`'s
      `category_ids`): by id. Label `i` of the model is the dataset's
      category `category_ids[i]`; placeholder outputs and categories the
      dataset does not have are not scored. Every dataset category must be
      one of the model's, under the same name.
    - Ids on one side only: by name (placeholders never match).
    - Otherwise the names must be the same, in the same order.

    Returns:
        `ClassMatch`.

    Raises:
        ValueError: the classes do not correspond (the message lists which).
    """
    names = getattr(dataset, "class_names", None)
    model_names = list(config.detection_names)
    model_ids = getattr(config, "detection_category_ids", None)
    if names is None:
        return ClassMatch(model_names)
    names = [str(x) for x in names]
    data_ids = getattr(dataset, "category_ids", None)
    if data_ids is not None and len(data_ids) != len(names):
        data_ids = None
    if model_ids is not None and data_ids is not None:
        label_of_id = {cid: i for i, cid in enumerate(model_ids) if cid is not None}
        missing = [f"{cid} {n!r}" for cid, n in zip(data_ids, names)
                   if cid not in label_of_id]
        if missing:
            raise ValueError(
                f"evaluate: the dataset's categories {', '.join(missing)} are not among "
                f"the model's classes (COCO category ids {sorted(label_of_id)}); evaluate "
                "on the categories the model has (e.g. COCODataset(..., class_names=[...]))")
        renamed = [f"id {cid} is {n!r} in the dataset but "
                   f"{model_names[label_of_id[cid]]!r} for the model"
                   for cid, n in zip(data_ids, names)
                   if not _same_name(n, model_names[label_of_id[cid]])]
        if renamed:
            raise ValueError("evaluate: the dataset's category ids do not mean the model's "
                             "classes: " + "; ".join(renamed))
        label_map = np.full((len(model_names),), -1, dtype=np.int64)
        for j, cid in enumerate(data_ids):
            label_map[label_of_id[cid]] = j
        return ClassMatch(names, data_ids, label_map, by="id")
    if (model_ids is not None or data_ids is not None) and config.class_names is not None \
            and model_names != names:
        usable = [i for i, n in enumerate(model_names)
                  if model_ids is None or model_ids[i] is not None]
        label_of_name = {" ".join(model_names[i].lower().split()): i for i in usable}
        keys = [" ".join(n.lower().split()) for n in names]
        missing = [n for n, k in zip(names, keys) if k not in label_of_name]
        if missing:
            raise ValueError(
                f"evaluate: the dataset's classes {missing} are not among the model's "
                f"classes {[model_names[i] for i in usable]}")
        label_map = np.full((len(model_names),), -1, dtype=np.int64)
        for j, k in enumerate(keys):
            label_map[label_of_name[k]] = j
        return ClassMatch(names, data_ids, label_map, by="name")
    return ClassMatch(_class_names(dataset, config), data_ids)


def evaluate(
    model,
    dataset,
    batch_size=8,
    confidence_threshold=None,
    iou_threshold=None,
    top_k=None,
    use_07_metric=True,
    verbose=1,
    metric="voc",
    max_images=None,
    return_detections=False,
):
    """Evaluate a detector on a dataset: Pascal VOC mAP (or COCO AP).

    Args:
        model: a keras-ssd model (its `prediction_decoder` decodes).
        dataset: records interface (`len(ds)`, `ds[i]` dicts with `boxes`
            pixel xyxy, `labels`, `difficult`, `width`, `height`;
            `ds.load_image(i)`; `ds.class_names`), e.g. `VOCDataset`. Its
            classes are matched to the model's by `match_classes`: by COCO
            category id when both have ids (a converted torchvision COCO
            model on a `COCODataset`: a detection of label `i` is category
            `config.category_ids[i]`, placeholder outputs and categories
            the file lacks are not scored), by name when one side has ids,
            else the names must be the model's, in order.
        batch_size: int, images per inference call.
        confidence_threshold: float, decoder score threshold. `None`
            (default): the `prediction_decoder`'s (0.01, the mAP setting,
            unless set otherwise).
        iou_threshold: float, NMS IoU threshold (`None`: the decoder's, 0.45
            by default).
        top_k: int, detections kept per image (`None`: the decoder's, 200 by
            default). With `metric="coco"` at most `COCO_MAX_DETECTIONS`
            (100), the COCO protocol's limit: `None` means 100 and a larger
            value is cut to the 100 best per image, with a warning.
        use_07_metric: bool, VOC2007 11-point AP (True) or area AP.
        verbose: 0 silent, 1 progress bar.
        metric: `"voc"` (IoU 0.5, `voc_map`) or `"coco"` (AP@[.5:.95] via
            pycocotools, see `coco_map`; needs `pip install keras-ssd[coco]`).
        max_images: optional int, evaluate only the first images.
        return_detections: bool, add the per-image detections under
            `"detections"` (`predict_image`'s dicts: `boxes` in pixels,
            `scores`, `labels`, `names`), as scored: in the dataset's labels
            (with `category_ids` for a dataset that has them) when the
            classes were matched by id or name.

    Returns:
        For `"voc"`: the `voc_map` dict (`mAP`, per-class `AP` array,
        `AP_by_name`, `classes_without_ground_truth`, ...) plus
        `num_images` and `seconds`. For `"coco"`: the `coco_map` dict plus
        the same two entries.

    Raises:
        ValueError: the dataset's classes do not match the model's (a
            category the model does not have, an id naming another class),
            or bad arguments.
        ImportError: `metric="coco"` without pycocotools.

    Example:

    >>> result = evaluate(model, VOCDataset("VOCdevkit/VOC2007", "test"))
    >>> print(f"mAP {result['mAP']:.3f}")
    """
    if metric not in ("voc", "coco"):
        raise ValueError(f"evaluate: metric must be 'voc' or 'coco', got {metric!r}")
    if metric == "coco":
        from keras_ssd.evaluation.coco import require_pycocotools

        require_pycocotools()
    _check_dataset(dataset)
    if metric == "coco":
        top_k = _coco_top_k(top_k)
    match = match_classes(dataset, check_model(model, "evaluate"))
    names = match.names
    limit = top_k
    decode_top_k = top_k
    if match.label_map is not None and (match.label_map < 0).any() and top_k is not None:
        # Some of the model's classes are not scored (placeholders, categories
        # the dataset lacks): decode more, so that `top_k` scored ones remain.
        decode_top_k = max(top_k, model.prediction_decoder.top_k)
    start = time.perf_counter()
    detections = predict_dataset(
        model, dataset, confidence_threshold=confidence_threshold,
        iou_threshold=iou_threshold, top_k=decode_top_k, batch_size=batch_size,
        max_images=max_images, verbose=verbose,
        class_names=None if match.label_map is not None else names,
    )
    detections = [match.apply(d) for d in detections]
    if match.label_map is not None and limit is not None:
        detections = [_first(d, limit) for d in detections]
    seconds = time.perf_counter() - start
    if metric == "coco":
        # The classes matched by id may have decoded more: score the 100 best.
        detections = [_first(d, COCO_MAX_DETECTIONS) for d in detections]
    result = _score(metric, detections, [dataset[i] for i in range(len(detections))],
                    match, use_07_metric)
    result["num_images"] = len(detections)
    result["seconds"] = seconds
    if return_detections:
        result["detections"] = detections
    return result


def _coco_top_k(top_k):
    """`top_k` within the COCO protocol's 100 detections per image (a larger
    one is cut, with a warning)."""
    if top_k is not None and top_k > COCO_MAX_DETECTIONS:
        warnings.warn(f"evaluate(metric='coco'): top_k={top_k} is cut to "
                      f"{COCO_MAX_DETECTIONS}, the most the COCO protocol scores per "
                      "image", stacklevel=3)
    return COCO_MAX_DETECTIONS if top_k is None else min(top_k, COCO_MAX_DETECTIONS)


def _score(metric, detections, ground_truths, match, use_07_metric):
    """`voc_map` at IoU 0.5 or `coco_map` of the matched detections."""
    names = match.names
    if metric == "voc":
        return voc_map(detections, ground_truths, num_classes=len(names), iou_threshold=0.5,
                       use_07_metric=use_07_metric, class_names=names)
    from keras_ssd.evaluation.coco import coco_map

    kwargs = {} if match.category_ids is None else {"category_ids": match.category_ids}
    return coco_map(detections, ground_truths, num_classes=len(names), class_names=names,
                    **kwargs)
