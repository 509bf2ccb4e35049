"""CSV reader: one row per object, `image_path,xmin,ymin,xmax,ymax,class_name`
in pixels, as keras-retinanet and many labelling tools export it.

(Named `csv_dataset` so that it never shadows the standard `csv` module.)
"""

import csv
import math
import os

from keras_ssd.data.dataset import DetectionDataset, check_check_images, check_class_names
from keras_ssd.data.errors import DataError

#: Header names understood for each column (compared lower-case, without
#: spaces); a header row maps columns by name, so that e.g. the TensorFlow
#: Object Detection API's `filename,width,height,class,xmin,ymin,xmax,ymax`
#: reads too.
COLUMN_NAMES = {
    "image": ("image_path", "image", "img_file", "imagepath", "filename", "file_name",
              "file", "path", "image_file", "img", "img_path"),
    "xmin": ("xmin", "x1", "x_min", "left", "x0"),
    "ymin": ("ymin", "y1", "y_min", "top", "y0"),
    "xmax": ("xmax", "x2", "x_max", "right"),
    "ymax": ("ymax", "y2", "y_max", "bottom"),
    "class": ("class_name", "class", "label", "name", "category", "classname",
              "label_name", "category_name"),
    "width": ("width", "image_width", "img_width"),
    "height": ("height", "image_height", "img_height"),
}
_BOX = ("xmin", "ymin", "xmax", "ymax")
#: Column order of a file without a header row (keras-retinanet's).
POSITIONAL = ("image", "xmin", "ymin", "xmax", "ymax", "class")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_csv(path):
    try:
        # utf-8-sig: spreadsheets often start the file with a byte-order mark
        with open(path, encoding="utf-8-sig", newline="") as f:
            return [(i, row) for i, row in enumerate(csv.reader(f), 1)]
    except FileNotFoundError:
        raise DataError(path, "CSV file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"cannot read CSV ({e})") from None


def read_class_mapping(path):
    """A keras-retinanet class file: rows `class_name,id` with ids `0..K-1`.

    Returns:
        the class names in id order.

    Raises:
        DataError: naming the file and line (wrong field count, non-integer
        or repeated ids, ids with gaps, repeated names).
    """
    by_id, seen = {}, {}
    for lineno, row in _open_csv(path):
        if not row or all(not f.strip() for f in row):
            continue
        if len(row) != 2:
            raise DataError(path, f"line {lineno}: expected 'class_name,id', got {len(row)} "
                                  f"fields")
        name, id_text = row[0].strip(), row[1].strip()
        try:
            class_id = int(id_text)
        except ValueError:
            if lineno == 1 and not _is_number(id_text):
                continue  # a header row such as 'class_name,id'
            raise DataError(path, f"line {lineno}: class id {id_text!r} is not an "
                                  "integer") from None
        if not name:
            raise DataError(path, f"line {lineno}: empty class name")
        if name in seen:
            raise DataError(path, f"line {lineno}: class {name!r} repeated (first on "
                                  f"line {seen[name]})")
        if class_id in by_id:
            raise DataError(path, f"line {lineno}: class id {class_id} repeated")
        by_id[class_id], seen[name] = name, lineno
    if not by_id:
        raise DataError(path, "class file lists no classes")
    if sorted(by_id) != list(range(len(by_id))):
        raise DataError(path, f"class ids must be 0..{len(by_id) - 1} without gaps; got "
                              f"{sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


def _columns(path, rows):
    """`(column index per role, fields per row, rows after the header)`."""
    positional = dict(zip(POSITIONAL, range(6)))
    if not rows:
        return positional, 6, rows
    lineno, first = rows[0]
    box_fields = [f.strip() for f in first[1:5]]
    if len(first) >= 5 and all(_is_number(f) or f == "" for f in box_fields):
        return positional, 6, rows  # no header row
    names = [f.strip().lower().replace(" ", "") for f in first]
    columns = {}
    for role, aliases in COLUMN_NAMES.items():
        for i, name in enumerate(names):
            if name in aliases and i not in columns.values():
                columns[role] = i
                break
    missing = [r for r in POSITIONAL if r not in columns]
    if missing:
        if len(first) == 6 and not any(_is_number(f) for f in box_fields):
            return positional, 6, rows[1:]  # a header of other names, in that order
        raise DataError(path, f"line {lineno}: not a data row, and as a header it lacks "
                              f"the column(s) {', '.join(missing)} (expected "
                              f"'image_path,xmin,ymin,xmax,ymax,class_name')")
    return columns, len(first), rows[1:]


class CSVDataset(DetectionDataset):
    """Detection data in a CSV file with one row per object.

    Rows are `image_path,xmin,ymin,xmax,ymax,class_name` with continuous
    pixel coordinates (as COCO's: `xmax - xmin` is the width), with or
    without that header row; with a header, columns are taken by name
    (`filename`, `x1`, `label`, ... are understood; optional `width` and
    `height` columns give the image size). Relative image paths are
    relative to the CSV file's folder. An image's rows are grouped into one
    record, in the order images first appear; a row with the box and class
    fields empty (`img.jpg,,,,,`) is an image without objects.

    Class names, the label order, come from (first that applies):
    `class_names`; a keras-retinanet class file (`class_file`, rows
    `class_name,id`); else the names found in the rows, **sorted
    alphabetically** (so the order does not depend on the row order). With
    `class_names` or a class file, a row of another class is an error. When
    both are given they must agree.

    Bad input, each a `DataError` naming the CSV file and the line: a wrong
    number of fields, a coordinate that is not a number, half-empty box
    fields, an unknown class, an inverted box, a box entirely outside its
    image, a missing image, a width/height column that disagrees with the
    image. `on_error="skip"` logs it and leaves that image out (`.skipped`,
    `.num_skipped`). A box sticking out is clipped (`.num_clipped_boxes`);
    an empty box (zero width or height) is left out with a warning in
    either mode and its image kept (`.dropped_boxes`, `.num_dropped_boxes`).

    Args:
        csv_path: the annotations CSV.
        class_names: the class names in label order (see above).
        class_file: a keras-retinanet `class_name,id` CSV.
        on_error: `"raise"` or `"skip"`.
        check_images: `"header"` (default: read each image's size),
            `"decode"`; `"exists"` and `"none"` read the header too unless
            the CSV has width and height columns (then `"exists"` only
            checks the file is there and `"none"` trusts the CSV).

    Example:

    >>> train = CSVDataset("annotations.csv", class_file="classes.csv")
    >>> rec = train[0]
    """

    def __init__(self, csv_path, class_names=None, class_file=None, on_error="raise",
                 check_images="header"):
        path = os.fspath(csv_path)
        self.csv_path = path
        self.class_file = None if class_file is None else os.fspath(class_file)
        self.check_images = check_check_images(check_images)
        rows = _open_csv(path)
        rows = [(i, row) for i, row in rows if row and any(f.strip() for f in row)]
        self.columns, self._fields, rows = _columns(path, rows)
        self.class_names = self._class_names(class_names, rows)
        log = self._begin(on_error, f"CSVDataset({os.path.basename(path)!r})")
        self._read_all(self._group(rows), self._read_image, log)

    def _class_names(self, class_names, rows):
        mapped = None if self.class_file is None else read_class_mapping(self.class_file)
        if class_names is not None:
            class_names = check_class_names(class_names, "CSVDataset")
            if mapped is not None and list(mapped) != list(class_names):
                raise DataError(self.class_file, f"lists the classes {mapped}, which differ "
                                                 f"from the class_names asked for "
                                                 f"{list(class_names)}")
            self.known_classes = True
            return class_names
        if mapped is not None:
            self.known_classes = True
            return tuple(mapped)
        self.known_classes = False
        col = self.columns["class"]
        found = sorted({row[col].strip() for _, row in rows
                        if len(row) == self._fields and row[col].strip()})
        if not found:
            raise DataError(self.csv_path, "no class names: the rows name no class; give "
                                           "class_names or a class file")
        return tuple(found)

    def _group(self, rows):
        """`[(image path as written, [(line, row, problem or None)])]`, images
        in order of first appearance; a row without an image path is an item
        of its own (`image` None) that fails."""
        groups, items = {}, []
        col = self.columns["image"]
        for lineno, row in rows:
            problem = None
            if len(row) != self._fields:
                expected = ("'image_path,xmin,ymin,xmax,ymax,class_name'" if self._fields == 6
                            else "as in the header row")
                problem = (f"expected {self._fields} fields {expected}, got {len(row)} "
                           "(a comma in an unquoted field?)")
            image = row[col].strip() if len(row) > col else ""
            if not image:
                items.append((None, [(lineno, row, problem or "empty image path")]))
                continue
            if image not in groups:
                groups[image] = []
                items.append((image, groups[image]))
            groups[image].append((lineno, row, problem))
        return items

    def _image_path(self, image):
        if os.path.isabs(image):
            return image
        return os.path.normpath(os.path.join(os.path.dirname(self.csv_path), image))

    def _read_image(self, item):
        image, rows = item
        for lineno, _, problem in rows:
            if problem is not None:
                raise DataError(self.csv_path, f"line {lineno}: {problem}")
        image_path = self._image_path(image)
        first_line = rows[0][0]
        width, height = self._size_columns(rows)
        try:
            width, height = self._image_size(self.csv_path, image_path, width, height)
        except DataError as e:
            detail = e.problem if e.path == self.csv_path else str(e)
            raise DataError(self.csv_path, f"line {first_line}: {detail}") from None
        index = {n: i for i, n in enumerate(self.class_names)}
        boxes, names, labels, lines = [], [], [], []
        for lineno, row, _ in rows:
            values = [row[self.columns[r]].strip() for r in _BOX]
            name = row[self.columns["class"]].strip()
            if not any(values) and not name:
                continue  # an image without objects
            if not all(values) or not name:
                raise DataError(self.csv_path, f"line {lineno}: box and class fields must be "
                                               "all filled or all empty (image without "
                                               f"objects); got {row!r}")
            try:
                x0, y0, x1, y1 = (float(v) for v in values)
            except ValueError:
                raise DataError(self.csv_path, f"line {lineno}: a coordinate is not a number: "
                                               f"{values}") from None
            if name not in index:
                raise DataError(self.csv_path, f"line {lineno}: unknown class {name!r} "
                                               f"(known: {', '.join(self.class_names)})")
            if all(math.isfinite(v) for v in (x0, y0, x1, y1)) and (x1 == x0 or y1 == y0):
                self._drop_box(f"{self.csv_path}: line {lineno}", f"box of class {name!r} [xmin={x0:g}, ymin={y0:g}, "
                                      f"xmax={x1:g}, ymax={y1:g}] is empty (zero width or "
                                      "height)")
                continue
            boxes.append((x0, y0, x1, y1))
            names.append(name)
            labels.append(index[name])
            lines.append(f"line {lineno}")
        return self._make_checked_record(self.csv_path, image, image_path, width, height,
                                         boxes, names, labels, [False] * len(labels), lines)

    def _size_columns(self, rows):
        if "width" not in self.columns or "height" not in self.columns:
            return None, None
        lineno, row, _ = rows[0]
        w, h = row[self.columns["width"]].strip(), row[self.columns["height"]].strip()
        if not w and not h:
            return None, None
        try:
            w, h = float(w), float(h)
        except ValueError:
            raise DataError(self.csv_path, f"line {lineno}: image width/height {w!r} x {h!r} "
                                           "are not numbers") from None
        if not (math.isfinite(w) and math.isfinite(h)) or w != int(w) or h != int(h) \
                or w <= 0 or h <= 0:
            raise DataError(self.csv_path, f"line {lineno}: image size {w:g} x {h:g} is not "
                                           "a valid size")
        return int(w), int(h)
