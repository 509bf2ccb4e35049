"""Training defaults fitted to the dataset: input size, priors, zoom-out, epochs.

A preset's geometry is tuned for one kind of data (the tiny model's 160 px
and 16..176 px priors for objects of a fifth of the image). Given other data
(many objects under 8% of the image side, or only large ones) the same
numbers leave small objects below what the first feature map can see, or
priors that match few boxes. `keras-ssd train` (and `fit_defaults` for
library users) therefore decides, from the training set's own box sizes:

* the input size (`choose_input_size`): the smallest candidate at which the
  10th-percentile object is at least one stride of the first feature map
  wide, never smaller than the preset's and at most `MAX_UPSCALE` times it;
* the prior sizes (`choose_priors`): `keras_ssd.data.anchor_fit`'s search,
  applied as YOLOv5's autoanchor does: only when the preset's priors match
  fewer than `GOOD_MATCH` of the boxes and the new ones match at least
  `MIN_GAIN` more;
* the zoom-out (`choose_expand_ratio`): SSD's expand shrinks objects by up to
  its ratio; the ratio is capped so that the 25th-percentile object stays
  large enough to reach IoU 0.5 with the smallest prior;
* with a time budget and a measured training speed
  (`keras_ssd.training.speed_probe`): the input size is kept small enough
  that the budget holds `MIN_EPOCHS_AT_SIZE` epochs (`budget_input_size`),
  and the batch size is halved until the budget holds `MIN_STEPS`
  optimizer steps (`choose_batch_size`);
* the epochs of a time budget (`epochs_for_budget`).

Every rule is a pure function of `BoxStats` (or of numbers) that returns its
value and a sentence saying why; `Decision`s record whether the user gave the
value instead. See docs/training.md ("Defaults fitted to the dataset").
"""

import dataclasses
import json
import math
from typing import List, Optional

import numpy as np

#: The 10th-percentile object must span at least this many strides of the
#: first feature map at the chosen input size.
MIN_STRIDES = 1.0
#: Input sizes tried are multiples of this (pixels).
SIZE_MULTIPLE = 32
#: The input grows to at most this factor of the preset's side (the cost of
#: a step grows with its square).
MAX_UPSCALE = 1.6
#: Priors matching at least this share of boxes are kept as they are.
GOOD_MATCH = 0.98
#: A prior search result replaces the preset's only when it matches at least
#: this share more boxes.
MIN_GAIN = 0.01
#: With a time budget, the input grows past the preset's only while the
#: budget still holds this many epochs at the larger side (the cost of a
#: step grows with the square of the side; docs/training.md, "Defaults
#: fitted to the budget").
MIN_EPOCHS_AT_SIZE = 12
#: With a time budget, the batch halves (down to `MIN_BATCH`) while the
#: budget holds fewer than this many optimizer steps: from random weights,
#: a short run learns more from many small steps than from few large ones
#: (counted at the speed probe's rate, which runs about 1.2 times faster than
#: a real run; docs/training.md, "Fourth suite run").
MIN_STEPS = 3000
#: The smallest batch the budget rule picks (batch normalisation needs a
#: few images per batch).
MIN_BATCH = 8
#: SSD's zoom-out ratio (Caffe's `max_expand_ratio`).
DEFAULT_EXPAND = 4.0
#: A zoom-out ratio below this is not worth the mean-filled border: off.
MIN_EXPAND = 1.2
#: IoU of a box with a concentric square prior of side p: (s / p)^2 when
#: s < p, so it reaches the encoder's 0.5 at s = sqrt(0.5) p.
_SIDE_AT_IOU_HALF = math.sqrt(0.5)


@dataclasses.dataclass(frozen=True)
class BoxStats:
    """Box sizes of a dataset as the model sees them.

    Attributes:
        num_images: records read (with or without boxes).
        num_boxes: boxes measured.
        sides: float64 `(num_boxes,)`: `sqrt(w * h)` of each box normalised
            by its image's width and height (the share of the input side
            it covers once the image is stretched to the input).
    """

    num_images: int
    num_boxes: int
    sides: np.ndarray

    def quantile(self, q):
        """The `q` quantile (0..1) of the normalised sides."""
        return float(np.quantile(self.sides, q))

    def summary(self):
        """Plain dict: counts and the 10/25/50/90% normalised sides."""
        return {"images": self.num_images, "boxes": self.num_boxes,
                **{f"side_p{int(q * 100)}": round(self.quantile(q), 4)
                   for q in (0.1, 0.25, 0.5, 0.9)}}


