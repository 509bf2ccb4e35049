"""COCO instances-JSON reader with the same record interface as VOC."""

import json
import math
import os
import re

from keras_ssd.data.dataset import DetectionDataset, check_check_images
from keras_ssd.data.errors import DataError

_DIGITS = re.compile(r"-?[0-9]{1,18}")


def _short(value, limit=120):
    """`repr(value)` cut to `limit` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_json(path, what="annotation file"):
    """Parse a JSON file; every failure is a `DataError` naming the file.

    Besides malformed text this covers what `json` raises for hostile
    input that is valid JSON: nesting deeper than the interpreter's
    recursion limit and integers longer than Python converts (4300 digits).
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(path, f"{what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"malformed JSON ({e})") from None
    except RecursionError:
        raise DataError(path, "JSON nested too deeply to read") from None
    except ValueError as e:  # an integer of thousands of digits
        raise DataError(path, f"unreadable JSON value ({str(e).split(';')[0]})") from None
    except OSError as e:
        raise DataError(path, f"cannot read {what} ({e})") from None


def _load_json(path):
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing or non-list '{key}' field")
    return data


def _as_id(value):
    """An id field as an int, or None: a JSON integer, an integral float or a
    string of decimal digits (as some exporters write them); never a bool."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _size_field(value):
    """A `width`/`height` field: a positive integer, or 0 when absent."""
    if value is None:
        return 0
    if _is_number(value) and math.isfinite(value) and value == int(value) and value >= 0:
        return int(value)
    return None


def _categories(path, entries):
    """`{category id: name}`, checked: objects with an integer id and a
    non-empty string name, no id or name twice (either would relabel)."""
    cats, first_of_id, first_of_name = {}, {}, {}
    for i, c in enumerate(entries):
        where = f"categories[{i}]"
        if not isinstance(c, dict):
            raise DataError(path, f"{where} is {_short(c)}, not an object")
        cid, name = _as_id(c.get("id")), c.get("name")
        if cid is None:
            raise DataError(path, f"{where}: 'id' must be an integer, got "
                                  f"{_short(c.get('id'))}")
        if not isinstance(name, str) or not name.strip():
            raise DataError(path, f"{where}: 'name' must be a non-empty string, got "
                                  f"{_short(name)}")
        if cid in first_of_id:
            raise DataError(path, f"{where}: category id {cid} repeated (first in "
                                  f"categories[{first_of_id[cid]}])")
        if name in first_of_name:
            raise DataError(path, f"{where}: category name {name!r} repeated (first in "
                                  f"categories[{first_of_name[name]}])")
        first_of_id[cid], first_of_name[name] = i, i
        cats[cid] = name
    return cats


class COCODataset(DetectionDataset):
    """COCO-format detection data (an `instances_*.json` file and its images).

    COCO boxes `[x, y, w, h]` are continuous pixels, so records hold `[x, y,
    x + w, y + h]`. Category ids (sparse in COCO: 1..90) map to contiguous
    0-based labels in increasing id order (or in the order of `class_names`);
    `.category_ids[label]` and `.label_of_category[cat_id]` keep the mapping
    for writing results back in COCO ids. Crowd annotations (`iscrowd=1`)
    are kept and flagged in both `crowd` and `difficult`: training never
    makes them positives and ignores the priors they cover (`SSDSequence`,
    `keras_ssd.TargetEncoder`), evaluation scores them as COCO crowd regions.
    Images without annotations are kept with empty arrays.

    Entries are checked before use, each problem a `DataError` naming the
    file and the entry (`images[3]`, `annotations[12]`, `categories[0]`):
    a category that is not an object with an integer `id` and a string
    `name`, or whose id or name repeats, fails the whole file; an image entry
    that is not an object, lacks an integer `id`, or repeats another's id,
    and an annotation whose `image_id` no image has, are bad records (raised,
    or skipped and counted with `on_error="skip"`). `iscrowd` must be 0, 1
    or a JSON boolean.

    Args:
        annotation_json: path of the instances JSON.
        image_dir: directory holding the images (`file_name` is relative to it).
        class_names: optional list of category names to keep, in label
            order; annotations of other categories are dropped. Default: all
            categories in id order.
        on_error: `"raise"` or `"skip"` (see `VOCDataset`); a bad annotation
            (unknown category id, inverted or outside box) rejects its image.
            An empty box (zero width or height) is left out in either mode,
            with a warning, and its image kept (`.dropped_boxes`,
            `.num_dropped_boxes`).
        check_images: see `VOCDataset`.
    """

    def __init__(self, annotation_json, image_dir, class_names=None,
                 on_error="raise", check_images="exists"):
        path = os.fspath(annotation_json)
        self.annotation_json = path
        self.image_dir = os.fspath(image_dir)
        self.check_images = check_check_images(check_images)
        data = _load_json(path)
        cats = _categories(path, data["categories"])
        if class_names is None:
            ids = sorted(cats)
        else:
            by_name = {n: i for i, n in cats.items()}
            missing = [n for n in class_names if n not in by_name]
            if missing:
                raise DataError(path, f"class_names not among the categories: {missing}")
            ids = [by_name[n] for n in class_names]
        self.category_ids = tuple(ids)
        self.label_of_category = {cid: i for i, cid in enumerate(ids)}
        self.class_names = tuple(cats[i] for i in ids)
        log = self._begin(on_error, f"COCODataset({os.path.basename(path)!r})")

        images = self._image_entries(path, data["images"], log)
        per_image = {}
        for i, a in enumerate(data["annotations"]):
            image_id = _as_id(a.get("image_id")) if isinstance(a, dict) else None
            if image_id is None:
                raise DataError(path, f"annotations[{i}]: malformed annotation entry "
                                      f"{_short(a, 200)} (an object with an integer "
                                      "'image_id' expected)")
            if image_id not in images:
                log.handle(DataError(path, f"annotations[{i}] (id {_short(a.get('id'))}) "
                                           f"points to image id {image_id}, which no image "
                                           "entry has"))
                continue
            per_image.setdefault(image_id, []).append((i, a))

        entries = [images[k] for k in sorted(images)]
        self._read_all(entries, lambda e: self._read_image(path, e, per_image, cats), log)

    @staticmethod
    def _image_entries(path, entries, log):
        """`{image id: (index, entry)}` of the well-formed image entries; a
        malformed one, or every entry of a repeated id, goes to `log`."""
        images, repeated = {}, set()
        for i, im in enumerate(entries):
            image_id = _as_id(im.get("id")) if isinstance(im, dict) else None
            if image_id is None:
                log.handle(DataError(path, f"images[{i}]: malformed image entry "
                                           f"{_short(im, 200)} (an object with an integer "
                                           "'id' expected)"))
                continue
            if image_id in images or image_id in repeated:
                first = images.pop(image_id, None)
                repeated.add(image_id)
                log.handle(DataError(path, f"images[{i}]: image id {image_id} repeated"
                                           + (f" (first in images[{first[0]}])" if first
                                              else "")
                                           + "; its annotations would be ambiguous"))
                continue
            images[image_id] = (i, im)
        return images

    def _read_image(self, path, entry, per_image, cats):
        index, im = entry
        image_id = _as_id(im["id"])
        file_name = im.get("file_name")
        width, height = _size_field(im.get("width")), _size_field(im.get("height"))
        if not (isinstance(file_name, str) and file_name) or None in (width, height):
            raise DataError(path, f"images[{index}]: malformed image entry "
                                  f"{_short(im, 200)} (a string 'file_name' and integer "
                                  "'width'/'height' expected)")
        image_path = os.path.join(self.image_dir, file_name)
        where = f"{path} (image id {image_id}, {file_name})"
        if self.check_images != "none" and not os.path.isfile(image_path):
            raise DataError(where, f"its image is missing: {image_path} not found")
        if self.check_images == "none" and not (width and height):
            raise DataError(where, "has no width/height and check_images='none'")
        width, height = self._verify_image(image_path, width, height, self.check_images)
        boxes, names, labels, crowd = [], [], [], []
        for j, a in per_image.get(image_id, ()):
            name = f"annotation {_short(a.get('id', f'annotations[{j}]'))}"
            cid, bbox = _as_id(a.get("category_id")), a.get("bbox")
            if (cid is None or not isinstance(bbox, list) or len(bbox) != 4
                    or not all(_is_number(v) for v in bbox)):
                raise DataError(where, f"malformed annotation (annotations[{j}]) "
                                       f"{_short(a, 200)}: an integer 'category_id' and a "
                                       "'bbox' of 4 numbers expected")
            x, y, w, h = (float(v) for v in bbox)
            if cid not in cats:
                raise DataError(where, f"{name} has unknown category id {cid}")
            iscrowd = a.get("iscrowd", 0)
            if iscrowd is None:
                iscrowd = 0
            if not (isinstance(iscrowd, (bool, int)) and iscrowd in (0, 1)):
                raise DataError(where, f"{name} has iscrowd {_short(iscrowd)}; 0 or 1 "
                                       "expected")
            if cid not in self.label_of_category:
                continue
            if w == 0 or h == 0:
                # A click without a drag in the labelling tool: no extent to
                # learn from, but no reason to lose the image's other boxes.
                self._drop_box(where, f"{name} ({cats[cid]!r}): its "
                                      f"box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] is empty "
                                      f"(zero width or height)")
                continue
            boxes.append((x, y, x + w, y + h))
            names.append(cats[cid])
            labels.append(self.label_of_category[cid])
            crowd.append(bool(iscrowd))
        return self._make_checked_record(where, image_id, image_path, width, height, boxes,
                                         names, labels, crowd, crowd=crowd)
