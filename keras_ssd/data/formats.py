"""One entry point for every dataset format: `load_dataset(path, format=None)`
tells VOC, COCO, YOLO and CSV apart by their layout."""

import os

from keras_ssd.data.errors import DataError

#: The formats `load_dataset` reads, in the order `sniff_format` tries them.
FORMATS = ("voc", "coco", "yolo", "csv")

_LAYOUTS = (
    "Pascal VOC (Annotations/ + ImageSets/Main/<split>.txt), "
    "COCO (a .json annotation file, or a folder with annotations/*.json), "
    "YOLO (a data.yaml, or images/ + labels/) or "
    "CSV (a .csv file, or a folder with one)"
)


def _files(folder, suffixes):
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [n for n in names if n.lower().endswith(suffixes)
            and os.path.isfile(os.path.join(folder, n))]


def _is_voc(path):
    return (os.path.isdir(os.path.join(path, "Annotations"))
            and os.path.isdir(os.path.join(path, "ImageSets")))


def _is_yolo(path):
    from keras_ssd.data.yolo import YAML_NAMES

    if any(os.path.isfile(os.path.join(path, n)) for n in YAML_NAMES):
        return True
    return (os.path.isdir(os.path.join(path, "images"))
            and os.path.isdir(os.path.join(path, "labels")))


def _coco_files(path):
    found = [os.path.join("annotations", n)
             for n in _files(os.path.join(path, "annotations"), (".json",))]
    found += _files(path, (".json",))
    return found


def _csv_files(path):
    return [n for n in _files(path, (".csv",)) if not _is_class_file_name(n)]


def _is_class_file_name(name):
    stem = os.path.splitext(os.path.basename(name))[0].lower()
    return stem in ("classes", "class_map", "class_mapping")


def sniff_format(path):
    """The format of the dataset at `path`: `"voc"`, `"coco"`, `"yolo"` or `"csv"`.

    A file is told by its suffix (`.json` COCO, `.yaml`/`.yml` YOLO, `.csv`
    CSV); a folder by what it holds, tried in this order: `Annotations/` +
    `ImageSets/` (VOC), a `data.yaml` or `images/` + `labels/` (YOLO), a
    `.json` in it or in `annotations/` (COCO), a `.csv` (CSV).

    Raises:
        DataError: naming the path, when it is missing or none of these,
        listing the layouts understood.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(path, "dataset not found")
    if os.path.isfile(path):
        lower = path.lower()
        for suffixes, fmt in (((".json",), "coco"), ((".yaml", ".yml"), "yolo"),
                              ((".csv",), "csv")):
            if lower.endswith(suffixes):
                return fmt
        raise DataError(path, f"cannot tell the dataset format of this file; expected {_LAYOUTS}")
    if _is_voc(path):
        return "voc"
    if _is_yolo(path):
        return "yolo"
    if _coco_files(path):
        return "coco"
    if _csv_files(path):
        return "csv"
    raise DataError(path, f"cannot tell the dataset format of this folder; expected "
                          f"{_LAYOUTS} (or pass format=)")


def check_format(format):
    """`format` as one of `FORMATS` (`None` and `"auto"` give `None`)."""
    if format is None or format == "auto":
        return None
    key = str(format).lower()
    if key not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)} (or None / 'auto' to "
                         f"tell from the layout), got {format!r}")
    return key


def _pick(path, candidates, split, what):
    """The one annotation file of a folder: `split`'s, else the only one."""
    if not candidates:
        raise DataError(path, f"no {what} file found")
    if split is not None:
        stem = str(split).lower()
        for c in candidates:
            name = os.path.splitext(os.path.basename(c))[0].lower()
            if name in (stem, f"instances_{stem}", f"{stem}_annotations", f"annotations_{stem}"):
                return c
        raise DataError(path, f"no {what} file for split {split!r} (found "
                              f"{', '.join(candidates)})")
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(path, f"several {what} files ({', '.join(candidates)}): give split= "
                          "(its name, e.g. 'val2017' for instances_val2017.json) or the file")


