"""Run a detector over a dataset and score it (VOC mAP or COCO AP)."""

import concurrent.futures
import time

import keras
import numpy as np

from keras_ssd.data.augment import apply_plan, resize_image, resize_plan
from keras_ssd.data.images import MEAN_RGB
from keras_ssd.evaluation.voc import voc_map

_DETECTION_KEYS = ("boxes", "confidence", "labels")


def _is_inference_model(model):
    try:
        out = model.output
    except (AttributeError, ValueError):
        return False
    return isinstance(out, dict) and all(k in out for k in _DETECTION_KEYS)


class Predictor:
    """Batched detection on images already resized to the model input.

    Wraps a training SSD (building its decoder once, with
    `keras_ssd.inference.inference_model`; the decoder shares the training
    model's weights, so a `Predictor` stays valid while training goes on) or
    takes an inference model as it is.

    Args:
        model: a training `SSD` (output `(B, N, 4 + C + 1)`) or an inference
            model (output dict `boxes`, `confidence`, `labels`).
        confidence_threshold, iou_threshold, top_k: decoding options, used
            only when the decoder is built here.

    Attributes:
        model: the model given.
        detector: the inference model.
        config: its `SSDConfig`.
    """

    def __init__(self, model, confidence_threshold=0.01, iou_threshold=0.45, top_k=200):
        from keras_ssd.inference.model import get_config_from_model, inference_model
        from keras_ssd.accel.runtime import apply_runtime_defaults

        if not isinstance(model, keras.Model):
            raise ValueError(
                f"expected a keras.Model (keras-ssd training or inference model), got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.config = get_config_from_model(model)
        if _is_inference_model(model):
            self.detector = model
        else:
            self.detector = inference_model(
                model,
                confidence_threshold=confidence_threshold,
                iou_threshold=iou_threshold,
                top_k=top_k,
            )
        # the measured fastest compile mode (no XLA for TF on CPU)
        apply_runtime_defaults(self.detector)
        self.image_size = int(self.config.image_size)

    def predict_batch(self, images):
        """Detect on a batch `(B, S, S, 3)` of RGB 0..255 images.

        Returns:
            dict of numpy arrays: `boxes` `(B, K, 4)` normalised xyxy,
            `confidence` `(B, K)`, `labels` `(B, K)` (-1 = padding).
        """
        out = self.detector.predict_on_batch(np.asarray(images, dtype="float32"))
        return {k: np.asarray(out[k]) for k in _DETECTION_KEYS}


def resize_for_model(image, size):
    """Stretch an RGB uint8 image to `size x size`, as SSD expects.

    SSD does not keep the aspect ratio: the whole image is resized to the
    square input, and detections are scaled back per axis. The resampler is
    the training pipeline's (`keras_ssd.data.resize_image`, bilinear), so
    evaluation sees images exactly as `SSDSequence(augment=False)` makes them.
    """
    return resize_image(np.asarray(image), int(size))


def _load_resized(dataset, index, size):
    """Record `index`'s image resized for the model, and its original size.

    Uses `dataset.load_pil_image(i, reduce_factor)` when the dataset has it
    (JPEG draft decoding of large images, as the training pipeline does),
    else `dataset.load_image(i)`.
    """
    record = dataset[index]
    loader = getattr(dataset, "load_pil_image", None)
    if loader is not None:
        width, height = int(record["width"]), int(record["height"])
        plan = resize_plan(width, height, np.zeros((0, 4)), size)
        image, k = loader(index, reduce_factor=plan.reduce_factor)
        return apply_plan(image, plan, k, MEAN_RGB), width, height
    image = np.asarray(dataset.load_image(index))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"evaluate: dataset.load_image({index}) returned shape {image.shape}, "
            "expected (H, W, 3)"
        )
    height, width = image.shape[:2]
    if isinstance(record, dict) and record.get("width") is not None:
        if (int(record["width"]), int(record["height"])) != (width, height):
            raise ValueError(
                f"evaluate: image {index} ({record.get('image_path', '')}) is "
                f"{width}x{height} but its record says {record['width']}x{record['height']}"
            )
    return resize_for_model(image, size), width, height