def box_stats(dataset):
    """`BoxStats` of a records-interface dataset (`ds[i]` dicts with
    `width`, `height` and pixel xyxy `boxes`).

    Raises:
        ValueError: the dataset has no usable box.
    """
    sides, n = [], 0
    records = getattr(dataset, "records", None)
    items = records if records is not None else (dataset[i] for i in range(len(dataset)))
    for rec in items:
        n += 1
        b = np.asarray(rec["boxes"], np.float64).reshape(-1, 4)
        if not len(b):
            continue
        w = (b[:, 2] - b[:, 0]) / float(rec["width"])
        h = (b[:, 3] - b[:, 1]) / float(rec["height"])
        keep = (w > 0) & (h > 0) & np.isfinite(w) & np.isfinite(h)
        sides.append(np.sqrt(w[keep] * h[keep]))
    sides = np.concatenate(sides) if sides else np.zeros(0)
    if sides.size == 0:
        raise ValueError("fitted defaults: the training set has no box to measure")
    return BoxStats(num_images=n, num_boxes=int(sides.size), sides=sides)


@dataclasses.dataclass
class Decision:
    """One fitted default: its value, why, and whether the user set it."""

    name: str
    value: object
    reason: str
    given: bool = False

    def line(self):
        tag = " (given)" if self.given else ""
        return f"  {self.name}: {_show(self.value)}{tag} - {self.reason}"


def _show(value):
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


# ------------------------------------------------------------------ rules
def choose_input_size(stats, base_size, first_stride, min_strides=MIN_STRIDES,
                      max_upscale=MAX_UPSCALE, multiple=SIZE_MULTIPLE):
    """The input side at which small objects reach the first feature map.

    Args:
        stats: `BoxStats`.
        base_size: the preset's input side (pixels).
        first_stride: the first feature map's stride (pixels; it stays the
            same at any input size).
        min_strides, max_upscale, multiple: see the module constants.

    Returns:
        `(side, reason)`; `side >= base_size`.
    """
    p10 = stats.quantile(0.1)
    need = min_strides * first_stride / max(p10, 1e-9)
    if p10 * base_size >= min_strides * first_stride:
        return int(base_size), (
            f"the 10% smallest objects are {p10 * base_size:.1f} px or more at the "
            f"preset's {base_size} px, at least {min_strides:g} stride(s) of the first map "
            f"({first_stride:g} px)")
    cap = int(max_upscale * base_size) // multiple * multiple
    side = math.ceil(need / multiple) * multiple
    side = int(min(max(side, base_size), max(cap, base_size)))
    return side, (
        f"10% of the objects are under {p10 * base_size:.1f} px at the preset's "
        f"{base_size} px, less than the first map's stride ({first_stride:g} px); "
        f"{side} px makes them {p10 * side:.1f} px"
        + (f" (capped at {max_upscale:g}x the preset)" if side < need else ""))


def choose_expand_ratio(stats, input_side, smallest_prior, default=DEFAULT_EXPAND,
                        minimum=MIN_EXPAND):
    """SSD's zoom-out ratio, capped so small objects stay matchable.

    The zoom-out shrinks an image by a ratio drawn up to `max_expand_ratio`;
    an object of side `s` then has side `s / r`. Below
    `sqrt(0.5) * smallest_prior` it can no longer reach IoU 0.5 with any
    prior, and trains only through the bipartite match.

    Args:
        stats: `BoxStats`.
        input_side: the input side in pixels.
        smallest_prior: the first map's min size in pixels.

    Returns:
        `(ratio, reason)`: 1.0 means no zoom-out.
    """
    p25 = stats.quantile(0.25) * input_side
    limit = p25 / (_SIDE_AT_IOU_HALF * smallest_prior)
    ratio = float(min(default, limit))
    if ratio >= default:
        return float(default), (
            f"the 25% smallest objects ({p25:.0f} px) stay matchable by the smallest prior "
            f"({smallest_prior:g} px) even at SSD's full zoom-out x{default:g}")
    if ratio < minimum:
        return 1.0, (
            f"the 25% smallest objects ({p25:.0f} px) would fall below "
            f"{_SIDE_AT_IOU_HALF * smallest_prior:.1f} px (IoU 0.5 with the smallest "
            f"prior, {smallest_prior:g} px) at any zoom-out worth doing: off")
    ratio = math.floor(ratio * 10) / 10
    return ratio, (
        f"zoom-out up to x{ratio:g} (not x{default:g}) keeps the 25% smallest objects "
        f"({p25:.0f} px) above {_SIDE_AT_IOU_HALF * smallest_prior:.1f} px, IoU 0.5 with "
        f"the smallest prior ({smallest_prior:g} px)")


