"""YOLO / Ultralytics layout reader: `images/` + `labels/`, one
`class cx cy w h` line per object, class names from `data.yaml` or
`classes.txt`."""

import math
import os

import yaml

from keras_ssd.data.dataset import (
    DetectionDataset,
    check_check_images,
    check_class_names,
    file_stem_for,
)
from keras_ssd.data.errors import DataError

#: File endings read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

#: The names `YOLODataset` looks for when given a folder.
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
CLASS_FILE_NAMES = ("classes.txt", "obj.names")


def _is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_images(folder):
    """Image files under `folder` (recursively), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in filenames if _is_image(f)]
    return sorted(found, key=lambda p: os.path.relpath(p, folder).replace(os.sep, "/"))


def label_path_for(image_path):
    """The label file of an image, by the Ultralytics rule: the last
    `/images/` folder of the path becomes `/labels/`, the suffix `.txt`
    (an image outside any `images/` folder has its `.txt` beside it)."""
    head, _ = os.path.splitext(image_path)
    marker = f"{os.sep}images{os.sep}"
    if marker in head:
        before, _, after = head.rpartition(marker)
        head = f"{before}{os.sep}labels{os.sep}{after}"
    elif head.startswith(f"images{os.sep}"):
        head = "labels" + head[len("images"):]
    return head + ".txt"


#: The most bytes a dataset YAML or a class file may hold (real ones hold
#: a few kB; the bound keeps a hostile one from filling memory).
MAX_YAML_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses aliases (`*name`): a few lines of
    nested aliases expand to billions of nodes (the "billion laughs"), and
    no dataset YAML needs them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} refused (aliases are not read)",
                event.start_mark)
        return super().compose_node(parent, index)


def _read_bounded_text(path, what):
    """The text of a small UTF-8 file (a byte-order mark dropped), refused
    beyond `MAX_YAML_BYTES`."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise DataError(path, f"{what} not found") from None
    except OSError as e:
        raise DataError(path, f"cannot read {what} ({e})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise DataError(path, f"{what} is larger than {MAX_YAML_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"cannot read {what} ({e})") from None


def read_yolo_yaml(path):
    """Read an Ultralytics dataset YAML (safe loading, aliases refused,
    at most `MAX_YAML_BYTES`).

    Returns:
        dict with `names` (a list, or None when the file has none), `base`
        (the folder split paths are relative to: `path:` resolved against
        the YAML's folder, or that folder) and `splits` (split name ->
        the list of entries given, e.g. `{"train": ["images/train"]}`).

    Raises:
        DataError: naming the file, for unreadable YAML or malformed `names`.
    """
    text = _read_bounded_text(path, "dataset YAML")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        problem = " ".join(str(e).split())[:300]
        raise DataError(path, f"malformed YAML ({problem})") from None
    except RecursionError:
        raise DataError(path, "YAML nested too deeply to read") from None
    except ValueError as e:  # an integer of thousands of digits
        raise DataError(path, f"unreadable YAML value ({str(e).split(';')[0]})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a mapping with 'names' and 'train'/'val'/'test' paths")
    folder = os.path.dirname(os.path.abspath(path))
    base = data.get("path")
    if base is None or str(base).strip() == "":
        base = folder
    else:
        base = os.path.join(folder, os.path.expanduser(str(base)))
    names = data.get("names")
    if names is not None:
        names = _names_from_yaml(path, names, data.get("nc"))
    splits = {}
    for key, value in data.items():
        if key in ("path", "names", "nc", "download") or value is None:
            continue
        if isinstance(value, str):
            splits[str(key)] = [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            splits[str(key)] = list(value)
    return {"names": names, "base": os.path.normpath(base), "splits": splits}


def _names_from_yaml(path, names, nc):
    if isinstance(names, dict):
        if not all(type(k) is int for k in names):
            raise DataError(path, f"'names' keys must be class ids 0, 1, ...; got "
                                  f"{sorted(map(repr, names))[:20]}")
        by_id = {k: _class_name(path, f"names[{k}]", v) for k, v in names.items()}
        if sorted(by_id) != list(range(len(by_id))):
            raise DataError(path, f"'names' ids must be 0..{len(by_id) - 1} without gaps; "
                                  f"got {sorted(by_id)}")
        names = [by_id[i] for i in range(len(by_id))]
    elif isinstance(names, list):
        names = [_class_name(path, f"names[{i}]", n) for i, n in enumerate(names)]
    else:
        raise DataError(path, f"'names' must be a list or a mapping id -> name, got "
                              f"{type(names).__name__}")
    if nc is not None and (type(nc) is not int or nc != len(names)):
        raise DataError(path, f"'nc' is {nc} but 'names' lists {len(names)} classes")
    try:
        return list(check_class_names(names, "names"))
    except ValueError as e:
        raise DataError(path, str(e)) from None


def _class_name(path, where, value):
    """One `names` entry: a string, or an integer (YAML reads `- 7` as one);
    a list, mapping, boolean, float or null is refused, not turned into text."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise DataError(path, f"{where} is {value!r:.80}, not a class name (a string)")


def _read_class_file(path):
    names = [line.strip() for line in _read_bounded_text(path, "class file").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or any(not n for n in names):
        raise DataError(path, "class file must list one non-empty class name per line")
    try:
        return list(check_class_names(names, "class file"))
    except ValueError as e:
        raise DataError(path, str(e)) from None


def _resolve_entry(base, entry):
    """A `train:`/`val:` entry: relative to `base`; Ultralytics also drops
    a leading `../` that does not exist (Roboflow's exports rely on it)."""
    path = os.path.normpath(os.path.join(base, os.path.expanduser(entry)))
    if not os.path.exists(path) and entry.startswith("../"):
        alt = os.path.normpath(os.path.join(base, entry[3:]))
        if os.path.exists(alt):
            return alt
    return path


def _images_of_entry(yaml_path, base, entry):
    path = _resolve_entry(base, entry)
    if os.path.isdir(path):
        return _list_images(path), path
    if os.path.isfile(path) and path.lower().endswith(".txt"):
        # A list of image paths, one per line, relative to the list's folder
        # (Ultralytics' `./images/train2017/a.jpg` beside `train2017.txt`).
        try:
            with open(path, encoding="utf-8-sig") as f:
                lines = [line.strip() for line in f]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(path, f"cannot read image list ({e})") from None
        folder = os.path.dirname(path)
        images = [os.path.normpath(os.path.join(folder, line)) for line in lines if line]
        return images, os.path.dirname(path)
    raise DataError(yaml_path, f"split path {entry!r} not found ({path})")


def _find_first(folders, names):
    for folder in folders:
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    return None


class YOLODataset(DetectionDataset):
    """YOLO / Ultralytics-format detection data.

    Layouts read:

    * a dataset YAML (`data.yaml`, given or found in the folder): `names:`
      as a list or as a mapping id -> name; `train:` / `val:` / `test:` a
      folder of images, a `.txt` list of image paths (relative to the
      list's folder), or a list of those, relative to `path:` (itself
      relative to the YAML's folder) or to the YAML's folder;
    * a folder with `images/<split>/` and `labels/<split>/`, or a flat
      `images/` + `labels/` (one split, whatever `split` says), with the
      class names in `classes.txt` (in the folder, in `labels/` or in
      `labels/<split>/`) or given as `class_names`.

    Each image's label file is found by the Ultralytics rule (the last
    `images` folder of its path becomes `labels`, the suffix `.txt`) and holds
    one `class cx cy w h` line per object, normalised to 0..1 by the image
    size (read from the image header, EXIF orientation applied). Records
    hold the continuous-pixel box `[(cx - w/2) W, (cy - h/2) H, (cx + w/2) W,
    (cy + h/2) H]`. An image without a label file, or with an empty one, is
    a background image (empty arrays).

    Bad input, each a `DataError` naming the file and the line: a wrong
    number of fields (5: segmentation polygons are not read), a field that
    is not a number, a class id that is not an integer in `0..K-1`, a box
    outside `[0, 1]` by more than `tolerance` (within it, the box is clipped
    and counted in `.num_clipped_boxes`), a negative size, a missing image
    in a `.txt` list. `on_error="skip"` logs it and leaves that image out
    (`.skipped`, `.num_skipped`), as `VOCDataset` does with a bad XML. An
    empty box (zero width or height) is left out in either mode with a
    warning and its image kept (`.dropped_boxes`, `.num_dropped_boxes`).

    Args:
        root_or_yaml: the dataset folder, or its YAML file.
        split: `"train"`, `"val"`, `"test"` (a YAML key, or a folder under
            `images/`).
        class_names: the class names, in class-id order. Default: from the
            YAML or `classes.txt`. When both are there they must agree.
        on_error: `"raise"` or `"skip"`.
        check_images: `"header"` (default: read each image's size),
            `"decode"` (fully decode each image: slow, finds truncated
            files); `"exists"` and `"none"` read the header too, as the
            normalised boxes need the size.
        tolerance: how far outside `[0, 1]` a coordinate may lie and still
            be clipped rather than rejected (default 0.01).

    Example:

    >>> train = YOLODataset("datasets/coco8/coco8.yaml", split="train")
    >>> val = YOLODataset("datasets/my_set", split="val")
    """

    def __init__(self, root_or_yaml, split="train", class_names=None, on_error="raise",
                 check_images="header", tolerance=0.01):
        source = os.fspath(root_or_yaml)
        self.split = split
        self.check_images = check_check_images(check_images)
        self.tolerance = float(tolerance)
        if not self.tolerance >= 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
        if os.path.isdir(source):
            self.root = source
            self.yaml_path = _find_first([source], YAML_NAMES)
        elif os.path.isfile(source):
            self.root = os.path.dirname(source) or "."
            self.yaml_path = source
        else:
            raise DataError(source, "YOLO dataset folder or YAML file not found")

        names, images, folders = self._locate(split)
        self.class_names = self._class_names(names, class_names, folders)
        log = self._begin(on_error, f"YOLODataset({split!r})")
        self._read_all(images, self._read_image, log)

    # ---------------------------------------------------------- layout
    def _locate(self, split):
        """`(names or None, image paths, folders to look for classes.txt in)`."""
        if self.yaml_path is not None:
            info = read_yolo_yaml(self.yaml_path)
            self.base = info["base"]
            entries = info["splits"].get(split)
            if entries is None:
                raise DataError(self.yaml_path, f"no split {split!r} (it lists "
                                                f"{', '.join(sorted(info['splits'])) or 'none'})")
            images, folders = [], [self.root, self.base]
            for entry in entries:
                found, folder = _images_of_entry(self.yaml_path, self.base, entry)
                images += found
                folders.append(os.path.dirname(label_path_for(os.path.join(folder, "x.jpg"))))
            return info["names"], images, folders
        self.base = self.root
        image_root = os.path.join(self.root, "images")
        if not os.path.isdir(image_root):
            raise DataError(self.root, "not a YOLO dataset: no data.yaml and no images/ folder")
        split_dir = os.path.join(image_root, str(split))
        label_root = os.path.join(self.root, "labels")
        if os.path.isdir(split_dir):
            folders = [self.root, label_root, os.path.join(label_root, str(split))]
            return None, _list_images(split_dir), folders
        subfolders = sorted(d for d in os.listdir(image_root)
                            if os.path.isdir(os.path.join(image_root, d)))
        if any(_is_image(f) for f in os.listdir(image_root)) or not subfolders:
            # A flat images/ + labels/: the folder is its one split.
            return None, _list_images(image_root), [self.root, label_root]
        raise DataError(image_root, f"no split folder {split!r} (found "
                                    f"{', '.join(subfolders)})")

    def _class_names(self, names, class_names, folders):
        source = self.yaml_path if names is not None else None
        if names is None:
            class_file = _find_first(folders, CLASS_FILE_NAMES)
            if class_file is not None:
                names, source = _read_class_file(class_file), class_file
        if class_names is not None:
            class_names = check_class_names(class_names, "YOLODataset")
            if names is not None and list(class_names) != list(names):
                raise DataError(source, f"lists the classes {list(names)}, which differ from "
                                        f"the class_names asked for {list(class_names)} "
                                        "(same names in the same order needed: class ids "
                                        "index into them)")
            return class_names
        if names is None:
            raise DataError(self.yaml_path or self.root,
                            "no class names: give class_names, or a data.yaml with "
                            "'names:', or a classes.txt")
        self.class_names_file = source
        return tuple(names)

    # ---------------------------------------------------------- records
    def _read_image(self, image_path):
        label_path = label_path_for(image_path)
        width, height = self._image_size(label_path, image_path)
        rows = self._read_label_file(label_path)
        boxes, names, labels, lines = [], [], [], []
        tol = self.tolerance
        k = len(self.class_names)
        for lineno, fields in rows:
            def bad(problem):
                return DataError(label_path, f"line {lineno}: {problem} "
                                             f"(line: {' '.join(fields)!r})")

            if len(fields) != 5:
                raise bad(f"expected 5 fields 'class cx cy w h', got {len(fields)}"
                          + (" (segmentation polygons are not read)" if len(fields) > 5 else ""))
            try:
                class_value = float(fields[0])
                cx, cy, w, h = (float(v) for v in fields[1:])
            except ValueError:
                raise bad("a field is not a number") from None
            if not all(math.isfinite(v) for v in (class_value, cx, cy, w, h)):
                raise bad("a field is not finite")
            if class_value != int(class_value) or not 0 <= class_value < k:
                raise bad(f"class id {fields[0]} is not one of 0..{k - 1} "
                          f"({k} classes)")
            label = int(class_value)
            if w < 0 or h < 0:
                raise bad(f"negative box size w={w:g}, h={h:g}")
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            if min(x0, y0, cx, cy) < -tol or max(x1, y1, cx, cy, w, h) > 1 + tol:
                raise bad(f"box [cx={cx:g}, cy={cy:g}, w={w:g}, h={h:g}] lies outside the "
                          f"image (normalised coordinates must be within [0, 1], "
                          f"give or take {tol:g})")
            if w == 0 or h == 0:
                self._drop_box(label_path, f"line {lineno}: box of class "
                                           f"{self.class_names[label]!r} is empty (zero "
                                           f"width or height)")
                continue
            boxes.append((x0 * width, y0 * height, x1 * width, y1 * height))
            names.append(self.class_names[label])
            labels.append(label)
            lines.append(f"line {lineno}")
        image_id = os.path.splitext(os.path.relpath(image_path, self.base))[0]
        return self._make_checked_record(label_path, image_id.replace(os.sep, "/"), image_path,
                                         width, height, boxes, names, labels,
                                         [False] * len(labels), lines)

    @staticmethod
    def _read_label_file(path):
        """`[(line number, fields)]` of the non-blank lines; `[]` without a file."""
        try:
            # utf-8-sig: Windows editors start the file with a byte-order mark
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(path, f"cannot read label file ({e})") from None
        return [(i, line.split()) for i, line in enumerate(text.splitlines(), 1)
                if line.strip()]


def write_yolo(dataset, out_dir, split="train"):
    """Write any detection dataset out in the YOLO / Ultralytics layout.

    Images are copied as they are into `images/<split>/`, one
    `labels/<split>/<id>.txt` per image with a `label cx cy w h` line per
    box (normalised, 6 decimals; none for a background image), and
    `data.yaml` gets `path: .`, `names:` and `<split>: images/<split>` (an
    existing `data.yaml` keeps its other splits; its names must agree).
    Difficult / crowd flags are not part of the format and are lost.

    Args:
        dataset: a records-interface dataset (`ds[i]`, `ds.class_names`).
        out_dir: the dataset folder (created).
        split: the split name.

    Returns:
        the path of `data.yaml`.
    """
    import shutil

    import numpy as np

    out_dir = os.fspath(out_dir)
    image_dir = os.path.join(out_dir, "images", split)
    label_dir = os.path.join(out_dir, "labels", split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    names = [str(n) for n in dataset.class_names]
    yaml_path = os.path.join(out_dir, "data.yaml")
    data = {"path": ".", "names": dict(enumerate(names))}
    if os.path.isfile(yaml_path):
        old = read_yolo_yaml(yaml_path)
        if old["names"] is not None and old["names"] != names:
            raise DataError(yaml_path, f"lists the classes {old['names']}, not the dataset's "
                                       f"{names}")
        data.update({k: (v[0] if len(v) == 1 else v) for k, v in old["splits"].items()})
    taken = set()
    for i in range(len(dataset)):
        rec = dataset[i]
        stem = file_stem_for(rec["image_id"], taken)
        ext = os.path.splitext(rec["image_path"])[1] or ".jpg"
        shutil.copyfile(rec["image_path"], os.path.join(image_dir, stem + ext))
        w, h = float(rec["width"]), float(rec["height"])
        boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4)
        lines = [
            f"{int(label)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
            f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n"
            for (x0, y0, x1, y1), label in zip(boxes, rec["labels"])
        ]
        with open(os.path.join(label_dir, stem + ".txt"), "w", encoding="utf-8") as f:
            f.write("".join(lines))
    data[split] = f"images/{split}"
    with open(yaml_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return yaml_path
