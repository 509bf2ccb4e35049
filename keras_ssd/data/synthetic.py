"""A small synthetic detection dataset in Pascal VOC layout.

Coloured shapes (one shape and one colour per class) on textured, muted
backgrounds: easy enough that a tiny SSD learns it to a high mAP on a CPU in
minutes, yet with varied sizes, counts, positions and some overlap, so
matching, augmentation and evaluation are all exercised. It is written as
JPEG + XML + ImageSets and read back through `VOCDataset` like real VOC.
"""

import os
import numpy as np
from PIL import Image, ImageDraw

from keras_ssd.data.voc import make_voc_folders, write_voc_annotation, write_voc_lists

# Class name -> RGB colour. Hues far apart; backgrounds stay grey-ish.
SHAPE_COLOURS = {
    "circle": (220, 40, 40),
    "square": (40, 175, 60),
    "triangle": (45, 85, 225),
    "cross": (235, 205, 30),
    "diamond": (200, 60, 205),
    "ring": (30, 200, 215),
}
SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross")
ALL_SYNTHETIC_CLASSES = tuple(SHAPE_COLOURS)


def _shape_polygon(name, x0, y0, s):
    """Polygon (list of points) of a shape inscribed in the square at (x0, y0) side s."""
    x1, y1 = x0 + s, y0 + s
    cx, cy = x0 + s / 2.0, y0 + s / 2.0
    if name == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if name == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if name == "cross":
        t = s / 6.0
        return [(cx - t, y0), (cx + t, y0), (cx + t, cy - t), (x1, cy - t), (x1, cy + t),
                (cx + t, cy + t), (cx + t, y1), (cx - t, y1), (cx - t, cy + t), (x0, cy + t),
                (x0, cy - t), (cx - t, cy - t)]
    return None


def _draw_shape(draw, name, x0, y0, s, fill):
    """Draw a shape into an "L" mask (a ring leaves its hole at 0)."""
    x1, y1 = x0 + s - 1, y0 + s - 1
    if name == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif name == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif name == "ring":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
        w = max(2, s // 4)
        draw.ellipse([x0 + w, y0 + w, x1 - w, y1 - w], fill=0)
    else:
        draw.polygon(_shape_polygon(name, x0, y0, s - 1), fill=fill)


def _background(rng, width, height):
    """Muted low-frequency colour noise, fine grain and sometimes stripes."""
    base = rng.uniform(70, 170)
    tint = rng.uniform(-18, 18, size=3)
    coarse = rng.normal(0.0, 22.0, size=(rng.integers(3, 8), rng.integers(3, 8), 1))
    coarse = coarse + rng.normal(0.0, 6.0, size=coarse.shape[:2] + (3,))
    field = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        ),
        dtype=np.float64,
    ) - 128
    img = base + tint + field + rng.normal(0.0, 6.0, size=(height, width, 1))
    if rng.random() < 0.4:
        period = rng.uniform(6, 20)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        img = img + 12.0 * np.sign(np.sin(2 * np.pi * phase))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _overlap(a, b):
    """`(IoU, intersection over the smaller area)` of two xyxy boxes."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - inter
    return (inter / union if union > 0 else 0.0), inter / max(1, min(area_a, area_b))


def synthetic_image(rng, width, height, class_names, min_objects=1, max_objects=4,
                    size_range=(0.2, 0.5), max_overlap=0.25):
    """Draw one synthetic image.

    Returns:
        `(image uint8 (H, W, 3), objects)`, objects a list of `(class_name,
        (x0, y0, x1, y1))` with integer continuous-pixel boxes (tight around
        the drawn pixels).
    """
    image = Image.fromarray(_background(rng, width, height))
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    count = int(rng.integers(min_objects, max_objects + 1))
    objects = []
    for _ in range(count):
        for _attempt in range(30):
            s = int(round(rng.uniform(*size_range) * side))
            s = max(8, min(s, side))
            x0 = int(rng.integers(0, width - s + 1))
            y0 = int(rng.integers(0, height - s + 1))
            box = (x0, y0, x0 + s, y0 + s)
            # Some overlap, but never more than a third of an object hidden.
            if all(o[0] <= max_overlap and o[1] <= 1 / 3
                   for o in (_overlap(box, b) for _, b in objects)):
                break
        else:
            continue
        name = class_names[int(rng.integers(len(class_names)))]
        colour = np.clip(np.asarray(SHAPE_COLOURS[name]) + rng.integers(-20, 21, 3), 0, 255)
        mask = Image.new("L", (width, height), 0)
        _draw_shape(ImageDraw.Draw(mask), name, x0, y0, s, 255)
        image.paste(tuple(int(c) for c in colour), (0, 0), mask)
        tight = mask.getbbox()
        objects.append((name, tuple(int(v) for v in tight)))
    return np.asarray(image), objects


def make_synthetic_voc(out_dir, num_trainval=200, num_test=100, image_size=(192, 192),
                       seed=0, class_names=SYNTHETIC_CLASSES, min_objects=1,
                       max_objects=4, size_range=(0.2, 0.5), max_overlap=0.25,
                       jpeg_quality=92):
    """Write a synthetic shapes dataset in Pascal VOC layout.

    Creates `out_dir/{Annotations,JPEGImages,ImageSets/Main}` with
    `trainval.txt` (also split into `train.txt` / `val.txt`), `test.txt`, and
    `labels.txt` (the class names, one per line). Read it with
    `VOCDataset(out_dir, split, class_names=class_names)`.

    Args:
        out_dir: target directory (created).
        num_trainval, num_test: number of images per split.
        image_size: int or `(width, height)` of every image.
        seed: int; image `i` depends only on `(seed, i)`.
        class_names: which shapes, from `ALL_SYNTHETIC_CLASSES` (circle,
            square, triangle, cross, diamond, ring); each has its own colour.
        min_objects, max_objects: objects per image.
        size_range: object side as a fraction of the shorter image side.
        max_overlap: largest IoU allowed between two objects.
        jpeg_quality: JPEG quality.

    Returns:
        `out_dir` as a string.
    """
    class_names = tuple(class_names)
    unknown = [c for c in class_names if c not in SHAPE_COLOURS]
    if unknown or not class_names:
        raise ValueError(
            f"make_synthetic_voc: class_names must be among {ALL_SYNTHETIC_CLASSES}, "
            f"got unknown {unknown}"
        )
    if isinstance(image_size, int):
        width = height = image_size
    else:
        width, height = (int(v) for v in image_size)
    if min(width, height) < 32:
        raise ValueError(f"make_synthetic_voc: image_size must be >= 32, got {image_size!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError("make_synthetic_voc: need 1 <= min_objects <= max_objects")
    if num_trainval < 0 or num_test < 0:
        raise ValueError("make_synthetic_voc: image counts must be >= 0")
    out_dir = make_voc_folders(out_dir)
    ids = [f"{i:06d}" for i in range(num_trainval + num_test)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng([int(seed), i])
        image, objects = synthetic_image(rng, width, height, class_names, min_objects,
                                         max_objects, size_range, max_overlap)
        filename = image_id + ".jpg"
        Image.fromarray(image).save(os.path.join(out_dir, "JPEGImages", filename),
                                    quality=jpeg_quality)
        write_voc_annotation(out_dir, image_id, filename, width, height,
                             [box for _, box in objects], [name for name, _ in objects])
    trainval, test = ids[:num_trainval], ids[num_trainval:]
    write_voc_lists(out_dir, {"trainval": trainval, "train": trainval[::2],
                              "val": trainval[1::2], "test": test}, class_names)
    return out_dir
