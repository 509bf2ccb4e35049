"""`SSDSequence`: batches of (images, encoded targets) for `model.fit`."""

import math
import os
import signal
import threading

import keras
import numpy as np

from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.data.augment import SSDAugmentation, apply_plan, resize_plan
from keras_ssd.data.errors import DataError, check_on_error, logger
from keras_ssd.data.images import MEAN_RGB
from keras_ssd.targets import TargetEncoder

_SHUFFLE_STREAM = 0x5EED
_ITEM_STREAM = 0xA11

_FORK_HOOK = []


def _data_worker_ignores_ctrl_c():
    """After a fork by Keras' data-loading thread (named `Worker_<uid>`: it
    creates the `use_multiprocessing` pool): the new worker ignores SIGINT.

    A terminal's Ctrl-C reaches the whole process group. A pool worker it
    interrupts dies, possibly holding the pool's task-queue lock, and the
    pool starts a replacement that waits on that queue; the training
    process's exit then waits forever on the lock (seen in
    tests/training/test_ctrl_c_workers.py). Ignoring it in the workers
    leaves Ctrl-C to the training process, which stops the pool itself.
    """
    if threading.current_thread().name.startswith("Worker_"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _install_fork_hook():
    if not _FORK_HOOK and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_data_worker_ignores_ctrl_c)
        _FORK_HOOK.append(True)

#: `cache_images="auto"` keeps the decoded images in memory when they take
#: at most this many bytes (PIL holds RGB at 4 bytes a pixel).
CACHE_BUDGET_BYTES = 1 << 30


def decoded_bytes(dataset):
    """Bytes the decoded images of `dataset` take in memory (PIL RGB), or
    `None` when some record does not state its size."""
    total = 0
    for i in range(len(dataset)):
        rec = dataset[i]
        w, h = rec.get("width"), rec.get("height")
        if not w or not h:
            return None
        total += 4 * int(w) * int(h)
    return total


def _load_source(dataset, index, reduce_factor):
    loader = getattr(dataset, "load_pil_image", None)
    if loader is not None:
        return loader(index, reduce_factor=reduce_factor)
    return dataset.load_image(index), 1


def load_resized(dataset, index, size, letterbox=False):
    """Record `index`'s image as `SSDSequence(augment=False)` renders it.

    Stretched to `size` (aspect ratio not kept), or letterboxed into it with
    `letterbox=True` (aspect kept, mean padding), by `apply_plan` of a
    `resize_plan`; decoded with `dataset.load_pil_image(i, reduce_factor)`
    when the dataset has it (JPEG DCT-scaled decoding of large images), else
    with `dataset.load_image(i)`. The evaluation input.

    Args:
        dataset: a detection dataset (records and `load_image`).
        index: the record.
        size: int or `(height, width)`: the model input size.
        letterbox: the rendering (`SSDConfig.letterbox`); map boxes back
            with `keras_ssd.data.source_boxes`.

    Returns:
        `(image, width, height)`: uint8 `(H, W, 3)` at `size` and the
        original image's size.

    Raises:
        ValueError: `load_image` returned no `(H, W, 3)` image, or one whose
            size differs from its record's.
    """
    record = dataset[index]
    if getattr(dataset, "load_pil_image", None) is not None:
        width, height = int(record["width"]), int(record["height"])
        plan = resize_plan(width, height, np.zeros((0, 4)), size, letterbox)
        image, k = _load_source(dataset, index, plan.reduce_factor)
        return apply_plan(image, plan, k, MEAN_RGB), width, height
    image = np.asarray(dataset.load_image(index))
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"dataset.load_image({index}) returned shape {image.shape}, expected (H, W, 3)"
        )
    height, width = image.shape[:2]
    if isinstance(record, dict) and record.get("width") is not None:
        if (int(record["width"]), int(record["height"])) != (width, height):
            raise ValueError(
                f"image {index} ({record.get('image_path', '')}) is {width}x{height} "
                f"but its record says {record['width']}x{record['height']}"
            )
    plan = resize_plan(width, height, np.zeros((0, 4)), size, letterbox)
    return apply_plan(image, plan, 1, MEAN_RGB), width, height


