"""The record interface shared by every detection dataset reader."""

import os
import re

import numpy as np

from keras_ssd.data.errors import DataError, ErrorLog, logger
from keras_ssd.data.images import decode_image, image_size

CHECK_IMAGES_CHOICES = ("none", "exists", "header", "decode")


def check_check_images(value):
    if value is None or value is False:
        return "none"
    if value is True:
        return "header"
    if value not in CHECK_IMAGES_CHOICES:
        raise ValueError(
            f"check_images must be one of {CHECK_IMAGES_CHOICES}, got {value!r}"
        )
    return value


def check_class_names(class_names, what):
    """`class_names` as a tuple of unique, non-empty strings, or `ValueError`."""
    names = tuple(class_names)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ValueError(f"{what}: class_names must be non-empty strings, got {names!r}")
    duplicates = sorted({c for c in names if names.count(c) > 1})
    if duplicates:
        raise ValueError(f"{what}: class_names must be unique (repeated: {duplicates})")
    return names


def file_stem_for(image_id, taken):
    """A file-name-safe stem for a record's `image_id`, not in `taken` (added
    to it): `train/a b` becomes `train_a_b`, a repeat gets `_2`, `_3`, ..."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id)).strip("._") or "image"
    stem, n = base, 1
    while stem in taken:
        n += 1
        stem = f"{base}_{n}"
    taken.add(stem)
    return stem


def _frozen(array):
    array.flags.writeable = False
    return array


def make_record(image_id, image_path, width, height, boxes, labels, difficult,
                crowd=None):
    """Build one dataset record with the documented dtypes and shapes.

    `crowd` (bool `(G,)`, COCO `iscrowd`; default all False) marks regions
    that are never trained as positives (see `keras_ssd.TargetEncoder`).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if crowd is None:
        crowd = np.zeros(boxes.shape[0], dtype=bool)
    return {
        "image_id": image_id,
        "image_path": str(image_path),
        "width": int(width),
        "height": int(height),
        "boxes": _frozen(boxes),
        "labels": _frozen(np.asarray(labels, dtype=np.int64).reshape(-1)),
        "difficult": _frozen(np.asarray(difficult, dtype=bool).reshape(-1)),
        "crowd": _frozen(np.asarray(crowd, dtype=bool).reshape(-1)),
    }