def coco_image_dir(annotation_json):
    """Where the images of a COCO JSON are, when not given.

    In the standard layout (`root/annotations/instances_val2017.json`) the
    first folder found of `root/val2017`, `root/images/val2017`,
    `root/images`, `root`; otherwise the JSON's own folder (as Roboflow's
    `train/_annotations.coco.json` beside its images).
    """
    folder = os.path.dirname(os.path.abspath(annotation_json))
    if os.path.basename(folder) != "annotations":
        return folder
    root = os.path.dirname(folder)
    stem = os.path.splitext(os.path.basename(annotation_json))[0]
    if stem.startswith("instances_"):
        stem = stem[len("instances_"):]
    for candidate in (os.path.join(root, stem), os.path.join(root, "images", stem),
                      os.path.join(root, "images")):
        if os.path.isdir(candidate):
            return candidate
    return root


def load_dataset(path, format=None, split=None, class_names=None, **kwargs):
    """Read a detection dataset in any supported format.

    Args:
        path: the dataset: a folder, or its annotation file (COCO `.json`,
            YOLO `.yaml`, `.csv`). VOC also takes a list of year folders
            (VOC07+12).
        format: `"voc"`, `"coco"`, `"yolo"`, `"csv"`, or `None` / `"auto"`
            to tell from the layout (`sniff_format`).
        split: the split to read. VOC: the `ImageSets/Main` list (default
            `"trainval"`); YOLO: the YAML key or `images/` subfolder (default
            `"train"`); COCO and CSV given a folder: picks the annotation file
            (`instances_<split>.json`, `<split>.json`, `<split>.csv`; default:
            the folder's only one); ignored for a COCO/CSV file.
        class_names: the class names in label order. Default: the format's
            own (VOC: `VOC_CLASSES`; COCO: every category; YOLO: `data.yaml` /
            `classes.txt`, which must match when both are given; CSV: a class
            file, else the names in the rows, sorted).
        **kwargs: passed to the reader (`on_error`, `check_images`, ...;
            COCO: `image_dir`, default `coco_image_dir(json)`; CSV:
            `class_file`, default a `classes.csv` beside the annotations).

    Returns:
        a `VOCDataset`, `COCODataset`, `YOLODataset` or `CSVDataset`: the
        same record interface for `SSDSequence`, `evaluate` and the rest.

    Raises:
        DataError: naming the path, for a layout it cannot tell (listing the
        formats understood) or bad data.

    Example:

    >>> train = load_dataset("datasets/my_set")               # sniffed: YOLO
    >>> val = load_dataset("datasets/my_set", split="val")
    >>> test = load_dataset("labels.csv", class_names=train.class_names)
    """
    format = check_format(format)
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else None
    if paths is not None:
        if not paths:
            raise ValueError("load_dataset: path lists no dataset")
        if len(paths) > 1:
            formats = {format or sniff_format(p) for p in paths}
            if formats != {"voc"}:
                raise ValueError("load_dataset: several paths are read only as VOC year "
                                 f"folders (VOC07+12); got formats {sorted(formats)}")
            format = "voc"
        else:
            path = paths[0]
            paths = None
    if paths is None:
        path = os.fspath(path)
        if format is None:
            format = sniff_format(path)
        elif not os.path.exists(path):
            raise DataError(path, "dataset not found")
    if format == "voc":
        from keras_ssd.data.voc import VOC_CLASSES, VOCDataset

        return VOCDataset(paths or path, split="trainval" if split is None else split,
                          class_names=VOC_CLASSES if class_names is None else class_names,
                          **kwargs)
    if format == "yolo":
        from keras_ssd.data.yolo import YOLODataset

        return YOLODataset(path, split="train" if split is None else split,
                           class_names=class_names, **kwargs)
    if format == "coco":
        from keras_ssd.data.coco import COCODataset

        json_path = path
        if os.path.isdir(path):
            json_path = os.path.join(path, _pick(path, _coco_files(path), split, "COCO .json"))
        image_dir = kwargs.pop("image_dir", None) or coco_image_dir(json_path)
        return COCODataset(json_path, image_dir, class_names=class_names, **kwargs)
    from keras_ssd.data.csv_dataset import CSVDataset

    csv_path = path
    if os.path.isdir(path):
        csv_path = os.path.join(path, _pick(path, _csv_files(path), split, ".csv"))
    if "class_file" not in kwargs:
        beside = os.path.join(os.path.dirname(csv_path), "classes.csv")
        if os.path.isfile(beside) and os.path.abspath(beside) != os.path.abspath(csv_path):
            kwargs["class_file"] = beside
    return CSVDataset(csv_path, class_names=class_names, **kwargs)
