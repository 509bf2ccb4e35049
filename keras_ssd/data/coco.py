"""COCO instances-JSON reader with the same record interface as VOC."""

import json
import os

from keras_ssd.data.dataset import DetectionDataset, check_check_images
from keras_ssd.data.errors import DataError


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"malformed JSON ({e})") from None
    except OSError as e:
        raise DataError(path, f"cannot read annotation file ({e})") from None
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(path, f"missing or non-list '{key}' field")
    return data


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
        cats = {}
        for c in data["categories"]:
            try:
                cats[int(c["id"])] = str(c["name"])
            except (KeyError, TypeError, ValueError):
                raise DataError(path, f"malformed category entry {c!r}") from None
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

        per_image = {}
        for a in data["annotations"]:
            try:
                per_image.setdefault(int(a["image_id"]), []).append(a)
            except (KeyError, TypeError, ValueError):
                raise DataError(path, f"malformed annotation entry {str(a)[:200]}") from None

        images = sorted(data["images"], key=lambda im: int(im.get("id", -1)))
        self._read_all(images, lambda im: self._read_image(path, im, per_image, cats), log)

    def _read_image(self, path, im, per_image, cats):
        try:
            image_id = int(im["id"])
            file_name = str(im["file_name"])
            width, height = int(im.get("width") or 0), int(im.get("height") or 0)
        except (KeyError, TypeError, ValueError):
            raise DataError(path, f"malformed image entry {str(im)[:200]}") from None
        image_path = os.path.join(self.image_dir, file_name)
        where = f"{path} (image id {image_id}, {file_name})"
        if self.check_images != "none" and not os.path.isfile(image_path):
            raise DataError(where, f"its image is missing: {image_path} not found")
        if self.check_images == "none" and not (width and height):
            raise DataError(where, "has no width/height and check_images='none'")
        width, height = self._verify_image(image_path, width, height, self.check_images)
        boxes, names, labels, crowd = [], [], [], []
        for j, a in enumerate(per_image.get(image_id, ())):
            try:
                cid = int(a["category_id"])
                x, y, w, h = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError):
                raise DataError(where, f"malformed annotation {str(a)[:200]}") from None
            if cid not in cats:
                raise DataError(where, f"annotation {a.get('id', j)} has unknown "
                                       f"category id {cid}")
            if cid not in self.label_of_category:
                continue
            if w == 0 or h == 0:
                # A click without a drag in the labelling tool: no extent to
                # learn from, but no reason to lose the image's other boxes.
                self._drop_box(where, f"annotation {a.get('id', j)} ({cats[cid]!r}): its "
                                      f"box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] is empty "
                                      f"(zero width or height)")
                continue
            boxes.append((x, y, x + w, y + h))
            names.append(cats[cid])
            labels.append(self.label_of_category[cid])
            crowd.append(bool(a.get("iscrowd", 0)))
        return self._make_checked_record(where, image_id, image_path, width, height, boxes,
                                         names, labels, crowd, crowd=crowd)