def check_boxes(path, boxes, names, width, height, objects=None):
    """Validate continuous-pixel xyxy boxes against the image size.

    Raises `DataError` for non-finite, inverted, empty or entirely-outside
    boxes; returns the boxes clipped to the image (a box that only sticks
    out is kept, cut at the border) and how many were clipped. `objects`
    optionally names where each box is written (e.g. `"line 3"`; default
    `"object j"`).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for j, (box, name) in enumerate(zip(boxes, names)):
        x0, y0, x1, y1 = box
        obj = f"object {j}" if objects is None else objects[j]
        what = f"{obj} ({name!r}) box [xmin={x0:g}, ymin={y0:g}, xmax={x1:g}, ymax={y1:g}]"
        if not np.all(np.isfinite(box)):
            raise DataError(path, f"{what} is not finite")
        if x1 < x0 or y1 < y0:
            raise DataError(path, f"{what} is inverted (max < min)")
        if x1 == x0 or y1 == y0:
            raise DataError(path, f"{what} is empty (zero width or height)")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise DataError(
                path, f"{what} lies entirely outside the {width}x{height} image"
            )
    clipped = boxes.copy()
    if boxes.size:
        clipped[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        clipped[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    num_clipped = int(np.any(clipped != boxes, axis=1).sum()) if boxes.size else 0
    return clipped, num_clipped


class DetectionDataset:
    """Base class: a list of records plus image loading.

    Subclasses fill `self.records` (see `make_record`) and `self.class_names`.
    Records are dicts with `image_id`, `image_path`, `width`, `height`,
    `boxes` float32 `(G, 4)` continuous pixel xyxy, `labels` int64 `(G,)`
    0-based, `difficult` bool `(G,)` and `crowd` bool `(G,)` (arrays are
    read-only).
    """

    records = ()
    class_names = ()
    skipped = ()
    num_clipped_boxes = 0
    dropped_boxes = ()

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        n = len(self.records)
        if not -n <= index < n:
            raise IndexError(f"record {index} out of range for a dataset of {n} records")
        return dict(self.records[index])

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def num_skipped(self):
        """How many records were left out in `on_error="skip"` mode."""
        return len(self.skipped)

    @property
    def num_dropped_boxes(self):
        """How many empty (zero-width or zero-height) boxes were left out."""
        return len(self.dropped_boxes)

    # ------------------------------------------------ shared by the readers
    def _begin(self, on_error, what):
        """Reset the counters; the `ErrorLog` of a reader named `what`."""
        log = ErrorLog(on_error, what)
        self.on_error = log.on_error
        self.num_clipped_boxes = 0
        self.dropped_boxes = []
        return log

    def _read_all(self, items, read_one, log):
        """Fill `records` with `read_one(item)` for each item under `log`'s policy.

        A `DataError` from `read_one` is raised (`on_error="raise"`) or logged
        and the item left out (`"skip"`); sets `.records` and `.skipped` and
        logs the counts of skipped records, clipped and dropped boxes.
        """
        records = []
        items = list(items)
        for item in items:
            try:
                records.append(read_one(item))
            except DataError as e:
                log.handle(e)
        log.summarise(len(items))
        self.records = records
        self.skipped = log.skipped
        if self.num_clipped_boxes:
            logger.info("%s: clipped %d boxes to their image", log.what, self.num_clipped_boxes)
        if self.dropped_boxes:
            logger.warning(
                "%s: dropped %d empty boxes (zero width or height; see the warnings "
                "above, or the dataset's `.dropped_boxes` list)",
                log.what, len(self.dropped_boxes))

    def _drop_box(self, where, problem):
        """Leave one empty box out of its record, with a warning and a count."""
        self.dropped_boxes.append((str(where), str(problem)))
        logger.warning("%s: dropped %s", where, problem)

    def _image_size(self, where, path, width=None, height=None):
        """`(width, height)` of a record's image under `self.check_images`.

        The image must exist (unless `check_images="none"` and the size is
        known); without a known size its header is read whatever the mode.
        `where` names the annotation in the error.
        """
        mode = getattr(self, "check_images", "exists")
        if mode == "none" and width and height:
            return int(width), int(height)
        if not os.path.isfile(path):
            raise DataError(where, f"its image is missing: {path} not found")
        return self._verify_image(path, width, height, "exists" if mode == "none" else mode)

    def _make_checked_record(self, where, image_id, image_path, width, height, boxes, names,
                             labels, difficult, objects=None, crowd=None):
        """`check_boxes` (errors, clipping counted), then `make_record`."""
        boxes, clipped = check_boxes(where, boxes, names, width, height, objects)
        self.num_clipped_boxes += clipped
        return make_record(image_id, image_path, width, height, boxes, labels, difficult,
                           crowd)

    def load_pil_image(self, index, reduce_factor=1):
        """Decode record `index`'s image as an RGB PIL image.

        Returns `(image, k)`, see `keras_ssd.data.images.decode_image`; the
        image size is checked against the record's `width` and `height`.
        """
        rec = self.records[index]
        return decode_image(
            rec["image_path"], (rec["width"], rec["height"]), reduce_factor
        )

    def load_image(self, index):
        """Record `index`'s image as RGB uint8 `(H, W, 3)` (displayed orientation)."""
        img, _ = self.load_pil_image(index)
        return np.asarray(img, dtype=np.uint8)

    def _verify_image(self, path, width, height, mode):
        """Check an image file at dataset construction; return its size."""
        if mode == "none":
            return width, height
        if mode == "exists" and width and height:
            if not os.path.isfile(path):
                raise DataError(path, "image file not found")
            return width, height
        if mode == "decode":
            img, _ = decode_image(path, (width, height) if width and height else None)
            return img.size
        w, h = image_size(path)
        if width and height and (w, h) != (width, height):
            raise DataError(
                path,
                f"image is {w}x{h} (width x height, EXIF orientation applied) but "
                f"its annotation says {width}x{height}",
            )
        return w, h

    def class_counts(self):
        """Number of boxes per class over the whole dataset, `(num_classes,)`."""
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for rec in self.records:
            np.add.at(counts, rec["labels"], 1)
        return counts
