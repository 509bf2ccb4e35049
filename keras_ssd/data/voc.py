"""Pascal VOC reader: `ImageSets/Main/<split>.txt`, `Annotations/*.xml`,
`JPEGImages/`."""

import os
import shutil
import xml.etree.ElementTree as ET

import defusedxml
import defusedxml.ElementTree as SafeET
import numpy as np

from keras_ssd.classes import VOC_CLASSES
from keras_ssd.data.dataset import (
    DetectionDataset,
    check_boxes,
    check_check_images,
    file_stem_for,
    make_record,
)
from keras_ssd.data.errors import DataError, ErrorLog, logger


_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def parse_xml_safely(path):
    """Parse an XML file, refusing entity tricks.

    Uses defusedxml: entity declarations (billion laughs, quadratic blowup)
    and external entities or DTDs are refused, never expanded or fetched.

    Returns:
        the root `Element`.

    Raises:
        DataError: naming the file, for missing, malformed or hostile XML.
    """
    try:
        tree = SafeET.parse(
            str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True
        )
    except FileNotFoundError:
        raise DataError(path, "annotation file not found") from None
    except defusedxml.EntitiesForbidden as e:
        if e.sysid or e.pubid:
            problem = (f"refused: the XML declares external entity {e.name!r} "
                       f"({e.sysid or e.pubid}); external entities are not allowed")
        else:
            problem = (f"refused: the XML declares entity {e.name!r} (entity "
                       f"expansion, e.g. a 'billion laughs' attack, is not allowed)")
        raise DataError(path, problem) from None
    except defusedxml.ExternalReferenceForbidden as e:
        raise DataError(
            path,
            f"refused: the XML references an external resource ({e.sysid or e.pubid}); "
            f"external entities are not allowed",
        ) from None
    except defusedxml.DefusedXmlException as e:
        raise DataError(path, f"refused: unsafe XML ({e})") from None
    except ET.ParseError as e:
        raise DataError(path, f"malformed XML ({e})") from None
    except OSError as e:
        raise DataError(path, f"cannot read annotation ({e})") from None
    return tree.getroot()


def _text(node, tag, path, where, required=True):
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise DataError(path, f"{where} has no <{tag}>")
        return None
    return child.text.strip()


def _number(node, tag, path, where, required=True):
    text = _text(node, tag, path, where, required)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise DataError(path, f"{where} <{tag}> is not a number: {text!r}") from None


def parse_voc_xml(path, class_index, keep_difficult=True):
    """Read one VOC annotation.

    Args:
        path: the XML file.
        class_index: dict class name -> 0-based label.
        keep_difficult: when False, "difficult" objects are dropped.

    Returns:
        dict with `filename`, `width`, `height` (None when absent or 0),
        `boxes` float64 `(G, 4)` continuous xyxy (`xmin - 1, ymin - 1, xmax,
        ymax` from VOC's 1-based inclusive pixels), `names`, `labels`,
        `difficult`.

    Raises:
        DataError: naming the file and the problem (malformed or hostile
        XML, missing fields, unknown class names, non-numeric coordinates).
    """
    root = parse_xml_safely(path)
    if root.tag != "annotation":
        raise DataError(path, f"root element is <{root.tag}>, expected <annotation>")
    filename = _text(root, "filename", path, "<annotation>", required=False)
    width = height = None
    size = root.find("size")
    if size is not None:
        width = _number(size, "width", path, "<size>", required=False)
        height = _number(size, "height", path, "<size>", required=False)
        if width is not None and height is not None:
            if width != int(width) or height != int(height) or width < 0 or height < 0:
                raise DataError(path, f"<size> is not a valid image size: {width} x {height}")
            width, height = int(width), int(height)
        if not width or not height:
            width = height = None
    boxes, names, labels, difficult = [], [], [], []
    for j, obj in enumerate(root.iter("object")):
        where = f"object {j}"
        name = _text(obj, "name", path, where)
        if name not in class_index:
            raise DataError(
                path,
                f"{where} has unknown class name {name!r} (known: "
                f"{', '.join(sorted(class_index))})",
            )
        diff_text = _text(obj, "difficult", path, where, required=False)
        try:
            is_difficult = bool(int(float(diff_text))) if diff_text is not None else False
        except ValueError:
            raise DataError(path, f"{where} <difficult> is not 0 or 1: {diff_text!r}") from None
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DataError(path, f"{where} ({name!r}) has no <bndbox>")
        where_box = f"{where} ({name!r}) <bndbox>"
        x0, y0, x1, y1 = (
            _number(bnd, t, path, where_box) for t in ("xmin", "ymin", "xmax", "ymax")
        )
        if is_difficult and not keep_difficult:
            continue
        boxes.append((x0 - 1.0, y0 - 1.0, x1, y1))
        names.append(name)
        labels.append(class_index[name])
        difficult.append(is_difficult)
    return {
        "filename": filename,
        "width": width,
        "height": height,
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        "names": names,
        "labels": labels,
        "difficult": difficult,
    }


