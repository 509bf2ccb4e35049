"""SSD data augmentation in the Caffe order, in numpy and PIL.

The recipe (REFERENCE section 4, the original Caffe SSD): photometric
distortion, expand (zoom out) onto a mean-filled canvas, min-IoU random crop,
horizontal flip, resize. Every probability and range is an argument.

Two ways to use it:

* step by step on arrays, each step taking a `numpy.random.Generator`:
  `photometric_distort`, `expand`, `random_crop`, `random_flip`, `resize`.
  Clear and easy to test, but expand builds a canvas up to 16 times the image.
* `SSDAugmentation`, the fast path the training pipeline uses. It first
  *samples* every random choice from the image size and boxes alone
  (`sample`, an `AugmentPlan`), then *applies* expand + crop + flip + resize
  as one resize of the part of the source image the crop sees (`apply`), so
  no canvas is ever built and a JPEG can be decoded at a reduced DCT scale when the output
  is much smaller than the patch. Drawing from the same generator, `sample`
  consumes random numbers exactly like the step-by-step chain, so both give
  the same boxes and, up to resampling rounding, the same pixels (a test pins
  this).

Photometric order: the Caffe recipe distorts the whole image before
expand. Every photometric step is a per-pixel function, so the fast path
applies it to the resized output pixels that come from the image instead
(fewer pixels, never the mean fill); see `apply_plan` for why that is
equivalent up to resampling rounding, and the test that bounds it.

Boxes are continuous pixel xyxy: pixel `i` covers `[i, i + 1)`, so a flip
maps `x` to `W - x` and a resize multiplies by `new / old`.
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from keras_ssd.boxes import iou
from keras_ssd.data.images import MEAN_RGB

DEFAULT_MIN_IOUS = (0.1, 0.3, 0.5, 0.7, 0.9)

_ARANGE = np.arange(256, dtype=np.float64)
_IDENTITY = np.arange(256, dtype=np.uint8)


def _rng(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_prob(name, p):
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_range(name, r, low=None):
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo or (
        low is not None and lo < low
    ):
        raise ValueError(f"{name} must be an increasing (low, high) pair >= {low}, got {r!r}")
    return lo, hi


def _output_hw(size):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"output size must be an int or (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"output size must be positive, got {size!r}")
    return h, w


def _as_array(image):
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image


def _as_boxes(boxes):
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


# --------------------------------------------------------------- photometric
@dataclasses.dataclass(frozen=True)
class PhotometricParams:
    """One draw of the photometric distortion; `None` = step not applied.

    `brightness` is an additive delta, `contrast` and `saturation`
    multipliers, `hue` a shift in OpenCV units (0-180 per full turn).
    """

    brightness: Optional[float] = None
    contrast: Optional[float] = None
    contrast_first: bool = True
    saturation: Optional[float] = None
    hue: Optional[float] = None

    @property
    def is_identity(self):
        return (self.brightness is None and self.contrast is None
                and self.saturation is None and self.hue is None)


def sample_photometric(rng, brightness_prob=0.5, brightness_delta=32.0,
                       contrast_prob=0.5, contrast_range=(0.5, 1.5),
                       saturation_prob=0.5, saturation_range=(0.5, 1.5),
                       hue_prob=0.5, hue_delta=18.0):
    """Draw a `PhotometricParams` (Caffe's random distortion)."""
    contrast_first = bool(rng.random() < 0.5)
    b = float(rng.uniform(-brightness_delta, brightness_delta)) if rng.random() < brightness_prob else None
    c = float(rng.uniform(*contrast_range)) if rng.random() < contrast_prob else None
    s = float(rng.uniform(*saturation_range)) if rng.random() < saturation_prob else None
    h = float(rng.uniform(-hue_delta, hue_delta)) if rng.random() < hue_prob else None
    return PhotometricParams(b, c, contrast_first, s, h)


def _lut(scale=1.0, shift=0.0):
    return np.clip(np.rint(_ARANGE * scale + shift), 0, 255).astype(np.uint8)


def _saturate_rgb(img, factor):
    """HSV saturation x `factor` computed in RGB (no HSV round trip).

    With hue and value (the max channel `V`) fixed, HSV saturation is linear
    in each channel: `c' = V - (V - c) * f`, `f` capped at `V / (V - min)`
    where the saturation would pass 1. Exactly the HSV operation, cheaper.
    """
    a = np.asarray(img)
    # Planar float32 copies: numpy is slow on a trailing axis of length 3.
    planes = [a[..., c].astype(np.float32) for c in range(3)]
    v = np.maximum(np.maximum(planes[0], planes[1]), planes[2])
    f = np.float32(factor)
    if factor > 1.0:
        spread = v - np.minimum(np.minimum(planes[0], planes[1]), planes[2])
        f = np.minimum(f, v / np.maximum(spread, np.float32(1e-3)))
    out = np.empty(a.shape, dtype=np.uint8)
    for c, p in enumerate(planes):
        q = v + (p - v) * f
        np.clip(q, 0, 255, out=q)
        out[..., c] = np.rint(q, out=q)
    return Image.fromarray(out)


def apply_photometric(image, params):
    """Apply `PhotometricParams` to an RGB uint8 image (array or PIL).

    On uint8 values with rounding and clipping after each step, as Caffe
    does: brightness, contrast (if first), saturation and hue (HSV; hue
    wraps around), contrast (if last). Brightness and contrast are lookup
    tables; hue (with saturation) is a lookup table on PIL's HSV planes;
    saturation alone is done in RGB by the equivalent linear formula.

    Returns:
        the same type as `image` (uint8 array or PIL RGB image).
    """
    as_array = not isinstance(image, Image.Image)
    img = Image.fromarray(_as_array(image)) if as_array else image
    if not params.is_identity:
        lut = _IDENTITY
        if params.brightness is not None:
            lut = _lut(shift=params.brightness)
        if params.contrast is not None and params.contrast_first:
            lut = _lut(scale=params.contrast)[lut]
        if lut is not _IDENTITY:
            img = img.point(lut.tolist() * 3)
        if params.hue is None and params.saturation is not None:
            img = _saturate_rgb(img, params.saturation)
        elif params.hue is not None:
            h_lut = _IDENTITY
            s_lut = _IDENTITY
            if params.hue is not None:
                # OpenCV hue runs 0-180 per turn; PIL's runs 0-256.
                shift = int(round(params.hue * 256.0 / 180.0))
                h_lut = ((_IDENTITY.astype(np.int64) + shift) % 256).astype(np.uint8)
            if params.saturation is not None:
                s_lut = _lut(scale=params.saturation)
            hsv = img.convert("HSV").point(
                h_lut.tolist() + s_lut.tolist() + _IDENTITY.tolist()
            )
            img = hsv.convert("RGB")
        if params.contrast is not None and not params.contrast_first:
            img = img.point(_lut(scale=params.contrast).tolist() * 3)
    return np.asarray(img, dtype=np.uint8) if as_array else img


def photometric_distort(image, rng=None, **options):
    """Random photometric distortion of an RGB uint8 image (step 1).

    Args:
        image: `(H, W, 3)` uint8 array.
        rng: `numpy.random.Generator` (or seed).
        **options: `sample_photometric` probabilities and ranges.

    Returns:
        the distorted `(H, W, 3)` uint8 array.
    """
    return apply_photometric(image, sample_photometric(_rng(rng), **options))


# -------------------------------------------------------------------- expand
@dataclasses.dataclass(frozen=True)
class ExpandParams:
    """A zoom out: the image is placed at `(left, top)` on a mean canvas."""

    canvas_width: int
    canvas_height: int
    left: int
    top: int


def sample_expand(rng, width, height, prob=0.5, max_ratio=4.0):
    """Draw an `ExpandParams` (or `None`: no expand) for a `width x height` image.

    The canvas is `ratio` times the image per side, `ratio ~ U(1, max_ratio)`,
    and the image lands at an integer offset drawn uniformly.
    """
    if rng.random() >= prob or max_ratio <= 1.0:
        return None
    ratio = float(rng.uniform(1.0, max_ratio))
    cw, ch = max(int(width * ratio), width), max(int(height * ratio), height)
    left = int(math.floor(rng.uniform(0.0, cw - width)))
    top = int(math.floor(rng.uniform(0.0, ch - height)))
    return ExpandParams(cw, ch, min(left, cw - width), min(top, ch - height))


def expand(image, boxes, rng=None, prob=0.5, max_ratio=4.0, mean=MEAN_RGB):
    """Random zoom out (step 2): place the image on a larger mean-filled canvas.

    Returns:
        `(canvas, boxes)`; boxes shifted by the offset.
    """
    image = _as_array(image)
    boxes = _as_boxes(boxes)
    params = sample_expand(_rng(rng), image.shape[1], image.shape[0], prob, max_ratio)
    if params is None:
        return image, boxes
    canvas = np.empty((params.canvas_height, params.canvas_width, 3), dtype=np.uint8)
    canvas[...] = np.asarray(mean, dtype=np.uint8)
    h, w = image.shape[:2]
    canvas[params.top:params.top + h, params.left:params.left + w] = image
    return canvas, boxes + np.array([params.left, params.top] * 2, dtype=np.float64)


# ---------------------------------------------------------------------- crop
def _sample_patches(rng, width, height, n, scale_range, aspect_range):
    """`n` integer patches `(x0, y0, x1, y1)`, Caffe's sampler.

    Side scale `s ~ U(scale_range)` and aspect `a ~ U(aspect_range)` clamped
    to `[s^2, 1/s^2]` so the patch fits; width `s sqrt(a) W`, height
    `s / sqrt(a) H`; position uniform.
    """
    u = rng.random((n, 4))
    scale = scale_range[0] + u[:, 0] * (scale_range[1] - scale_range[0])
    aspect = aspect_range[0] + u[:, 1] * (aspect_range[1] - aspect_range[0])
    aspect = np.clip(aspect, scale ** 2, 1.0 / scale ** 2)
    pw = np.clip(np.rint(scale * np.sqrt(aspect) * width), 1, width).astype(np.int64)
    ph = np.clip(np.rint(scale / np.sqrt(aspect) * height), 1, height).astype(np.int64)
    x0 = np.minimum(np.floor(u[:, 2] * (width - pw + 1)), width - pw).astype(np.int64)
    y0 = np.minimum(np.floor(u[:, 3] * (height - ph + 1)), height - ph).astype(np.int64)
    return np.stack([x0, y0, x0 + pw, y0 + ph], axis=1)


def _centres_inside(boxes, patches):
    """`(T, G)` bool: box centre inside patch (borders included)."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    p = patches[:, None, :]
    return (cx >= p[..., 0]) & (cx <= p[..., 2]) & (cy >= p[..., 1]) & (cy <= p[..., 3])


def sample_crop(rng, width, height, boxes, min_ious=DEFAULT_MIN_IOUS,
                whole_image=True, any_patch=True, scale_range=(0.3, 1.0),
                aspect_range=(0.5, 2.0), max_trials=50):
    """Choose a crop patch (Caffe's batch sampler), or `None` for no crop.

    Options: the whole image (if `whole_image`), one per entry of
    `min_ious` (a patch is valid if some box has IoU >= that value with it),
    and an unconstrained patch (if `any_patch`). Every option gets up to
    `max_trials` random patches (drawn at once, so the cost is bounded and
    nothing can loop); a valid patch must also contain the centre of at
    least one box. Among the options that produced a valid patch, one is
    picked uniformly, as Caffe does. An image without boxes can only get the
    whole image or an unconstrained patch.

    Returns:
        `(x0, y0, x1, y1)` integer patch, or `None` (keep the whole image).
    """
    boxes = _as_boxes(boxes)
    found = [None] if whole_image else []
    constraints = [float(v) for v in min_ious] + ([None] if any_patch else [])
    if not constraints:
        return found[int(rng.integers(len(found)))] if found else None
    # All options' trials in one draw: the generator yields the same numbers
    # as one draw per option, in the same order, so the result is the same.
    trials = int(max_trials)
    patches = _sample_patches(rng, width, height, trials * len(constraints),
                              scale_range, aspect_range)
    n_opt = len(constraints)
    if boxes.shape[0]:
        valid = _centres_inside(boxes, patches)
        # best IoU of each patch with any box, compared per option
        best = (iou(patches.astype(np.float64), boxes)).max(axis=1)
        needed = np.array([-np.inf if m is None else m for m in constraints])
        valid = valid.any(axis=1).reshape(n_opt, trials) & (
            best.reshape(n_opt, trials) >= needed[:, None])
    else:
        valid = np.repeat(np.array([m is None for m in constraints])[:, None], trials, axis=1)
    patches = patches.reshape(n_opt, trials, 4)
    for option in range(n_opt):
        if valid[option].any():
            found.append(tuple(int(v) for v in patches[option, int(np.argmax(valid[option]))]))
    if not found:
        return None
    return found[int(rng.integers(len(found)))]


def crop_boxes(boxes, patch):
    """Keep the boxes whose centre lies in `patch`, clip them to it and shift.

    Returns:
        `(boxes, keep)`: the kept boxes in patch coordinates and the bool
        mask over the input boxes.
    """
    boxes = _as_boxes(boxes)
    patch_arr = np.asarray(patch, dtype=np.int64).reshape(1, 4)
    keep = _centres_inside(boxes, patch_arr)[0] if boxes.shape[0] else np.zeros(0, bool)
    x0, y0, x1, y1 = (float(v) for v in patch)
    out = boxes[keep].copy()
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], x0, x1) - x0
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], y0, y1) - y0
    # A box whose centre sits exactly on a border keeps half its size; drop
    # anything left without area so the target encoder never sees it.
    ok = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    idx = np.nonzero(keep)[0]
    keep = np.zeros_like(keep)
    keep[idx[ok]] = True
    return out[ok], keep


def random_crop(image, boxes, labels, rng=None, min_ious=DEFAULT_MIN_IOUS,
                whole_image=True, any_patch=True, scale_range=(0.3, 1.0),
                aspect_range=(0.5, 2.0), max_trials=50):
    """Min-IoU random crop (step 3), see `sample_crop` and `crop_boxes`.

    Returns:
        `(image, boxes, labels)`: the patch and its boxes and labels.
    """
    image = _as_array(image)
    boxes = _as_boxes(boxes)
    labels = np.asarray(labels)
    patch = sample_crop(_rng(rng), image.shape[1], image.shape[0], boxes, min_ious,
                        whole_image, any_patch, scale_range, aspect_range, max_trials)
    if patch is None:
        return image, boxes, labels
    out, keep = crop_boxes(boxes, patch)
    x0, y0, x1, y1 = patch
    return image[y0:y1, x0:x1], out, labels[keep]


# ---------------------------------------------------------------------- flip
def hflip(image, boxes):
    """Mirror an image and its boxes left-right (`x -> W - x`)."""
    image = _as_array(image)
    boxes = _as_boxes(boxes).copy()
    w = image.shape[1]
    boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    return image[:, ::-1], boxes


def random_flip(image, boxes, rng=None, prob=0.5):
    """Horizontal flip with probability `prob` (step 4)."""
    if _rng(rng).random() < prob:
        return hflip(image, boxes)
    return _as_array(image), _as_boxes(boxes)


# -------------------------------------------------------------------- resize
def resize_image(image, size):
    """Resize an RGB image to `size` (int or `(height, width)`), aspect not kept.

    Bilinear, with the same resampler the augmentation uses, so training and
    evaluation inputs look alike. Returns a uint8 array.
    """
    img = Image.fromarray(_as_array(image)) if not isinstance(image, Image.Image) else image
    oh, ow = _output_hw(size)
    out = img.convert("RGB").resize((ow, oh), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def resize(image, boxes, size):
    """Resize image and boxes to `size` (int or `(height, width)`) (step 5)."""
    image = _as_array(image)
    boxes = _as_boxes(boxes)
    oh, ow = _output_hw(size)
    h, w = image.shape[:2]
    scale = np.array([ow / w, oh / h] * 2)
    return resize_image(image, (oh, ow)), boxes * scale


# ------------------------------------------------------------- the fast path
@dataclasses.dataclass(frozen=True)
class AugmentPlan:
    """Every random choice of one augmentation, before touching pixels.

    Attributes:
        width, height: source image size (displayed orientation).
        output_size: `(height, width)` of the result.
        photometric: `PhotometricParams` or `None`.
        expand: `ExpandParams` or `None`.
        patch: `(x0, y0, x1, y1)` crop in canvas coordinates (the whole
            canvas when there is no crop).
        flip: bool.
        keep: bool mask over the input boxes: which survive the crop.
        boxes: float64 `(K, 4)` surviving boxes, output pixel xyxy.
        window: `None`, or the part `(x0, y0, x1, y1)` of `patch` (canvas
            coordinates) whose pixels are shown; the rest of the patch is
            the mean fill. A letterbox extends `patch` beyond the crop (or
            the image) to the output's aspect ratio and sets `window` to it.
    """

    width: int
    height: int
    output_size: Tuple[int, int]
    photometric: Optional[PhotometricParams]
    expand: Optional[ExpandParams]
    patch: Tuple[int, int, int, int]
    flip: bool
    keep: np.ndarray
    boxes: np.ndarray
    window: Optional[Tuple[float, float, float, float]] = None

    @property
    def reduce_factor(self):
        """How many source pixels per output pixel (the smaller axis)."""
        x0, y0, x1, y1 = self.patch
        return min((x1 - x0) / self.output_size[1], (y1 - y0) / self.output_size[0])

    @property
    def normalized_boxes(self):
        """The output boxes divided by the output size, float32."""
        oh, ow = self.output_size
        return (self.boxes / np.array([ow, oh, ow, oh])).astype(np.float32)


def letterbox_geometry(width, height, output_size):
    """Where a letterbox puts a `width x height` picture in the output.

    The picture is scaled by `min(out_w / width, out_h / height)` (aspect
    ratio kept), rounded to whole pixels (`new_w x new_h`, at least 1) and
    centred, the left/top padding rounded down.

    Args:
        width, height: the picture's size (pixels, may be fractional: a
            crop patch).
        output_size: int or `(height, width)` of the output.

    Returns:
        `(scale_x, scale_y, left, top)`: output pixel `= picture pixel *
        scale + (left, top)`, with `scale_x = new_w / width`, `scale_y =
        new_h / height` (equal up to the rounding).
    """
    oh, ow = _output_hw(output_size)
    width, height = float(width), float(height)
    if not (width > 0 and height > 0):
        raise ValueError(f"letterbox: picture size must be positive, got {width}x{height}")
    scale = min(ow / width, oh / height)
    new_w = min(ow, max(1, int(round(width * scale))))
    new_h = min(oh, max(1, int(round(height * scale))))
    return new_w / width, new_h / height, (ow - new_w) // 2, (oh - new_h) // 2


def _letterbox_patch(patch, output_size):
    """`patch` (canvas xyxy) extended to the output's aspect ratio around its
    letterboxed place: `(extended patch, (scale_x, scale_y, left, top))`."""
    oh, ow = output_size
    x0, y0, x1, y1 = patch
    sx, sy, left, top = letterbox_geometry(x1 - x0, y1 - y0, output_size)
    extended = (x0 - left / sx, y0 - top / sy, x0 + (ow - left) / sx, y0 + (oh - top) / sy)
    return extended, (sx, sy, left, top)


def resize_plan(width, height, boxes, output_size, letterbox=False):
    """The `AugmentPlan` of a plain resize (the evaluation path).

    Args:
        width, height: the source image's size.
        boxes: `(G, 4)` pixel xyxy boxes.
        output_size: int or `(height, width)`.
        letterbox: False: stretch to the output (aspect ratio not kept).
            True: scale to fit keeping the aspect ratio and pad with the
            mean fill (`letterbox_geometry`).
    """
    boxes = _as_boxes(boxes)
    oh, ow = _output_hw(output_size)
    if letterbox:
        whole = (0, 0, int(width), int(height))
        patch, (sx, sy, left, top) = _letterbox_patch(whole, (oh, ow))
        return AugmentPlan(int(width), int(height), (oh, ow), None, None, patch, False,
                           np.ones(len(boxes), dtype=bool),
                           boxes * np.array([sx, sy] * 2) + np.array([left, top] * 2),
                           window=whole)
    scale = np.array([ow / width, oh / height] * 2)
    return AugmentPlan(int(width), int(height), (oh, ow), None, None,
                       (0, 0, int(width), int(height)), False,
                       np.ones(len(boxes), dtype=bool), boxes * scale)


def apply_plan(image, plan, reduction=1, mean=MEAN_RGB):
    """Render an `AugmentPlan` from the source image in one resampling.

    The part of the source the crop patch sees is resized straight into its
    place in the output (PIL's antialiased bilinear resize of a fractional
    source box), the photometric distortion is applied to those pixels only,
    the rest of the output is the mean fill, and the result is mirrored if
    the plan flips. No expand canvas is built.

    Exactness: boxes are exact. Where an expand border falls inside the
    output, it is rounded to the nearest output pixel (at most half a pixel
    off, at the image border only). The photometric distortion runs after
    the resampling instead of before it (Caffe order): every photometric
    step is a per-pixel function, so it commutes exactly with the crop, the
    expand offset and the flip, and with the resampling (a weighted average
    of neighbouring pixels) up to rounding, clipping and hue/saturation
    nonlinearity at sharp colour edges; a test bounds the difference
    against the step-by-step chain. Caffe itself resizes with a randomly
    chosen interpolation, a larger change. The mean fill is never
    distorted, as in Caffe where expand follows the distortion.

    Args:
        image: the source as an RGB PIL image or uint8 array, possibly
            decoded `reduction` times smaller (pixel `i` covering source
            pixels `[i k, (i + 1) k)`).
        plan: an `AugmentPlan` for the full-size source.
        reduction: that integer factor `k`.
        mean: fill colour of the expand canvas.

    Returns:
        uint8 array `(out_h, out_w, 3)`.
    """
    img = image if isinstance(image, Image.Image) else Image.fromarray(_as_array(image))
    if img.mode != "RGB":
        img = img.convert("RGB")
    k = float(reduction)
    oh, ow = plan.output_size
    left, top = (plan.expand.left, plan.expand.top) if plan.expand else (0, 0)
    x0, y0, x1, y1 = plan.patch
    sx, sy = ow / (x1 - x0), oh / (y1 - y0)
    # The image's part of the patch, in canvas pixels (all integers, but
    # for a letterbox's window).
    ix0, iy0 = max(x0, left), max(y0, top)
    ix1, iy1 = min(x1, left + plan.width), min(y1, top + plan.height)
    if plan.window is not None:
        ix0, iy0 = max(ix0, plan.window[0]), max(iy0, plan.window[1])
        ix1, iy1 = min(ix1, plan.window[2]), min(iy1, plan.window[3])
    # ... and in output pixels, rounded to whole pixels.
    u0, u1 = int(round((ix0 - x0) * sx)), int(round((ix1 - x0) * sx))
    v0, v1 = int(round((iy0 - y0) * sy)), int(round((iy1 - y0) * sy))
    fill = np.asarray(mean, dtype=np.uint8)
    if u1 <= u0 or v1 <= v0:
        out = np.empty((oh, ow, 3), dtype=np.uint8)
        out[...] = fill
        return out
    # Source box (reduced pixels) that maps exactly onto output [u0, u1).
    iw, ih = img.size
    box = (
        min(max((x0 + u0 / sx - left) / k, 0.0), iw),
        min(max((y0 + v0 / sy - top) / k, 0.0), ih),
        min(max((x0 + u1 / sx - left) / k, 0.0), iw),
        min(max((y0 + v1 / sy - top) / k, 0.0), ih),
    )
    part = img.resize((u1 - u0, v1 - v0), Image.Resampling.BILINEAR, box=box)
    if plan.photometric is not None:
        part = apply_photometric(part, plan.photometric)
    if (u0, v0, u1, v1) == (0, 0, ow, oh):
        out = part
    else:
        out = Image.new("RGB", (ow, oh), tuple(int(m) for m in fill))
        out.paste(part, (u0, v0))
    if plan.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


class SSDAugmentation:
    """The SSD training augmentation, Caffe order, as one fast transform.

    Photometric distortion (each of brightness, contrast, saturation, hue
    with its probability; contrast first or last at random), expand with
    probability `expand_prob` onto a mean canvas of 1 to `max_expand_ratio`
    times the size, a min-IoU random crop (`sample_crop`), a horizontal flip
    with probability `flip_prob`, and a resize to `output_size`.

    Args:
        output_size: int or `(height, width)` of the result.
        photometric: bool, enable the photometric distortion.
        brightness_prob, brightness_delta: additive brightness in
            `[-delta, delta]`.
        contrast_prob, contrast_range: contrast multiplier range.
        saturation_prob, saturation_range: saturation multiplier range.
        hue_prob, hue_delta: hue shift in OpenCV units (180 per turn).
        expand_prob, max_expand_ratio: the zoom out.
        min_ious, whole_image, any_patch, scale_range, aspect_range,
            max_trials: the crop options (see `sample_crop`).
        flip_prob: horizontal flip probability.
        mean: RGB fill colour of the expand canvas.
        letterbox: False (default): the crop is stretched to `output_size`.
            True: it is scaled to fit keeping its aspect ratio, centred and
            padded with `mean` (`letterbox_geometry`); without a crop that
            is exactly the evaluation letterbox (`resize_plan(...,
            letterbox=True)`). The random choices drawn are the same.

    Call arguments:
        image: `(H, W, 3)` uint8 RGB array.
        boxes: `(G, 4)` continuous pixel xyxy boxes.
        labels: `(G,)` labels (any per-box array, filtered with the boxes).
        rng: `numpy.random.Generator` or seed.

    Returns:
        `(image, boxes, labels)`: uint8 `(out_h, out_w, 3)`, float64
        `(K, 4)` output-pixel xyxy boxes, the `K` surviving labels.

    Example:

    >>> aug = SSDAugmentation(300)
    >>> image, boxes, labels = aug(image, boxes, labels, rng=np.random.default_rng(0))
    """

    def __init__(self, output_size, photometric=True,
                 brightness_prob=0.5, brightness_delta=32.0,
                 contrast_prob=0.5, contrast_range=(0.5, 1.5),
                 saturation_prob=0.5, saturation_range=(0.5, 1.5),
                 hue_prob=0.5, hue_delta=18.0,
                 expand_prob=0.5, max_expand_ratio=4.0,
                 min_ious=DEFAULT_MIN_IOUS, whole_image=True, any_patch=True,
                 scale_range=(0.3, 1.0), aspect_range=(0.5, 2.0), max_trials=50,
                 flip_prob=0.5, mean=MEAN_RGB, letterbox=False):
        self.output_size = _output_hw(output_size)
        if not isinstance(letterbox, bool):
            raise ValueError(f"letterbox must be a bool, got {letterbox!r}")
        self.letterbox = letterbox
        self.photometric = bool(photometric)
        self.photometric_options = dict(
            brightness_prob=_check_prob("brightness_prob", brightness_prob),
            brightness_delta=float(brightness_delta),
            contrast_prob=_check_prob("contrast_prob", contrast_prob),
            contrast_range=_check_range("contrast_range", contrast_range, 0.0),
            saturation_prob=_check_prob("saturation_prob", saturation_prob),
            saturation_range=_check_range("saturation_range", saturation_range, 0.0),
            hue_prob=_check_prob("hue_prob", hue_prob),
            hue_delta=float(hue_delta),
        )
        if brightness_delta < 0 or hue_delta < 0:
            raise ValueError("brightness_delta and hue_delta must be >= 0")
        self.expand_prob = _check_prob("expand_prob", expand_prob)
        self.max_expand_ratio = float(max_expand_ratio)
        if not self.max_expand_ratio >= 1.0:
            raise ValueError(f"max_expand_ratio must be >= 1, got {max_expand_ratio!r}")
        self.min_ious = tuple(float(v) for v in min_ious)
        if any(not 0.0 <= v <= 1.0 for v in self.min_ious):
            raise ValueError(f"min_ious must lie in [0, 1], got {min_ious!r}")
        self.whole_image = bool(whole_image)
        self.any_patch = bool(any_patch)
        self.scale_range = _check_range("scale_range", scale_range, 0.0)
        if self.scale_range[0] <= 0 or self.scale_range[1] > 1:
            raise ValueError(f"scale_range must lie in (0, 1], got {scale_range!r}")
        self.aspect_range = _check_range("aspect_range", aspect_range, 0.0)
        if self.aspect_range[0] <= 0:
            raise ValueError(f"aspect_range must be positive, got {aspect_range!r}")
        self.max_trials = int(max_trials)
        if self.max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {max_trials!r}")
        self.flip_prob = _check_prob("flip_prob", flip_prob)
        self.mean = tuple(int(m) for m in mean)
        if len(self.mean) != 3:
            raise ValueError(f"mean must be 3 values (RGB), got {mean!r}")

    def get_config(self):
        cfg = dict(output_size=self.output_size, photometric=self.photometric)
        cfg.update(self.photometric_options)
        cfg.update(expand_prob=self.expand_prob, max_expand_ratio=self.max_expand_ratio,
                   min_ious=self.min_ious, whole_image=self.whole_image,
                   any_patch=self.any_patch, scale_range=self.scale_range,
                   aspect_range=self.aspect_range, max_trials=self.max_trials,
                   flip_prob=self.flip_prob, mean=self.mean, letterbox=self.letterbox)
        return cfg

    def sample(self, width, height, boxes, rng):
        """Draw an `AugmentPlan` for a `width x height` image with `boxes`.

        Consumes `rng` exactly as the step-by-step chain `photometric_distort
        -> expand -> random_crop -> random_flip` does.
        """
        rng = _rng(rng)
        boxes = _as_boxes(boxes)
        width, height = int(width), int(height)
        photo = sample_photometric(rng, **self.photometric_options) if self.photometric else None
        if photo is not None and photo.is_identity:
            photo = None
        exp = sample_expand(rng, width, height, self.expand_prob, self.max_expand_ratio)
        cw, ch = (exp.canvas_width, exp.canvas_height) if exp else (width, height)
        canvas_boxes = boxes + np.array([exp.left, exp.top] * 2) if exp else boxes
        patch = sample_crop(rng, cw, ch, canvas_boxes, self.min_ious, self.whole_image,
                            self.any_patch, self.scale_range, self.aspect_range,
                            self.max_trials)
        if patch is None:
            patch = (0, 0, cw, ch)
            out, keep = canvas_boxes, np.ones(len(boxes), dtype=bool)
        else:
            out, keep = crop_boxes(canvas_boxes, patch)
        pw, ph = patch[2] - patch[0], patch[3] - patch[1]
        flip = bool(rng.random() < self.flip_prob)
        if self.letterbox:
            extended, (sx, sy, left, top) = _letterbox_patch(patch, self.output_size)
            out = out * np.array([sx, sy] * 2) + np.array([left, top] * 2)
            if flip:  # apply_plan mirrors the whole output
                out = out.copy()
                out[:, [0, 2]] = self.output_size[1] - out[:, [2, 0]]
            return AugmentPlan(width, height, self.output_size, photo, exp, extended,
                               flip, keep, out, window=tuple(patch))
        if flip:
            out = out.copy()
            out[:, [0, 2]] = pw - out[:, [2, 0]]
        oh, ow = self.output_size
        out = out * np.array([ow / pw, oh / ph] * 2)
        return AugmentPlan(width, height, self.output_size, photo, exp, tuple(patch),
                           flip, keep, out)

    def apply(self, image, plan, reduction=1):
        """Render `plan` from `image` (see `apply_plan`)."""
        return apply_plan(image, plan, reduction, self.mean)

    def __call__(self, image, boxes, labels, rng=None):
        image = _as_array(image)
        plan = self.sample(image.shape[1], image.shape[0], boxes, rng)
        labels = np.asarray(labels)
        return self.apply(image, plan), plan.boxes, labels[plan.keep]


def source_boxes(boxes, width, height, output_size, letterbox=False):
    """Boxes in the network's input frame -> pixels of the source image.

    Undoes `resize_plan(width, height, ..., output_size, letterbox)`: the
    inverse of the evaluation and prediction rendering.

    Args:
        boxes: `(K, 4)` xyxy normalised to the network input (the decoder's
            output).
        width, height: the source image's size.
        output_size: int or `(height, width)` of the network input.
        letterbox: how the image was rendered (`SSDConfig.letterbox`).

    Returns:
        float32 `(K, 4)` pixel xyxy of the source image (not clipped).
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    if not letterbox:
        scale = np.array([width, height, width, height], dtype=np.float32)
        return boxes.astype(np.float32) * scale
    oh, ow = _output_hw(output_size)
    sx, sy, left, top = letterbox_geometry(width, height, (oh, ow))
    out = (boxes.astype(np.float64) * np.array([ow, oh] * 2) - np.array([left, top] * 2))
    return (out / np.array([sx, sy] * 2)).astype(np.float32)