def choose_priors(matched, suggestion, good=GOOD_MATCH, min_gain=MIN_GAIN):
    """Autoanchor's rule on an anchor-fit result.

    Args:
        matched: share of boxes the current priors match (IoU >= 0.5).
        suggestion: `AnchorFitReport.suggestion` (dict with `matched`,
            `min_sizes`, `max_sizes`) or None.

    Returns:
        `(sizes or None, reason)`: sizes `{"min_sizes", "max_sizes"}` to use,
        None to keep the preset's.
    """
    if matched >= good:
        return None, (f"the preset's priors match {matched:.1%} of the boxes "
                      f"(>= {good:.0%}): kept")
    if not suggestion or suggestion["matched"] < matched + min_gain:
        best = suggestion["matched"] if suggestion else matched
        return None, (f"the preset's priors match {matched:.1%}; the best scaling found "
                      f"matches {best:.1%}, less than {min_gain:.0%} more: kept")
    return ({"min_sizes": list(suggestion["min_sizes"]),
             "max_sizes": list(suggestion["max_sizes"])},
            f"the preset's priors match {matched:.1%} of the boxes, these "
            f"{suggestion['matched']:.1%}")


def budget_input_size(box_side, base_size, epochs_at_base, min_epochs=MIN_EPOCHS_AT_SIZE,
                      multiple=SIZE_MULTIPLE):
    """The largest input, up to `box_side`, at which the budget still holds
    `min_epochs` epochs.

    Args:
        box_side: the side the box rule asks for (`choose_input_size`).
        base_size: the preset's side, where the speed was measured.
        epochs_at_base: the epochs the budget holds at `base_size`.
        min_epochs, multiple: see the module constants.

    Returns:
        `(side, reason or None)`: `reason` is None when the budget does not
        lower the side.
    """
    def epochs_at(side):
        return epochs_at_base * (base_size / side) ** 2

    if box_side <= base_size or epochs_at(box_side) >= min_epochs:
        return int(box_side), None
    side = int(base_size)
    for candidate in range(int(base_size) + multiple, int(box_side) + 1, multiple):
        if epochs_at(candidate) >= min_epochs:
            side = candidate
    return side, (f"the budget holds about {epochs_at(box_side):.1f} epochs at {box_side} px "
                  f"and {epochs_at(side):.1f} at {side} px; the side grows only while at "
                  f"least {min_epochs:g} fit")


def choose_batch_size(budget_images, base_batch, min_steps=MIN_STEPS, smallest=MIN_BATCH):
    """The batch for a budget of `budget_images` training images.

    The recipe's batch, halved while the budget holds fewer than
    `min_steps` steps of it, never below `smallest` (nor above the recipe's).

    Returns:
        `(batch, reason)`.
    """
    batch = int(base_batch)
    while batch // 2 >= smallest and budget_images / batch < min_steps:
        batch //= 2
    steps = budget_images / batch
    if batch == base_batch:
        return batch, (f"the budget holds about {steps:,.0f} steps of {batch}, at least "
                       f"{min_steps}: the recipe's" if steps >= min_steps else
                       f"the budget holds about {steps:,.0f} steps of {batch}; the recipe's "
                       "batch is the smallest allowed here")
    return batch, (f"the budget holds about {budget_images / base_batch:,.0f} steps of the "
                   f"recipe's {base_batch}, fewer than {min_steps}; {steps:,.0f} of {batch}"
                   + ("" if steps >= min_steps else f" (the smallest batch, {smallest})"))