def _read_split(root, split):
    path = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(path, f"split file not found (is {root!r} a VOC year directory "
                              f"with ImageSets/Main/{split}.txt?)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read split file ({e})") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    return sorted(set(ids))


def _find_image(root, image_id, filename):
    folder = os.path.join(root, "JPEGImages")
    candidates = []
    if filename:
        candidates.append(os.path.join(folder, os.path.basename(filename)))
    candidates += [os.path.join(folder, image_id + ext) for ext in _IMAGE_EXTENSIONS]
    for c in candidates:
        if os.path.isfile(c):
            return c, True
    return candidates[0] if filename else os.path.join(folder, image_id + ".jpg"), False


class VOCDataset(DetectionDataset):
    """Pascal VOC detection data (one or several year directories).

    Reads the image ids of `ImageSets/Main/<split>.txt` (sorted), parses each
    `Annotations/<id>.xml` with an XML parser that refuses entity tricks and
    keeps, per image, the boxes in continuous pixel xyxy: VOC's 1-based
    inclusive `(xmin, ymin, xmax, ymax)` becomes `(xmin - 1, ymin - 1, xmax,
    ymax)`, so widths are `xmax - xmin + 1` as the devkit computes them.
    Several roots concatenate in the order given (VOC07+12).

    Bad input: malformed or hostile XML, unknown class names, missing
    fields, inverted / empty / entirely-outside boxes, a missing image or an
    image whose size disagrees with the XML each raise a `DataError` naming
    the file and the problem (`on_error="raise"`), or are logged as warnings
    and the record left out (`on_error="skip"`; see `.skipped`,
    `.num_skipped`). Boxes that only stick out of the image are clipped
    (counted in `.num_clipped_boxes`). Images without objects are kept with
    empty arrays. Corrupt image data is only seen when decoding: use
    `check_images="decode"` to find it up front.

    Args:
        roots: a VOC year directory (containing `Annotations`, `JPEGImages`,
            `ImageSets`) or a list of them.
        split: split name, e.g. `"trainval"`, `"test"`.
        class_names: the class names; labels are indices into it.
        keep_difficult: keep objects flagged difficult (flagged in the
            records' `difficult`); when False they are dropped.
        on_error: `"raise"` or `"skip"`.
        check_images: `"exists"` (default: the image file must exist),
            `"header"` (also read its size, EXIF orientation applied, and
            compare with the XML), `"decode"` (fully decode every image:
            slow, finds truncated files), or `"none"`.

    Example:

    >>> train = VOCDataset(["VOCdevkit/VOC2007", "VOCdevkit/VOC2012"], "trainval")
    >>> rec = train[0]; image = train.load_image(0)
    """

    def __init__(self, roots, split="trainval", class_names=VOC_CLASSES,
                 keep_difficult=True, on_error="raise", check_images="exists"):
        if isinstance(roots, (str, os.PathLike)):
            roots = [roots]
        roots = [os.fspath(r) for r in roots]
        if not roots:
            raise ValueError("VOCDataset: roots must name at least one directory")
        class_names = list(class_names)
        if not class_names or not all(isinstance(c, str) and c for c in class_names):
            raise ValueError("VOCDataset: class_names must be non-empty strings")
        if len(set(class_names)) != len(class_names):
            raise ValueError("VOCDataset: class_names must be unique")
        self.roots = roots
        self.split = split
        self.class_names = tuple(class_names)
        self.keep_difficult = bool(keep_difficult)
        self.check_images = check_check_images(check_images)
        log = ErrorLog(on_error, f"VOCDataset({split!r})")
        self.on_error = log.on_error
        class_index = {c: i for i, c in enumerate(class_names)}
        records = []
        self.num_clipped_boxes = 0
        total = 0
        for root in roots:
            if not os.path.isdir(root):
                raise DataError(root, "VOC root directory not found")
            for image_id in _read_split(root, split):
                total += 1
                try:
                    records.append(self._read_record(root, image_id, class_index))
                except DataError as e:
                    log.handle(e)
        log.summarise(total)
        self.records = records
        self.skipped = log.skipped
        if self.num_clipped_boxes:
            logger.info("VOCDataset(%r): clipped %d boxes to their image",
                        split, self.num_clipped_boxes)

    def _read_record(self, root, image_id, class_index):
        xml_path = os.path.join(root, "Annotations", image_id + ".xml")
        ann = parse_voc_xml(xml_path, class_index, self.keep_difficult)
        image_path, found = _find_image(root, image_id, ann["filename"])
        if not found and self.check_images != "none":
            raise DataError(xml_path, f"its image is missing: {image_path} not found")
        width, height = ann["width"], ann["height"]
        if self.check_images == "none" and not (width and height):
            raise DataError(xml_path, "has no <size> and check_images='none' "
                                      "cannot read it from the image")
        width, height = self._verify_image(image_path, width, height, self.check_images)
        try:
            boxes, clipped = check_boxes(xml_path, ann["boxes"], ann["names"], width, height)
        except DataError:
            raise
        self.num_clipped_boxes += clipped
        return make_record(image_id, image_path, width, height, boxes,
                           ann["labels"], ann["difficult"])


