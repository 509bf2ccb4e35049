"""The learning suite: three real-photo detection datasets whose test objects
are instances never seen in training.

`benchmarks.photo_dataset` pastes the same ten object cut-outs into its
training and its test images: it measures how fast a detector learns ten
instances, not whether it detects new ones. The datasets here split the
*source objects* (or, for textures, the source photo's pixels) between
trainval and test, so that a test object is always a new instance of its
class, and they differ from each other in object kind, size, number of
classes, objects per image and clutter:

=========== ======= ========== ============= ===================================
dataset     classes objects /  object side   what the objects are
                    image      sqrt(w*h) px
=========== ======= ========== ============= ===================================
digits      10      3 - 15     10 - 56       scikit-learn's 1,797 handwritten
                                             digits (8x8, thin strokes,
                                             look-alike classes) inked on busy
                                             photos; trainval draws on digits
                                             0..1199, test on 1200..1796. About
                                             half the objects are under 8% of
                                             the image side.
textures    8       1 - 6      24 - 0.65 x   shapes (ellipse, rounded box,
                               short side    triangle) cut from eight material
                                             photos (brick, grass, gravel,
                                             moon, cells, ihc, retina, page of
                                             text); trainval cuts from the
                                             left 55% of each photo, test from
                                             the right 45%.
faces       3       1 - 8      14 - 0.55 x   faces (scikit-image's LFW subset:
                               short side    100 faces, 70 / 30 split), coins
                                             (coins.png: 9 / 6 coins) and
                                             galaxies (hubble_deep_field: the
                                             36 largest, alternately split);
                                             0-3 unlabelled LFW non-face patches
                                             per image as distractors.
=========== ======= ========== ============= ===================================

Images are 256..320 px wide and 224..288 px high. Backgrounds are random
crops of real photos (`benchmarks.photo_dataset`'s background jitter) that
never show a class's source object. An object may overlap another by at
most 25% of the smaller one's box; its box is the extent of its mask
(alpha >= 0.5), cut at the image border.

Each dataset is written in Pascal VOC layout (`JPEGImages/`,
`Annotations/`, `ImageSets/Main/{trainval,test}.txt`, `labels.txt`) and in
YOLO / Ultralytics layout under `yolo/` (`images/train` = trainval,
`images/val` = test, `data.yaml`), plus `suite.json` (the parameters, for
caches) and `instances.json` (which source instance every object of every
image was drawn from, so that the train/test split can be checked).

Run:

    python -m benchmarks.photo_suite --out DIR [--train 1000 --test 250]
    python -m benchmarks.learning --suite ...   (builds them, then trains)

Needs scikit-image and scikit-learn (`pip install -e .[bench]`), both read
offline from their installed data folders.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np
from PIL import Image

from benchmarks import photo_dataset as pd

#: Bumped when the generators change what they draw (for caches).
VERSION = 1

#: The datasets, in suite order.
NAMES = ("digits", "textures", "faces")

WIDTH_RANGE = (256, 320)
HEIGHT_RANGE = (224, 288)
#: An object may cover at most this share of a smaller object's box.
MAX_COVER = 0.25

DIGIT_SPLIT = 1200  # digits [0, 1200) train, [1200, 1797) test
TEXTURE_CLASSES = ("brick", "grass", "gravel", "moon", "cell", "ihc", "retina", "page")
TEXTURE_TRAIN_SHARE = 0.55  # left part of each material photo for trainval
FACE_CLASSES = ("face", "coin", "galaxy")
NUM_TRAIN_FACES = 70  # of LFW's 100 faces
NUM_TRAIN_COINS = 9  # of photo_dataset's 15 coins
NUM_GALAXIES = 36

#: Per dataset: classes, objects per image, min side px, max side (px or a
#: share of the shorter image side), background photos.
SPECS = {
    "digits": {"classes": tuple(str(d) for d in range(10)), "objects": (3, 15),
               "min_side": 10, "max_side": 56, "distractors": (0, 0),
               "backgrounds": ("brick", "grass", "gravel", "coffee", "astronaut", "chelsea",
                               "rocket", "motorcycle_right", "camera", "color", "retina",
                               "china", "flower")},
    "textures": {"classes": TEXTURE_CLASSES, "objects": (1, 6), "min_side": 24,
                 "max_side": 0.65, "distractors": (0, 0),
                 "backgrounds": ("coffee", "astronaut", "chelsea", "rocket",
                                 "motorcycle_right", "color", "china", "flower", "logo")},
    "faces": {"classes": FACE_CLASSES, "objects": (1, 8), "min_side": 14, "max_side": 0.55,
              "distractors": (0, 3),
              "backgrounds": ("brick", "grass", "gravel", "moon", "page", "text", "coffee",
                              "rocket", "motorcycle_right", "chelsea", "china", "flower",
                              "cell")},
}


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------

def _require(module, extra):
    if importlib.util.find_spec(module) is None:
        raise RuntimeError(f"benchmarks.photo_suite needs {extra} "
                           f"(pip install {extra}; or pip install -e .[bench])")


def load_sources():
    """The photos and arrays every dataset is drawn from, read offline.

    Returns:
        dict: scikit-image photos by name (RGB uint8), `china` and `flower`
        (scikit-learn's sample photos), `digits` `(1797, 8, 8)` float in
        [0, 16] with `digit_labels`, `lfw` `(200, 25, 25)` float in [0, 1]
        (faces first, then non-faces).
    """
    _require("skimage", "scikit-image")
    _require("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits, load_sample_images

    names = sorted(set(pd.PHOTO_NAMES) | {"hubble_deep_field", "coins"})
    photos = pd.load_skimage_photos(names)
    sample = load_sample_images()
    for path, img in zip(sample.filenames, sample.images):
        photos[os.path.splitext(os.path.basename(path))[0]] = np.asarray(img, np.uint8)
    digits = load_digits()
    lfw_path = os.path.join(pd.skimage_data_dir(), "lfw_subset.npy")
    if not os.path.isfile(lfw_path):
        raise RuntimeError(f"scikit-image's {lfw_path} is missing (pip install -U "
                           "scikit-image)")
    # a plain float array: allow_pickle stays False, nothing is unpickled
    lfw = np.load(lfw_path, allow_pickle=False)
    return {"photos": photos, "digits": np.asarray(digits.images, np.float32),
            "digit_labels": np.asarray(digits.target, int), "lfw": lfw}


class _Instance:
    """One source object: RGB and alpha uint8 as PIL images, its class and
    an id unique in the dataset (what `instances.json` records)."""

    def __init__(self, label, key, rgb, alpha):
        self.label, self.key = int(label), str(key)
        self.rgb = Image.fromarray(np.ascontiguousarray(rgb))
        self.alpha = Image.fromarray(np.ascontiguousarray(alpha))
        self.aspect = self.rgb.size[0] / self.rgb.size[1]


def _gray_rgb(gray01):
    g = np.clip(np.round(np.asarray(gray01) * 255), 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _galaxy_boxes(photo, count=NUM_GALAXIES):
    """The `count` largest bright sources of the Hubble deep field:
    `(x0, y0, x1, y1)` boxes, largest first."""
    from scipy import ndimage as ndi

    lum = photo.astype(np.float32).mean(axis=2)
    lab, _ = ndi.label(ndi.binary_dilation(lum > 90, iterations=2))
    boxes = []
    for sl in ndi.find_objects(lab):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        if min(x1 - x0, y1 - y0) >= 8:
            boxes.append(((x1 - x0) * (y1 - y0), (x0, y0, x1, y1)))
    boxes.sort(key=lambda t: -t[0])
    return [b for _, b in boxes[:count]]


def instances(name, sources):
    """`{"trainval": [...], "test": [...]}` instance pools of a dataset.

    Digits and faces: disjoint lists of `_Instance`. Textures: per class
    `(photo array, x-range)`: objects are cut at draw time from that range
    only, which differs between the splits.
    """
    photos = sources["photos"]
    if name == "digits":
        pools = {"trainval": [], "test": []}
        for i, (img, label) in enumerate(zip(sources["digits"], sources["digit_labels"])):
            alpha = np.clip((img / 16.0 - 0.15) / 0.5, 0, 1)
            pools["trainval" if i < DIGIT_SPLIT else "test"].append(
                _Instance(label, f"digit{i}", _gray_rgb(img / 16.0),
                          np.round(alpha * 255).astype(np.uint8)))
        return pools
    if name == "textures":
        pools = {"trainval": [], "test": []}
        for label, photo in enumerate(TEXTURE_CLASSES):
            arr = photos[photo]
            cut = int(round(TEXTURE_TRAIN_SHARE * arr.shape[1]))
            pools["trainval"].append((label, photo, arr, (0, cut)))
            pools["test"].append((label, photo, arr, (cut, arr.shape[1])))
        return pools
    if name == "faces":
        pools = {"trainval": [], "test": []}
        lfw = sources["lfw"]
        face_mask = pd._soft_mask("ellipse", 25, 25, feather=0.25)
        for i in range(100):
            split = "trainval" if i < NUM_TRAIN_FACES else "test"
            pools[split].append(_Instance(0, f"face{i}", _gray_rgb(lfw[i]),
                                          np.round(face_mask * 255).astype(np.uint8)))
        coins = photos["coins"]
        for i, (x0, y0, x1, y1) in enumerate(pd._COIN_BOXES):
            crop = coins[y0 - 2:y1 + 2, x0 - 2:x1 + 2]
            mask = pd._soft_mask("ellipse", crop.shape[1], crop.shape[0], feather=0.06)
            split = "trainval" if i < NUM_TRAIN_COINS else "test"
            pools[split].append(_Instance(1, f"coin{i}", crop,
                                          np.round(mask * 255).astype(np.uint8)))
        hubble = photos["hubble_deep_field"]
        for i, (x0, y0, x1, y1) in enumerate(_galaxy_boxes(hubble)):
            pad = max(2, (x1 - x0) // 8)
            crop = hubble[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad]
            lum = crop.astype(np.float32).mean(axis=2)
            alpha = np.clip((lum - 25.0) / 50.0, 0, 1)
            pools["trainval" if i % 2 == 0 else "test"].append(
                _Instance(2, f"galaxy{i}", crop, np.round(alpha * 255).astype(np.uint8)))
        return pools
    raise ValueError(f"unknown suite dataset {name!r}; one of {', '.join(NAMES)}")


def _distractors(sources):
    """LFW's 100 non-face patches, unlabelled clutter for the faces set."""
    mask = np.round(pd._soft_mask("superellipse", 25, 25, feather=0.2) * 255)
    mask = mask.astype(np.uint8)
    return [_Instance(-1, f"nonface{i}", _gray_rgb(p), mask)
            for i, p in enumerate(sources["lfw"][100:])]


def _backgrounds(names, photos):
    out = []
    for name in names:
        arr = np.ascontiguousarray(photos[name][..., :3])
        gray = bool(np.all(arr[..., 0] == arr[..., 1])
                    and np.all(arr[..., 1] == arr[..., 2]))
        out.append((Image.fromarray(arr), (0, 0, arr.shape[1], arr.shape[0]),
                    name in ("brick", "grass", "gravel", "moon", "retina", "cell"), gray))
    return out


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------

def _texture_instance(rng, pool_entry, w, h):
    """A shape of `(w, h)` cut from a random window of the split's x-range."""
    label, photo, arr, (xa, xb) = pool_entry
    ph = arr.shape[0]
    side = rng.uniform(0.25, 0.9) * min(xb - xa, ph)
    cw, ch = side * np.sqrt(w / h), side / np.sqrt(w / h)
    cw, ch = min(cw, xb - xa), min(ch, ph)
    x0 = rng.uniform(xa, xb - cw)
    y0 = rng.uniform(0, ph - ch)
    rgb = np.asarray(Image.fromarray(arr[..., :3]).resize(
        (w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch)))
    shape = int(rng.integers(3))
    if shape == 2:  # triangle, apex up or down
        yy = (np.arange(h) + 0.5) / h
        xx = np.abs((np.arange(w) + 0.5) / w * 2 - 1)
        yy = yy if rng.random() < 0.5 else 1 - yy
        alpha = np.clip((yy[:, None] - xx[None, :]) * 12, 0, 1).astype(np.float32)
    else:
        alpha = pd._soft_mask("ellipse" if shape == 0 else "superellipse", w, h,
                              feather=0.08)
    key = f"{photo}[{int(x0)}:{int(np.ceil(x0 + cw))}]"
    return label, key, rgb.astype(np.float32), alpha


def _render(rng, inst, w, h, ink=None):
    alpha = np.asarray(inst.alpha.resize((w, h), Image.BILINEAR), np.float32) / 255.0
    rgb = np.asarray(inst.rgb.resize((w, h), Image.BILINEAR), np.float32)
    if ink is not None:  # digits: the stroke takes an ink colour
        rgb = np.broadcast_to(np.asarray(ink, np.float32), rgb.shape).copy()
    if rng.random() < 0.5 and ink is None:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    return rgb, alpha


def _jitter(rng, rgb):
    mean = rgb.mean()
    return ((rgb - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.75, 1.25)) \
        * rng.uniform(0.9, 1.1, 3)


def _cover(a, b):
    """Share of the smaller box that the two boxes' intersection covers."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / max(small, 1e-9)


def draw_image(rng, name, pool, backgrounds, distractors, width, height):
    """One image of dataset `name`.

    Returns:
        `(uint8 (H, W, 3), objects)`: objects a list of
        `(label, (x0, y0, x1, y1), instance key)`.
    """
    spec = SPECS[name]
    canvas = pd._background(rng, backgrounds, width, height)
    short = min(width, height)
    max_side = spec["max_side"] if spec["max_side"] > 1 else spec["max_side"] * short
    lo, hi = np.log(spec["min_side"]), np.log(max_side)
    placed = []
    wanted = int(rng.integers(spec["objects"][0], spec["objects"][1] + 1))
    extra = int(rng.integers(spec["distractors"][0], spec["distractors"][1] + 1))
    for k in range(wanted + extra):
        distractor = k >= wanted
        for _attempt in range(30):
            s = float(np.exp(rng.uniform(lo, hi)))
            if name == "textures":
                entry = pool[int(rng.integers(len(pool)))]
                aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
            else:
                inst = (distractors if distractor else pool)[
                    int(rng.integers(len(distractors) if distractor else len(pool)))]
                aspect = inst.aspect * float(
                    np.exp(rng.uniform(np.log(0.85), np.log(1.18))))
            w = max(4, min(int(round(s * np.sqrt(aspect))), int(0.95 * width)))
            h = max(4, min(int(round(s / np.sqrt(aspect))), int(0.95 * height)))
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if any(_cover(box, p[1]) > MAX_COVER for p in placed):
                continue
            if name == "textures":
                label, key, rgb, alpha = _texture_instance(rng, entry, w, h)
            else:
                ink = None
                if name == "digits":
                    region = canvas[y0:y0 + h, x0:x0 + w].mean()
                    ink = (rng.uniform(0, 60, 3) if region > 110
                           else rng.uniform(200, 255, 3))
                rgb, alpha = _render(rng, inst, w, h, ink)
                label, key = inst.label, inst.key
            rgb = _jitter(rng, rgb)
            mask = alpha >= 0.5
            cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
            if cols.size == 0:
                continue
            region = canvas[y0:y0 + h, x0:x0 + w]
            canvas[y0:y0 + h, x0:x0 + w] = region * (1 - alpha[..., None]) \
                + rgb * alpha[..., None]
            tight = (x0 + int(cols[0]), y0 + int(rows[0]),
                     x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
            placed.append((label, box, tight, key, distractor))
            break
    image = np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
    return image, [(p[0], p[2], p[3]) for p in placed if not p[4]]


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

def dataset_params(name, num_trainval, num_test, seed):
    """What `suite.json` records: a cached dataset is reused only when these
    match."""
    return {"generator": "benchmarks.photo_suite", "version": VERSION, "dataset": name,
            "num_trainval": int(num_trainval), "num_test": int(num_test),
            "seed": int(seed), "classes": list(SPECS[name]["classes"])}


def is_cached(out_dir, name, num_trainval, num_test, seed):
    """True when `out_dir` holds a complete build with these parameters."""
    try:
        with open(os.path.join(out_dir, "suite.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return meta == dataset_params(name, num_trainval, num_test, seed) and os.path.isfile(
        os.path.join(out_dir, "yolo", "data.yaml"))


def make_dataset(name, out_dir, num_trainval=1000, num_test=250, seed=0, sources=None,
                 jpeg_quality=90):
    """Write suite dataset `name` in VOC layout at `out_dir` and YOLO layout
    at `out_dir/yolo`.

    Args:
        name: one of `NAMES`.
        out_dir: target folder (created; files of an earlier build are
            overwritten).
        num_trainval, num_test: images per split.
        seed: int; image `i` depends only on `(seed, name, i)`.
        sources: what `load_sources()` returns (read once for several
            datasets); default: read it.
        jpeg_quality: JPEG quality.

    Returns:
        `out_dir` as a string.

    Example:

    >>> from keras_ssd.data import VOCDataset
    >>> make_dataset("digits", "/tmp/digits", 100, 20)
    >>> VOCDataset("/tmp/digits", "test", class_names=SPECS["digits"]["classes"])
    """
    if name not in SPECS:
        raise ValueError(f"unknown suite dataset {name!r}; one of {', '.join(NAMES)}")
    if num_trainval < 1 or num_test < 1:
        raise ValueError(f"make_dataset: image counts must be >= 1, got {num_trainval}, "
                         f"{num_test}")
    from keras_ssd.data import VOCDataset
    from keras_ssd.data.voc import make_voc_folders, write_voc_annotation, write_voc_lists
    from keras_ssd.data.yolo import write_yolo

    sources = load_sources() if sources is None else sources
    spec = SPECS[name]
    classes = spec["classes"]
    pools = instances(name, sources)
    backgrounds = _backgrounds(spec["backgrounds"], sources["photos"])
    distractors = _distractors(sources) if spec["distractors"][1] else []
    out_dir = make_voc_folders(out_dir)
    ids = {"trainval": [], "test": []}
    used = {"trainval": {}, "test": {}}
    salt = NAMES.index(name) + 1
    for i in range(num_trainval + num_test):
        split = "trainval" if i < num_trainval else "test"
        rng = np.random.default_rng([int(seed), salt, i])
        width = int(rng.integers(WIDTH_RANGE[0], WIDTH_RANGE[1] + 1))
        height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
        image, objects = draw_image(rng, name, pools[split], backgrounds, distractors,
                                    width, height)
        image_id = f"{i:06d}"
        Image.fromarray(image).save(os.path.join(out_dir, "JPEGImages", image_id + ".jpg"),
                                    quality=jpeg_quality)
        write_voc_annotation(out_dir, image_id, image_id + ".jpg", width, height,
                             [b for _, b, _ in objects],
                             [classes[c] for c, _, _ in objects])
        ids[split].append(image_id)
        used[split][image_id] = [k for _, _, k in objects]
    write_voc_lists(out_dir, ids, classes)
    with open(os.path.join(out_dir, "instances.json"), "w") as f:
        json.dump(used, f)
    yolo = os.path.join(out_dir, "yolo")
    if os.path.isfile(os.path.join(yolo, "data.yaml")):
        os.remove(os.path.join(yolo, "data.yaml"))  # a rebuild: no stale splits
    for split, yolo_split in (("trainval", "train"), ("test", "val")):
        write_yolo(VOCDataset(out_dir, split, class_names=classes), yolo, yolo_split)
    with open(os.path.join(out_dir, "suite.json"), "w") as f:
        json.dump(dataset_params(name, num_trainval, num_test, seed), f, indent=2)
    return out_dir


def texture_ranges(key):
    """`(photo, x0, x1)` of a textures instance key `photo[x0:x1]`."""
    photo, _, rest = key.partition("[")
    x0, x1 = rest.rstrip("]").split(":")
    return photo, int(x0), int(x1)


def build_suite(out, num_trainval=1000, num_test=250, seed=0, names=NAMES, log=print):
    """Build (or reuse cached) suite datasets under `out/<name>`.

    Returns:
        `{name: folder}`.
    """
    sources, dirs = None, {}
    for name in names:
        path = os.path.join(out, name)
        dirs[name] = path
        if is_cached(path, name, num_trainval, num_test, seed):
            log(f"{name}: {path} (cached)")
            continue
        if sources is None:
            sources = load_sources()
        t0 = time.perf_counter()
        make_dataset(name, path, num_trainval, num_test, seed, sources)
        log(f"{name}: wrote {num_trainval} + {num_test} images to {path} in "
            f"{time.perf_counter() - t0:.1f} s")
    return dirs


def describe(path, name):
    """Objects per image and box-size quantiles (share of the shorter image
    side) of each split, as text lines."""
    from keras_ssd.data import VOCDataset

    lines = []
    for split in ("trainval", "test"):
        ds = VOCDataset(path, split, class_names=SPECS[name]["classes"])
        sides, counts = [], []
        for rec in ds:
            b = np.asarray(rec["boxes"], np.float64).reshape(-1, 4)
            short = min(rec["width"], rec["height"])
            sides.extend(np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) / short)
            counts.append(len(b))
        sides = np.asarray(sides)
        q = np.percentile(sides, [10, 50, 90])
        lines.append(f"  {split}: {len(ds)} images, {np.mean(counts):.1f} objects/image "
                     f"({min(counts)}-{max(counts)}); side/short side p10 {q[0]:.3f}, "
                     f"median {q[1]:.3f}, p90 {q[2]:.3f}; under 0.08: "
                     f"{np.mean(sides < 0.08):.0%}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photo_suite",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=",".join(NAMES), metavar="A,B")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    try:
        dirs = build_suite(args.out, args.train, args.test, args.seed, names)
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, path in dirs.items():
        print(name)
        print("\n".join(describe(path, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