def _to_pixels(boxes, confidence, labels, width, height):
    keep = labels >= 0
    scale = np.array([width, height, width, height], dtype=np.float64)
    b = boxes[keep].astype(np.float64) * scale
    b = np.clip(b, 0.0, scale)
    return {
        "boxes": b.astype(np.float32),
        "scores": confidence[keep].astype(np.float32),
        "labels": labels[keep].astype(np.int64),
    }


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
    confidence_threshold=0.01,
    iou_threshold=0.45,
    top_k=200,
    max_images=None,
    verbose=1,
):
    """Detections for every image of a dataset, in original image pixels.

    Images are loaded (two threads, overlapping with inference), stretched
    to the model's square input without augmentation, run through the
    detector in batches, and the boxes scaled back to each image's width and
    height (clipped to the image).

    Args:
        model: training or inference model, or a `Predictor`.
        dataset: records interface (`len`, `ds[i]`, `load_image(i)`).
        batch_size: int, images per inference call (the last batch is padded
            so that the compiled function is traced once).
        confidence_threshold, iou_threshold, top_k: decoding options.
        max_images: optional int, only the first images.
        verbose: 1 shows a `keras.utils.Progbar`.

    Returns:
        list (one per image) of dicts `boxes` `(K, 4)` float32 pixel xyxy,
        `scores` `(K,)`, `labels` `(K,)` 0-based.
    """
    _check_dataset(dataset)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be a positive int, got {batch_size!r}")
    batch_size = int(batch_size)
    predictor = (
        model
        if isinstance(model, Predictor)
        else Predictor(
            model,
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            top_k=top_k,
        )
    )
    n = len(dataset)
    if max_images is not None:
        n = min(n, int(max_images))
    size = predictor.image_size

    def load(i):
        return _load_resized(dataset, i, size)

    results = []
    progbar = keras.utils.Progbar(n, unit_name="image") if verbose else None
    starts = list(range(0, n, batch_size))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pending = [pool.submit(load, i) for i in range(starts[0], min(n, batch_size))] if n else []
        for s in starts:
            loaded = [f.result() for f in pending]
            nxt = s + batch_size
            pending = [pool.submit(load, i) for i in range(nxt, min(n, nxt + batch_size))]
            batch = np.zeros((batch_size, size, size, 3), dtype=np.float32)
            for j, (img, _, _) in enumerate(loaded):
                batch[j] = img
            out = predictor.predict_batch(batch)
            for j, (_, width, height) in enumerate(loaded):
                results.append(
                    _to_pixels(
                        out["boxes"][j], out["confidence"][j], out["labels"][j], width, height
                    )
                )
            if progbar is not None:
                progbar.add(len(loaded))
    return results


def _class_names(dataset, predictor):
    names = getattr(dataset, "class_names", None)
    config = predictor.config
    if names is None:
        return config.names
    names = [str(x) for x in names]
    if len(names) != config.num_classes:
        raise ValueError(
            f"evaluate: the dataset has {len(names)} classes but the model predicts "
            f"{config.num_classes}"
        )
    if config.class_names is not None and list(config.class_names) != names:
        raise ValueError(
            "evaluate: the model's class names differ from the dataset's (order "
            f"matters): model {list(config.class_names)} vs dataset {names}"
        )
    return names


def evaluate(
    model,
    dataset,
    batch_size=8,
    confidence_threshold=0.01,
    iou_threshold=0.45,
    top_k=200,
    use_07_metric=True,
    verbose=1,
    metric="voc",
    max_images=None,
    return_detections=False,
):
    """Evaluate a detector on a dataset: Pascal VOC mAP (or COCO AP).

    Args:
        model: a keras-ssd training model (its decoder is built once here
            with `keras_ssd.inference.inference_model`), an inference model,
            or a `Predictor`.
        dataset: records interface (`len(ds)`, `ds[i]` dicts with `boxes`
            pixel xyxy, `labels`, `difficult`, `width`, `height`;
            `ds.load_image(i)`; `ds.class_names`), e.g. `VOCDataset`.
        batch_size: int, images per inference call.
        confidence_threshold: float, decoder score threshold (0.01 for mAP).
        iou_threshold: float, NMS IoU threshold.
        top_k: int, detections kept per image.
        use_07_metric: bool, VOC2007 11-point AP (True) or area AP.
        verbose: 0 silent, 1 progress bar.
        metric: `"voc"` (IoU 0.5, `voc_map`) or `"coco"` (AP@[.5:.95] via
            pycocotools, see `coco_map`; needs `pip install keras-ssd[coco]`).
        max_images: optional int, evaluate only the first images.
        return_detections: bool, add the per-image detections under
            `"detections"`.

    Returns:
        For `"voc"`: the `voc_map` dict (`mAP`, per-class `AP` array,
        `AP_by_name`, `classes_without_ground_truth`, ...) plus
        `num_images` and `seconds`. For `"coco"`: the `coco_map` dict plus
        the same two entries.

    Raises:
        ValueError: the dataset's classes do not match the model's, or bad
            arguments.
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
    predictor = (
        model
        if isinstance(model, Predictor)
        else Predictor(
            model,
            confidence_threshold=confidence_threshold,
            iou_threshold=iou_threshold,
            top_k=top_k,
        )
    )
    names = _class_names(dataset, predictor)
    start = time.perf_counter()
    detections = predict_dataset(
        predictor, dataset, batch_size=batch_size, max_images=max_images, verbose=verbose
    )
    seconds = time.perf_counter() - start
    ground_truths = [dataset[i] for i in range(len(detections))]
    if metric == "voc":
        result = voc_map(
            detections,
            ground_truths,
            num_classes=len(names),
            iou_threshold=0.5,
            use_07_metric=use_07_metric,
            class_names=names,
        )
    else:
        from keras_ssd.evaluation.coco import coco_map

        result = coco_map(detections, ground_truths, num_classes=len(names), class_names=names)
    result["num_images"] = len(detections)
    result["seconds"] = seconds
    if return_detections:
        result["detections"] = detections
    return result
