"""A detection dataset made of real photos, offline: scikit-image's sample images.

Ten object classes, each cut from a real photograph, are pasted with a soft
mask onto random crops of other real photographs (textures and scenes), and
written in Pascal VOC layout (`JPEGImages/`, `Annotations/`,
`ImageSets/Main/{trainval,test}.txt`, `labels.txt`), readable with
`keras_ssd.data.VOCDataset(out_dir, split, class_names=...)`.

Classes and where they come from (crop boxes in the photo's pixels):

=========== ======================= =========================================
class       photo                   mask
=========== ======================= =========================================
cat         chelsea.png (face)      feathered ellipse
astronaut   astronaut.png (head,    feathered ellipse
            torso)
cup         coffee.png (cup and     feathered ellipse
            saucer)
rocket      rocket.jpg (the rocket  feathered ellipse
            on its pad)
motorcycle  motorcycle_left.png     feathered super-ellipse (rounded box)
coin        coins.png (12 coins)    feathered ellipse (circle)
cameraman   camera.png (man,        feathered super-ellipse
            camera, tripod head)
horse       horse.png silhouette    the silhouette, softened, filled with a
                                    coat colour times a real texture
                                    (grass, gravel, brick, wood)
logo        logo.png (the disc)     feathered circle (the PNG's alpha is
                                    opaque everywhere)
shuttle     astronaut.png (the      feathered ellipse
            shuttle model)
=========== ======================= =========================================

Backgrounds are random crops (random scale, horizontal flips, vertical flips
for textures, brightness, contrast and tint jitter) of brick, grass, gravel,
hubble_deep_field, moon, color, page, text, retina, ihc and cell (whole
photo), and of regions of coffee, astronaut, chelsea, rocket,
motorcycle_right and camera chosen away from the object crops (wood table,
flag, fur/wall at the side of the face, launch towers and sky, garage
shelves, sky and lawn). coins.png is not a background: every part of it
shows coins. Background crops may show pieces of a class photo (cat fur, a
tower next to the rocket) but never the cropped object.

Each image is 224..320 px wide and 176..288 px high and holds 1-5 objects.
An object's scale sqrt(w * h) is log-uniform in [18, 0.7 * shorter image
side] (its longer side capped at 95% of the image side), its aspect is the
crop's times a factor in [0.8, 1.25], it is flipped horizontally half the
time and gets its own brightness, contrast and colour jitter. Objects of 40
px and more may stick out of the image by up to 30% of a side. Objects may
overlap (pairwise IoU < 0.3 of their boxes) but at least 60% of every
object's mask stays visible. The box is the visible extent of the pasted
object: the bounding box of its mask (alpha >= 0.5) minus what later
objects cover, cut at the image border.

The test split is made the same way from the same photos: it measures how
fast a detector learns these ten object instances on real-photo clutter,
not how it generalises to new instances.

Run:

    python -m benchmarks.photo_dataset --out DIR [--train 1500 --test 300 --seed 0]

It prints the class counts and box-size quantiles and writes
DIR/contact_sheet.png (16 training images with their boxes).

scikit-image is a benchmark-only dependency (`pip install scikit-image`);
its data folder is found without importing it and its PNG/JPG files are read
with PIL.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: The object classes, in label order.
CLASSES = ("cat", "astronaut", "cup", "rocket", "motorcycle", "coin", "cameraman",
           "horse", "logo", "shuttle")

#: Bumped when the generator changes what it draws (for caches).
VERSION = 1

#: Image size ranges (inclusive) and object limits.
WIDTH_RANGE = (224, 320)
HEIGHT_RANGE = (176, 288)
OBJECTS_RANGE = (1, 5)
MIN_SCALE = 18
MAX_SCALE_FRACTION = 0.7
MAX_IOU = 0.3
MIN_VISIBLE = 0.6

#: The photos' sizes `(width, height)` that the crop boxes below refer to;
#: a photo of another size (passed with `photos=`) gets the boxes scaled.
REFERENCE_SIZES = {
    "astronaut": (512, 512), "brick": (512, 512), "camera": (512, 512),
    "cell": (660, 550), "chelsea": (451, 300), "coffee": (600, 400),
    "coins": (384, 303), "color": (370, 371), "grass": (512, 512),
    "gravel": (512, 512), "horse": (400, 328), "hubble_deep_field": (1000, 872),
    "ihc": (512, 512), "logo": (500, 500), "moon": (512, 512),
    "motorcycle_left": (741, 500), "motorcycle_right": (741, 500),
    "page": (384, 191), "retina": (1411, 1411), "rocket": (640, 427),
    "text": (448, 172),
}

#: File name of each photo in scikit-image's data folder.
FILES = {name: name + (".jpg" if name in ("hubble_deep_field", "retina", "rocket")
                       else ".png")
         for name in REFERENCE_SIZES}

# Coins of coins.png (the top row touches the frame edge in the threshold and
# is left out), padded by 2 px.
_COIN_BOXES = (
    (245, 96, 297, 144), (23, 102, 69, 146), (184, 105, 228, 145), (317, 105, 357, 145),
    (82, 106, 123, 145), (132, 109, 175, 146), (315, 156, 381, 217), (188, 170, 237, 216),
    (251, 172, 298, 217), (79, 174, 125, 217), (17, 233, 75, 288), (144, 237, 200, 287),
    (276, 240, 328, 288), (219, 241, 270, 288), (335, 248, 381, 290),
)

#: class -> list of `(photo, (x0, y0, x1, y1), mask kind)`.
OBJECTS = {
    "cat": [("chelsea", (30, 0, 410, 300), "ellipse")],
    "astronaut": [("astronaut", (105, 8, 365, 350), "ellipse")],
    "cup": [("coffee", (70, 10, 485, 392), "ellipse")],
    "rocket": [("rocket", (284, 116, 360, 410), "ellipse")],
    "motorcycle": [("motorcycle_left", (85, 88, 692, 458), "superellipse")],
    "coin": [("coins", (x0 - 2, y0 - 2, x1 + 2, y1 + 2), "ellipse")
             for x0, y0, x1, y1 in _COIN_BOXES],
    "cameraman": [("camera", (0, 60, 340, 512), "superellipse")],
    "horse": [("horse", (15, 6, 392, 316), "silhouette")],
    "logo": [("logo", (8, 8, 492, 492), "disc")],
    "shuttle": [("astronaut", (350, 0, 478, 292), "ellipse")],
}

#: Textures that fill the horse silhouette (their luminance).
COAT_TEXTURES = (("grass", None), ("gravel", None), ("brick", None),
                 ("coffee", (440, 0, 600, 400)))
COAT_COLOURS = ((112, 62, 30), (150, 82, 40), (45, 38, 32), (170, 168, 160),
                (215, 208, 195), (95, 75, 55))

#: background photo -> (regions or None for the whole photo, is a texture).
BACKGROUNDS = {
    "brick": (None, True), "grass": (None, True), "gravel": (None, True),
    "hubble_deep_field": (None, True), "moon": (None, True), "color": (None, True),
    "page": (None, False), "text": (None, False), "retina": (None, True),
    "ihc": (None, True), "cell": (None, True),
    "coffee": ([(440, 0, 600, 400), (0, 0, 70, 400)], False),
    "astronaut": ([(0, 0, 100, 512)], False),
    "chelsea": ([(0, 130, 130, 300), (375, 0, 451, 300)], False),
    "rocket": ([(0, 0, 280, 427), (368, 0, 640, 427)], False),
    "motorcycle_right": ([(0, 0, 290, 165), (520, 0, 741, 125), (635, 125, 741, 500)],
                         False),
    "camera": ([(335, 0, 512, 240), (405, 240, 512, 512)], False),
}

#: Every photo the generator reads.
PHOTO_NAMES = tuple(sorted(
    {p for entries in OBJECTS.values() for p, _, _ in entries}
    | {p for p, _ in COAT_TEXTURES} | set(BACKGROUNDS)))

# Photos are downscaled once so that their longer side is at most this.
_MAX_SOURCE_SIDE = 640


# --------------------------------------------------------------------------
# Reading the photos
# --------------------------------------------------------------------------

def skimage_data_dir():
    """scikit-image's bundled data folder, found without importing skimage.

    Raises:
        RuntimeError: scikit-image is not installed (says how to install it).
    """
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "benchmarks.photo_dataset needs scikit-image's sample photos: "
            "pip install scikit-image (a benchmark-only dependency; pass photos= "
            "to use your own arrays)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    if not os.path.isdir(path):
        raise RuntimeError(f"scikit-image's data folder {path} is missing; reinstall it: "
                           "pip install --force-reinstall scikit-image")
    return path


def load_skimage_photos(names=PHOTO_NAMES):
    """`{name: uint8 array}` of scikit-image's sample photos, read with PIL.

    All RGB `(H, W, 3)` (logo.png's alpha is opaque everywhere).
    """
    root = skimage_data_dir()
    photos = {}
    for name in names:
        path = os.path.join(root, FILES[name])
        if not os.path.isfile(path):
            raise RuntimeError(f"scikit-image photo {path} not found (expected with "
                               "scikit-image >= 0.19; pip install -U scikit-image)")
        with Image.open(path) as img:
            img.load()
            photos[name] = np.asarray(img.convert("RGB"))
    return photos


def _as_photo(name, array):
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"photos[{name!r}] must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or min(arr.shape[:2]) < 8:
        raise ValueError(f"photos[{name!r}] must be (H, W), (H, W, 3) or (H, W, 4) with "
                         f"sides >= 8, got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


def _scaled_box(box, name, size):
    ref_w, ref_h = REFERENCE_SIZES[name]
    w, h = size
    x0, y0, x1, y1 = box
    fx, fy = w / ref_w, h / ref_h
    x0, x1 = max(0, int(round(x0 * fx))), min(w, int(round(x1 * fx)))
    y0, y1 = max(0, int(round(y0 * fy))), min(h, int(round(y1 * fy)))
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def _soft_mask(kind, width, height, feather=0.12):
    """Alpha (H, W) float32 in [0, 1]: a feathered ellipse or super-ellipse."""
    y = (np.arange(height, dtype=np.float32) + 0.5) / height * 2 - 1
    x = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    p = 2.0 if kind == "ellipse" else 4.0
    r = (np.abs(x)[None, :] ** p + np.abs(y)[:, None] ** p) ** (1.0 / p)
    return np.clip((1.0 - r) / feather, 0.0, 1.0)


class _Object:
    """One object instance: RGB (h, w, 3) uint8 and alpha (h, w) uint8 at
    source resolution, as PIL images for fast resizing."""

    def __init__(self, name, rgb, alpha, coat):
        self.name = name
        self.rgb = Image.fromarray(rgb)
        self.alpha = Image.fromarray(alpha)
        self.aspect = rgb.shape[1] / rgb.shape[0]
        self.coat = coat  # True: the RGB is replaced by coat colour x texture


def _prepare(photos):
    """Cut the objects, coat textures and background regions out of `photos`."""
    missing = [n for n in PHOTO_NAMES if n not in photos]
    if missing:
        raise ValueError(f"photos= lacks {', '.join(missing)} (needs all of "
                         f"{', '.join(PHOTO_NAMES)})")
    arrays = {}
    for name in PHOTO_NAMES:
        arr = _as_photo(name, photos[name])
        ref = REFERENCE_SIZES[name]
        scale = min(1.0, _MAX_SOURCE_SIDE / max(arr.shape[:2]))
        if scale < 1.0:
            img = Image.fromarray(arr)
            arr = np.asarray(img.resize((max(8, round(arr.shape[1] * scale)),
                                         max(8, round(arr.shape[0] * scale))),
                                        Image.BILINEAR))
        arrays[name] = (arr, ref)
    objects = []
    for cls in CLASSES:
        entries = []
        for photo, box, kind in OBJECTS[cls]:
            arr = arrays[photo][0]
            x0, y0, x1, y1 = _scaled_box(box, photo, (arr.shape[1], arr.shape[0]))
            crop = arr[y0:y1, x0:x1]
            rgb = np.ascontiguousarray(crop)
            h, w = rgb.shape[:2]
            alpha = None
            if kind == "silhouette":
                dark = rgb.astype(np.float32).mean(axis=2) < 128
                if dark.mean() > 0.05:
                    soft = Image.fromarray((dark * 255).astype(np.uint8)).filter(
                        ImageFilter.GaussianBlur(max(1.0, 0.006 * max(w, h))))
                    alpha = np.asarray(soft).astype(np.float32) / 255.0
            if alpha is None or alpha.max() < 0.5:
                alpha = _soft_mask("superellipse" if kind == "superellipse" else "ellipse",
                                   w, h, feather=0.04 if kind == "disc" else 0.12)
            alpha8 = np.round(alpha * 255).astype(np.uint8)
            entries.append(_Object(cls, rgb, alpha8, coat=kind == "silhouette"))
        objects.append(entries)
    coats = []
    for photo, box in COAT_TEXTURES:
        arr = arrays[photo][0]
        if box is not None:
            x0, y0, x1, y1 = _scaled_box(box, photo, (arr.shape[1], arr.shape[0]))
            arr = arr[y0:y1, x0:x1]
        lum = arr[..., :3].astype(np.float32).mean(axis=2)
        coats.append(Image.fromarray(np.clip(lum, 0, 255).astype(np.uint8)))
    backgrounds = []
    for photo, (regions, texture) in BACKGROUNDS.items():
        arr = arrays[photo][0][..., :3]
        size = (arr.shape[1], arr.shape[0])
        img = Image.fromarray(np.ascontiguousarray(arr))
        gray = bool(np.all(arr[..., 0] == arr[..., 1])
                    and np.all(arr[..., 1] == arr[..., 2]))
        for box in regions or [(0, 0) + REFERENCE_SIZES[photo]]:
            backgrounds.append((img, _scaled_box(box, photo, size), texture, gray))
    return objects, coats, backgrounds


# --------------------------------------------------------------------------
# Drawing one image
# --------------------------------------------------------------------------

def _background(rng, backgrounds, width, height):
    pick = backgrounds[int(rng.integers(len(backgrounds)))]
    img, (rx0, ry0, rx1, ry1), texture, gray = pick
    rw, rh = rx1 - rx0, ry1 - ry0
    aspect = width / height
    cw_max = min(rw, rh * aspect)
    cw = cw_max * np.sqrt(rng.uniform(0.12, 1.0))
    ch = cw / aspect
    x0 = rx0 + rng.uniform(0, rw - cw)
    y0 = ry0 + rng.uniform(0, rh - ch)
    out = np.asarray(img.resize((width, height), Image.BILINEAR,
                                box=(x0, y0, x0 + cw, y0 + ch)), dtype=np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if texture and rng.random() < 0.5:
        out = out[::-1]
    mean = out.mean()
    gain = rng.uniform(0.9, 1.1, 3) if gray else rng.uniform(0.95, 1.05, 3)
    out = ((out - mean) * rng.uniform(0.7, 1.2) + mean * rng.uniform(0.7, 1.3)) * gain
    return np.ascontiguousarray(out)


def _render(rng, obj, coats, w, h):
    """The object at `(w, h)`: RGB float32 (h, w, 3) and alpha float32 (h, w)."""
    alpha = np.asarray(obj.alpha.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    if obj.coat:
        tex = coats[int(rng.integers(len(coats)))]
        tw, th = tex.size
        cw = min(tw, th * w / h) * rng.uniform(0.15, 0.5)
        ch = cw * h / w
        x0, y0 = rng.uniform(0, tw - cw), rng.uniform(0, th - ch)
        t = np.asarray(tex.resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)),
                       dtype=np.float32)
        t = 1.0 + 0.35 * (t / max(1.0, t.mean()) - 1.0)
        # darker towards the belly and legs, as a lit animal
        shade = np.linspace(1.1, 0.8, h, dtype=np.float32)[:, None]
        coat = np.asarray(COAT_COLOURS[int(rng.integers(len(COAT_COLOURS)))], np.float32)
        rgb = (t * shade)[..., None] * coat
    else:
        rgb = np.asarray(obj.rgb.resize((w, h), Image.BILINEAR), dtype=np.float32)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    mean = rgb.mean()
    rgb = ((rgb - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.7, 1.3)) \
        * rng.uniform(0.88, 1.12, 3)
    return rgb, alpha


def _bbox(mask):
    """`(x0, y0, x1, y1)` continuous-pixel extent of a boolean mask, or None."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def photo_image(rng, prepared, width, height):
    """Draw one image.

    Args:
        rng: `np.random.Generator`.
        prepared: what `_prepare(photos)` returns.
        width, height: image size.

    Returns:
        `(image uint8 (H, W, 3), objects)`, objects a list of
        `(class_name, (x0, y0, x1, y1))` integer continuous-pixel boxes of
        the visible extent.
    """
    objects, coats, backgrounds = prepared
    canvas = _background(rng, backgrounds, width, height)
    lo, hi = np.log(MIN_SCALE), np.log(MAX_SCALE_FRACTION * min(width, height))
    placed = []  # [class, full box, visible mask, mask pixels when pasted]
    for _ in range(int(rng.integers(OBJECTS_RANGE[0], OBJECTS_RANGE[1] + 1))):
        for _attempt in range(25):
            cls = int(rng.integers(len(CLASSES)))
            obj = objects[cls][int(rng.integers(len(objects[cls])))]
            s = float(np.exp(rng.uniform(lo, hi)))
            aspect = obj.aspect * float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
            w, h = s * np.sqrt(aspect), s / np.sqrt(aspect)
            f = min(1.0, 0.95 * width / w, 0.95 * height / h)
            w, h = max(4, int(round(w * f))), max(4, int(round(h * f)))
            if s >= 40 and rng.random() < 0.3:  # may stick out of the image
                x0 = int(rng.integers(-int(0.3 * w), width - int(0.7 * w) + 1))
                y0 = int(rng.integers(-int(0.3 * h), height - int(0.7 * h) + 1))
            else:
                x0 = int(rng.integers(0, width - w + 1))
                y0 = int(rng.integers(0, height - h + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if any(_iou(box, p[1]) >= MAX_IOU for p in placed):
                continue
            rgb, alpha = _render(rng, obj, coats, w, h)
            # the part inside the image
            cx0, cy0 = max(0, x0), max(0, y0)
            cx1, cy1 = min(width, x0 + w), min(height, y0 + h)
            a = alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            mask = np.zeros((height, width), bool)
            mask[cy0:cy1, cx0:cx1] = a >= 0.5
            full = int((alpha >= 0.5).sum())
            if full == 0 or mask.sum() < MIN_VISIBLE * full:
                continue
            remaining = [p[2] & ~mask for p in placed]
            if any(r.sum() < MIN_VISIBLE * p[3] for r, p in zip(remaining, placed)):
                continue
            boxes = [_bbox(r) for r in remaining] + [_bbox(mask)]
            if any(_iou(boxes[i], boxes[j]) >= MAX_IOU
                   for i in range(len(boxes)) for j in range(i + 1, len(boxes))):
                continue
            region = canvas[cy0:cy1, cx0:cx1]
            a3 = a[..., None]
            canvas[cy0:cy1, cx0:cx1] = region * (1.0 - a3) + \
                rgb[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] * a3
            for p, r in zip(placed, remaining):
                p[2] = r
            placed.append([cls, box, mask, full])
            break
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return image, [(CLASSES[p[0]], _bbox(p[2])) for p in placed]


# --------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------

def make_photo_voc(out_dir, num_trainval=1500, num_test=300, seed=0, photos=None,
                   jpeg_quality=90):
    """Write the photo detection dataset in Pascal VOC layout.

    Creates `out_dir/{Annotations,JPEGImages,ImageSets/Main}` with
    `trainval.txt` and `test.txt`, `labels.txt` (the ten class names, one
    per line) and `photo_voc.json` (the parameters, for caches). Image `i`
    depends only on `(seed, i)` and the photos.

    Args:
        out_dir: target folder (created).
        num_trainval, num_test: images per split.
        seed: int.
        photos: optional `{name: (H, W), (H, W, 3) or (H, W, 4) uint8 array}` for
            every name in `PHOTO_NAMES`, used instead of scikit-image's
            photos (crop boxes are scaled to each array's size). Default:
            read scikit-image's data folder (needs `pip install scikit-image`).
        jpeg_quality: JPEG quality of the images.

    Returns:
        `out_dir` as a string.

    Example:

    >>> from keras_ssd.data import VOCDataset
    >>> root = make_photo_voc("/tmp/photo_voc", 100, 20)
    >>> train = VOCDataset(root, "trainval", class_names=CLASSES)
    """
    if num_trainval < 0 or num_test < 0:
        raise ValueError("make_photo_voc: image counts must be >= 0, got "
                         f"{num_trainval}, {num_test}")
    prepared = _prepare(load_skimage_photos() if photos is None else photos)
    # Imported here so that the module itself does not import keras_ssd's
    # data layer (and numpy-only users need not).
    from keras_ssd.data.voc import make_voc_folders, write_voc_annotation, write_voc_lists

    out_dir = make_voc_folders(out_dir)

    ids = [f"{i:06d}" for i in range(num_trainval + num_test)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng([int(seed), i])
        width = int(rng.integers(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1))
        height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
        image, objects = photo_image(rng, prepared, width, height)
        filename = image_id + ".jpg"
        Image.fromarray(image).save(os.path.join(out_dir, "JPEGImages", filename),
                                    quality=jpeg_quality)
        write_voc_annotation(out_dir, image_id, filename, width, height,
                             [box for _, box in objects], [name for name, _ in objects])
    write_voc_lists(out_dir, {"trainval": ids[:num_trainval], "test": ids[num_trainval:]},
                    CLASSES)
    with open(os.path.join(out_dir, "photo_voc.json"), "w") as f:
        json.dump(dataset_params(num_trainval, num_test, seed, photos is None), f, indent=2)
    return out_dir


def dataset_params(num_trainval, num_test, seed, skimage=True):
    """What `photo_voc.json` records: a cached dataset is reused only when
    these match."""
    return {"generator": "benchmarks.photo_dataset", "version": VERSION,
            "num_trainval": int(num_trainval), "num_test": int(num_test),
            "seed": int(seed), "photos": "scikit-image" if skimage else "custom",
            "classes": list(CLASSES)}


def is_cached(out_dir, num_trainval, num_test, seed):
    """True when `out_dir` holds a complete dataset made with these parameters
    from scikit-image's photos."""
    try:
        with open(os.path.join(out_dir, "photo_voc.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return meta == dataset_params(num_trainval, num_test, seed) and all(
        os.path.isfile(os.path.join(out_dir, "ImageSets", "Main", s + ".txt"))
        for s in ("trainval", "test"))


def _colour(label):
    hue = (label * 0.618033988749895) % 1.0
    import colorsys

    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.95))


def contact_sheet(dataset, path, count=16, columns=4, cell=(320, 288)):
    """Save a grid of the first `count` images of a `VOCDataset` with their
    boxes and class names drawn, for a human to check."""
    count = min(count, len(dataset))
    rows = max(1, -(-count // columns))
    sheet = Image.new("RGB", (columns * cell[0], rows * cell[1]), (40, 40, 40))
    for k in range(count):
        rec = dataset[k]
        img = Image.fromarray(dataset.load_image(k))
        draw = ImageDraw.Draw(img)
        for box, label in zip(rec["boxes"], rec["labels"]):
            colour = _colour(int(label))
            draw.rectangle([float(box[0]), float(box[1]), float(box[2]) - 1,
                            float(box[3]) - 1], outline=colour, width=2)
            draw.text((float(box[0]) + 3, float(box[1]) + 2), CLASSES[int(label)],
                      fill=colour)
        sheet.paste(img, ((k % columns) * cell[0], (k // columns) * cell[1]))
    sheet.save(path)
    return path


def describe(dataset):
    """Class counts and box-size quantiles of a `VOCDataset`, as text lines."""
    counts = np.zeros(len(CLASSES), int)
    sides, per_image = [], []
    for rec in dataset:
        b = np.asarray(rec["boxes"], np.float64)
        counts += np.bincount(np.asarray(rec["labels"], int), minlength=len(CLASSES))
        sides.extend(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
        per_image.append(len(b))
    q = np.percentile(sides, [0, 10, 25, 50, 75, 90, 100]) if sides else [0] * 7
    lines = [f"{len(dataset)} images, {int(counts.sum())} objects "
             f"({np.mean(per_image) if per_image else 0:.2f} per image)",
             "  " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)),
             "  box sqrt(w*h) px: min {:.0f}, p10 {:.0f}, p25 {:.0f}, median {:.0f}, "
             "p75 {:.0f}, p90 {:.0f}, max {:.0f}".format(*q)]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.photo_dataset",
        description="Write the real-photo detection dataset (scikit-image's sample photos) "
                    "in Pascal VOC layout.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--train", type=int, default=1500, help="trainval images (1500)")
    parser.add_argument("--test", type=int, default=300, help="test images (300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        make_photo_voc(args.out, args.train, args.test, args.seed)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - t0
    from keras_ssd.data import VOCDataset

    print(f"wrote {args.train + args.test} images to {args.out} in {seconds:.1f} s")
    for split in ("trainval", "test"):
        ds = VOCDataset(args.out, split, class_names=CLASSES)
        print(f"{split}: " + "\n".join(describe(ds)))
    train = VOCDataset(args.out, "trainval", class_names=CLASSES)
    if len(train):
        sheet = contact_sheet(train, os.path.join(args.out, "contact_sheet.png"))
        print(f"contact sheet: {sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