def write_voc_xml(path, filename, width, height, objects):
    """Write a VOC annotation file.

    Args:
        path: the XML file to write.
        filename: the image file name (in `JPEGImages`).
        width, height: image size.
        objects: iterable of `(name, (xmin, ymin, xmax, ymax))` or
            `(name, box, difficult)` with VOC's 1-based inclusive pixel
            coordinates.
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = str(filename)
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(width))
    ET.SubElement(size, "height").text = str(int(height))
    ET.SubElement(size, "depth").text = "3"
    for obj_spec in objects:
        name, box = obj_spec[0], obj_spec[1]
        difficult = bool(obj_spec[2]) if len(obj_spec) > 2 else False
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(name)
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "1" if difficult else "0"
        bnd = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bnd, tag).text = f"{v:g}" if isinstance(v, float) else str(v)
    ET.ElementTree(root).write(path, encoding="utf-8")


def make_voc_folders(out_dir):
    """Create `out_dir/{Annotations,JPEGImages,ImageSets/Main}`; return
    `out_dir` as a string."""
    out_dir = os.fspath(out_dir)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    return out_dir


def write_voc_annotation(out_dir, voc_id, filename, width, height, boxes, names,
                         difficult=None):
    """Write `Annotations/<voc_id>.xml` for one image of a VOC folder.

    Args:
        out_dir: the VOC folder (see `make_voc_folders`).
        voc_id: the image's id.
        filename: its file name in `JPEGImages/`.
        width, height: its size.
        boxes: `(G, 4)` continuous pixel xyxy (the records' convention);
            written as VOC's 1-based inclusive pixels `xmin + 1, ymin + 1,
            xmax, ymax`, so that `VOCDataset` reads the same boxes back.
        names: `G` class names.
        difficult: optional `G` bools.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    difficult = [False] * len(boxes) if difficult is None else list(difficult)
    objects = [(str(name), (float(x0) + 1.0, float(y0) + 1.0, float(x1), float(y1)),
                bool(diff))
               for (x0, y0, x1, y1), name, diff in zip(boxes, names, difficult)]
    write_voc_xml(os.path.join(os.fspath(out_dir), "Annotations", f"{voc_id}.xml"),
                  filename, width, height, objects)


def write_voc_lists(out_dir, splits, class_names):
    """Write a VOC folder's image sets and class list.

    Args:
        out_dir: the VOC folder.
        splits: `{split name: ids}`: one `ImageSets/Main/<split>.txt` each.
        class_names: written one per line to `labels.txt`.
    """
    out_dir = os.fspath(out_dir)
    for split, ids in splits.items():
        with open(os.path.join(out_dir, "ImageSets", "Main", f"{split}.txt"), "w",
                  encoding="utf-8") as f:
            f.write("".join(f"{i}\n" for i in ids))
    with open(os.path.join(out_dir, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{n}\n" for n in class_names))


def write_voc(dataset, out_dir, split="trainval"):
    """Write any detection dataset out in Pascal VOC layout.

    For checking an import (read it back with `VOCDataset`, look at it with
    any VOC tool) or handing it to VOC-only software. Images are copied as
    they are (EXIF included, so their displayed orientation and the boxes
    still agree) into `JPEGImages/`, one `Annotations/<id>.xml` per record
    with its boxes in VOC's 1-based inclusive pixels (`xmin + 1, ymin + 1,
    xmax, ymax` of the continuous box, so that reading it back gives the
    same box), `difficult` kept; the ids in `ImageSets/Main/<split>.txt`
    and the class names, one per line, in `labels.txt`. Ids are the
    records' `image_id` made file-name safe (`train/a` becomes `train_a`),
    made unique with a suffix where needed.

    Args:
        dataset: a records-interface dataset (`ds[i]`, `ds.class_names`).
        out_dir: the VOC folder to write (created; files there are replaced).
        split: the image-set name.

    Returns:
        the list of VOC ids written, in record order.

    Example:

    >>> write_voc(YOLODataset("my_set", "val"), "my_set_voc", split="test")
    >>> VOCDataset("my_set_voc", "test", class_names=...)
    """
    out_dir = make_voc_folders(out_dir)
    names = list(dataset.class_names)
    ids, taken = [], set()
    for i in range(len(dataset)):
        rec = dataset[i]
        voc_id = file_stem_for(rec["image_id"], taken)
        ext = os.path.splitext(rec["image_path"])[1] or ".jpg"
        shutil.copyfile(rec["image_path"], os.path.join(out_dir, "JPEGImages", voc_id + ext))
        write_voc_annotation(out_dir, voc_id, voc_id + ext, rec["width"], rec["height"],
                             rec["boxes"], [names[int(label)] for label in rec["labels"]],
                             rec["difficult"])
        ids.append(voc_id)
    write_voc_lists(out_dir, {split: ids}, names)
    return ids