def eval_batches(dataset, image_size, batch_size=8, letterbox=False):
    """Iterate over a dataset in order, resized for the model, for evaluation.

    Every record appears exactly once (the last batch may be smaller); no
    augmentation, no shuffling.

    Args:
        dataset: a detection dataset (`VOCDataset`, `COCODataset`, ...).
        image_size: int or `(height, width)`: the model input size.
        batch_size: images per batch.
        letterbox: render as `SSDConfig.letterbox` says (see `load_resized`).

    Yields:
        `(images, info)`: float32 `(b, H, W, 3)` RGB 0..255, and a dict with
        `indices` (int64 `(b,)` record indices), `image_ids` (list) and
        `sizes` (int64 `(b, 2)` original `(height, width)`), to scale the
        detections back to the original image.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    n = len(dataset)
    for start in range(0, n, int(batch_size)):
        idx = list(range(start, min(n, start + int(batch_size))))
        images, ids, sizes = [], [], []
        for i in idx:
            image, width, height = load_resized(dataset, i, image_size, letterbox)
            images.append(image)
            ids.append(dataset[i]["image_id"])
            sizes.append((height, width))
        yield np.stack(images).astype(np.float32), {
            "indices": np.asarray(idx, dtype=np.int64),
            "image_ids": ids,
            "sizes": np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
        }


class SSDSequence(keras.utils.PyDataset):
    """Training batches for an SSD: images and encoded targets.

    Yields `(images, targets)`: images float32 `(B, H, W, 3)` (the config's
    `image_shape`) RGB in 0..255
    (the model's preprocessing layer does the rest), targets float32 `(B, N,
    5)` from `keras_ssd.targets.TargetEncoder` over the anchors of `config`
    (4 offsets, then the class with 0 = background and -1 = ignore). Boxes
    are normalised by the augmented image size.

    With `augment=True` every image goes through `SSDAugmentation` (the
    Caffe recipe); without, it is only resized (the evaluation path). With
    `config.letterbox` both keep the aspect ratio and pad with the mean
    pixel (`SSDAugmentation(letterbox=True)`, `resize_plan(...,
    letterbox=True)`), as evaluation and `predict_image` do for that model.

    Determinism: with a `seed`, batch `i` of epoch `e` is a pure function of
    `(seed, e, i)`: the epoch's order comes from a generator keyed on
    `(seed, e)` and each item's augmentation from one keyed on `(seed, e,
    position)`. So batches are the same with or without workers, threads or
    processes. `on_epoch_end` moves to the next epoch (reshuffling);
    `set_epoch` jumps (e.g. when resuming). Keras' `fit` calls
    `on_epoch_end` once before its first epoch too, so under `fit` the
    epochs count from 1; the run is still reproducible. Note that `model.fit(..., shuffle=True)` (its
    default) additionally visits the batches in a random order; pass
    `shuffle=False` to `fit` for a fully reproducible run.

    Every batch has exactly `batch_size` images: the last batch of an epoch
    is filled up with records from the start of that epoch's order.

    Bad data: by default (`on_error="raise"`) a record that fails to load
    (corrupt or truncated image, size mismatch) raises a `DataError` naming
    the file, the record and the batch, also from inside a worker process.
    With `on_error="skip"` the record is replaced by the next one in the
    epoch's order, with a logged warning; `.load_errors` counts them (per
    process).

    Ctrl-C with `use_multiprocessing=True`: the worker processes ignore
    SIGINT, so the training process alone handles it and shuts its pool
    down (a worker killed by it could leave the pool's queue lock held and
    the exit hanging).

    Args:
        dataset: a detection dataset (records and `load_image`).
        config: the model's `SSDConfig` (or its dict): input size, anchors,
            variances, number of classes.
        batch_size: images per batch.
        augment: bool, apply `augmentation`.
        shuffle: bool, shuffle each epoch (default: same as `augment`).
        seed: int; `None` draws one at construction.
        augmentation: an `SSDAugmentation` or a dict of its options (default:
            the Caffe recipe at the config's input size).
        ignore_difficult: bool; when True, priors matched to VOC
            "difficult" boxes get class -1 ("ignore"); by default they are
            ordinary positives, as in Caffe SSD training. Crowd regions (a
            record's `crowd`, COCO `iscrowd=1`) are never positives whatever
            this says: the priors they cover are ignored (see
            `keras_ssd.TargetEncoder` and docs/data.md).
        iou_threshold: matching threshold of the target encoder.
        on_error: `"raise"` or `"skip"`.
        cache_images: keep every decoded image in memory after its first
            use (`True`), never (`False`), or when they fit in
            `CACHE_BUDGET_BYTES` (`"auto"`, what `train_detector` uses).
            Cached images are decoded at full size; augmentations are still
            drawn fresh for every epoch.
        **kwargs: `keras.utils.PyDataset` options: `workers`,
            `use_multiprocessing`, `max_queue_size`.

    Example:

    >>> seq = SSDSequence(train, model.config, batch_size=32, augment=True, seed=0,
    ...                   workers=2, use_multiprocessing=True)
    >>> model.fit(seq, epochs=10)
    """

    def __init__(self, dataset, config, batch_size=32, augment=False, shuffle=None,
                 seed=None, augmentation=None, ignore_difficult=False,
                 iou_threshold=0.5, on_error="raise", cache_images=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = SSDConfig.from_dict(config)
        if not isinstance(config, SSDConfig):
            raise ValueError(f"config must be an SSDConfig, got {type(config).__name__}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if len(dataset) == 0:
            raise ValueError("SSDSequence: the dataset has no records")
        names = getattr(dataset, "class_names", None)
        if names is not None and len(names) != config.num_classes:
            raise ValueError(
                f"SSDSequence: the dataset has {len(names)} classes but the config has "
                f"num_classes={config.num_classes}"
            )
        self.dataset = dataset
        self.config = config
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.shuffle = self.augment if shuffle is None else bool(shuffle)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.seed = int(seed)
        self.image_size = tuple(config.image_shape)
        self.letterbox = bool(config.letterbox)
        if augmentation is None:
            augmentation = SSDAugmentation(self.image_size, letterbox=self.letterbox)
        elif isinstance(augmentation, dict):
            augmentation = SSDAugmentation(**{"output_size": self.image_size,
                                              "letterbox": self.letterbox, **augmentation})
        if not isinstance(augmentation, SSDAugmentation):
            raise ValueError("augmentation must be an SSDAugmentation or a dict of its options")
        if tuple(augmentation.output_size) != self.image_size:
            raise ValueError(
                f"augmentation.output_size {augmentation.output_size} differs from the "
                f"config's input size {self.image_size}"
            )
        if getattr(augmentation, "letterbox", False) != self.letterbox:
            raise ValueError(
                f"augmentation.letterbox is {augmentation.letterbox} but the config's "
                f"letterbox is {self.letterbox}; training must render images as the "
                "model will see them"
            )
        self.augmentation = augmentation
        self.ignore_difficult = bool(ignore_difficult)
        self.on_error = check_on_error(on_error)
        self.iou_threshold = float(iou_threshold)
        self.encoder = self._make_encoder()
        self.epoch = 0
        self.load_errors = 0
        if self.use_multiprocessing:
            _install_fork_hook()
        if cache_images not in (True, False, "auto"):
            raise ValueError(f"cache_images must be True, False or 'auto', got {cache_images!r}")
        if cache_images == "auto":
            size = decoded_bytes(dataset)
            cache_images = size is not None and size <= CACHE_BUDGET_BYTES
        self.cache_images = bool(cache_images)
        self._cache = {}

    def _make_encoder(self):
        # Built once per process: priors from the model's config.
        if hasattr(TargetEncoder, "from_config"):
            return TargetEncoder.from_config(self.config, iou_threshold=self.iou_threshold)
        return TargetEncoder(
            generate_anchors(self.config), iou_threshold=self.iou_threshold,
            variances=self.config.variances, num_classes=self.config.num_classes,
        )

    def __getstate__(self):
        # The encoder holds per-thread scratch buffers that do not pickle;
        # worker processes started by "spawn" rebuild it (and their cache).
        state = self.__dict__.copy()
        state.pop("encoder", None)
        state["_cache"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.encoder = self._make_encoder()

    # ------------------------------------------------------------- ordering
    def __len__(self):
        return math.ceil(len(self.dataset) / self.batch_size)

    @property
    def num_batches(self):
        return len(self)

    def set_epoch(self, epoch):
        """Jump to `epoch` (its order and augmentations)."""
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def epoch_order(self, epoch=None):
        """Record indices of `epoch` in visiting order (int64 `(n,)`)."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch, _SHUFFLE_STREAM]).permutation(n)

    def batch_indices(self, index, epoch=None):
        """Record indices of batch `index` (wrapping at the end of the epoch)."""
        n_batches = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"batch index must be an int, got {type(index).__name__}")
        if index < 0:
            index += n_batches
        if not 0 <= index < n_batches:
            raise IndexError(f"batch {index} out of range for {n_batches} batches")
        order = self.epoch_order(epoch)
        positions = np.arange(index * self.batch_size, (index + 1) * self.batch_size)
        return order[positions % len(order)], positions

    # --------------------------------------------------------------- items
    def _item(self, record_index, rng):
        rec = self.dataset[int(record_index)]
        if self.augment:
            plan = self.augmentation.sample(rec["width"], rec["height"], rec["boxes"], rng)
        else:
            plan = resize_plan(rec["width"], rec["height"], rec["boxes"], self.image_size,
                               self.letterbox)
        image, k = self._source(int(record_index), plan.reduce_factor)
        image = apply_plan(image, plan, k, self.augmentation.mean)
        labels = np.asarray(rec["labels"])[plan.keep]
        ignore = crowd = None
        if self.ignore_difficult:
            ignore = np.asarray(rec["difficult"], dtype=bool)[plan.keep]
        if rec.get("crowd") is not None:
            crowd = np.asarray(rec["crowd"], dtype=bool)[plan.keep]
        targets = self.encoder(plan.normalized_boxes, labels, ignore, crowd)
        return image, targets

    def _source(self, record_index, reduce_factor):
        if not self.cache_images:
            return _load_source(self.dataset, record_index, reduce_factor)
        image = self._cache.get(record_index)
        if image is None:
            image, _ = _load_source(self.dataset, record_index, 1)
            if hasattr(image, "load"):
                image.load()
            self._cache[record_index] = image  # one dict store: safe across threads
        return image, 1

    def _record_path(self, record_index):
        try:
            return self.dataset[int(record_index)]["image_path"]
        except Exception:
            return None

    def _safe_item(self, batch, order, position):
        n = len(order)
        for attempt in range(n):
            record_index = int(order[(position + attempt) % n])
            rng = np.random.default_rng([self.seed, self.epoch, _ITEM_STREAM, position])
            try:
                return self._item(record_index, rng)
            except DataError as e:
                error = DataError(
                    e.path, f"{e.problem} (record {record_index}, batch {batch}, "
                            f"epoch {self.epoch})")
            except Exception as e:  # a bug or an unexpected file: say where
                error = DataError(
                    self._record_path(record_index),
                    f"{type(e).__name__} while loading record {record_index} for "
                    f"batch {batch} (epoch {self.epoch}): {e}")
            if self.on_error == "raise":
                raise error
            self.load_errors += 1
            logger.warning("SSDSequence: skipped %s; using the next record instead", error)
        raise DataError(None, f"SSDSequence: no record of the dataset could be loaded "
                              f"(batch {batch})")

    def __getitem__(self, index):
        _, positions = self.batch_indices(index)
        order = self.epoch_order()
        images = np.empty((self.batch_size,) + self.image_size + (3,), dtype=np.float32)
        targets = np.empty((self.batch_size, self.encoder.num_anchors, 5), dtype=np.float32)
        for j, position in enumerate(positions):
            images[j], targets[j] = self._safe_item(index, order, int(position))
        return images, targets

    # ------------------------------------------------------------ evaluation
    def eval_batches(self, batch_size=None):
        """Un-augmented resized batches with original sizes, see `eval_batches`."""
        return eval_batches(self.dataset, self.image_size, batch_size or self.batch_size,
                            self.letterbox)