def epochs_for_budget(budget_seconds, epoch_seconds, max_epochs=None):
    """How many whole epochs fit in a budget (at least one).

    Args:
        budget_seconds: training time available.
        epoch_seconds: measured (or estimated) time of one epoch.
        max_epochs: optional cap (e.g. `--epochs` with `--time-limit`).

    Returns:
        int.
    """
    if not budget_seconds > 0 or not epoch_seconds > 0:
        raise ValueError("epochs_for_budget: the budget and the epoch time must be "
                         f"positive, got {budget_seconds!r} and {epoch_seconds!r}")
    epochs = max(1, int(budget_seconds // epoch_seconds))
    return epochs if max_epochs is None else min(epochs, int(max_epochs))


# ------------------------------------------------------------------- plan
@dataclasses.dataclass
class FittedDefaults:
    """The decisions of `fit_defaults`, to apply, print and save."""

    config: object  # SSDConfig
    max_expand_ratio: float
    decisions: List[Decision]
    stats: dict
    batch_size: Optional[int] = None

    def describe(self):
        """Lines to print at the start of a run."""
        return ["defaults fitted to the dataset (" + ", ".join(
            f"{k} {v}" for k, v in self.stats.items()) + "):"] + [
            d.line() for d in self.decisions]

    def to_dict(self):
        return {"stats": self.stats, "max_expand_ratio": self.max_expand_ratio,
                "batch_size": self.batch_size,
                "decisions": [dataclasses.asdict(d) for d in self.decisions],
                "config": self.config.to_dict()}

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, default=str)


def fit_defaults(dataset, base_config, config_at, image_size=None, max_expand_ratio=None,
                 fit_priors=True, stats=None, budget_seconds=None, images_per_second=None,
                 base_batch=None, batch_size=None):
    """Fit input size, priors and zoom-out to a training set.

    Args:
        dataset: the training set (records interface).
        base_config: the preset's `SSDConfig` (square input).
        config_at: `side -> SSDConfig` of the same network at that input
            (the feature maps follow the network, e.g.
            `lambda s: build_model("tiny", image_size=s).config`).
        image_size: the user's input side (wins over the rule), or None.
        max_expand_ratio: the user's zoom-out ratio (wins), or None.
        fit_priors: False keeps the preset's prior sizes.
        stats: precomputed `BoxStats` (default: measured).
        budget_seconds: the run's time budget, or None (no budget rules).
        images_per_second: training speed measured at the preset's side
            and `base_batch` (`speed_probe.measure_training_speed`), or None.
        base_batch: the recipe's batch size.
        batch_size: the user's batch size (wins over the rule), or None.

    Returns:
        `FittedDefaults` (`batch_size` None when no budget rule applied).
    """
    from keras_ssd.data.anchor_fit import anchor_fit

    stats = stats or box_stats(dataset)
    base = int(base_config.image_shape[0])
    decisions = []
    budget_images = None
    if budget_seconds and images_per_second:
        budget_images = float(budget_seconds) * float(images_per_second)
        decisions.append(Decision(
            "training speed", f"{images_per_second:.1f} img/s",
            f"measured at {base} px, batch {base_batch}; the budget of "
            f"{budget_seconds / 60:g} min holds about {budget_images:,.0f} images "
            f"({budget_images / stats.num_images:.1f} epochs) at that side"))
    if image_size is not None:
        side = int(image_size)
        decisions.append(Decision("input size", side, "--image-size", given=True))
    else:
        side, why = choose_input_size(stats, base, float(base_config.step_shapes[0][0]))
        if budget_images is not None:
            side, budget_why = budget_input_size(side, base, budget_images / stats.num_images)
            why = why if budget_why is None else f"{why}; but {budget_why}"
        decisions.append(Decision("input size", side, why))
    config = base_config if side == base else config_at(side)
    if fit_priors:
        report = anchor_fit(dataset, config)
        sizes, why = choose_priors(report.matched, report.suggestion)
        if sizes is not None:
            config = config.replace(**sizes)
        decisions.append(Decision("prior sizes", [round(v, 1) for v in config.min_sizes],
                                  why))
    else:
        decisions.append(Decision("prior sizes", list(config.min_sizes), "preset's (asked)",
                                  given=True))
    if max_expand_ratio is not None:
        decisions.append(Decision("max zoom-out", float(max_expand_ratio),
                                  "--max-expand-ratio", given=True))
        ratio = float(max_expand_ratio)
    else:
        ratio, why = choose_expand_ratio(stats, side, float(config.min_sizes[0]))
        decisions.append(Decision("max zoom-out", ratio, why))
    batch = None
    if batch_size is not None:
        batch = int(batch_size)
        decisions.append(Decision("batch size", batch, "--batch-size", given=True))
    elif budget_images is not None and base_batch:
        batch, why = choose_batch_size(budget_images * (base / side) ** 2, int(base_batch))
        decisions.append(Decision("batch size", batch, why))
    return FittedDefaults(config=config, max_expand_ratio=ratio, decisions=decisions,
                          stats=stats.summary(), batch_size=batch)

