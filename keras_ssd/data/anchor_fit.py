"""Do the priors fit your boxes? The anchor-fit report.

`anchor_fit(dataset, config)` takes every ground-truth box of a dataset as
the model sees it (normalised by its image's width and height: training
stretches each image to the input size, so a box's normalised coordinates
are what the priors meet) and finds its best IoU with any prior of the
configuration. A box whose best IoU reaches the encoder's threshold (0.5)
is "matched by IoU": the target encoder gives it that prior, and usually a
few more. A box below it is trained only through the bipartite step, which
gives every object its single best prior whatever the overlap, so it gets
one positive (with a poor regression start) instead of several. The report
says how many boxes are in each case, per class and per box size, lists the
boxes no prior reaches, and searches for min/max prior sizes (the maps,
steps and aspect ratios kept) that match more boxes.

Everything is numpy: the IoU is `keras_ssd.boxes.grid_iou` (the encoder's),
computed in chunks of boxes so that memory stays bounded (40k boxes against
SSD300's 8732 priors take about 70 MB at a time by default).
"""

import dataclasses
import logging
import math
from typing import List, Optional, Tuple

import numpy as np

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import anchor_grid, cxcywh_to_xyxy, grid_iou, iou
from keras_ssd.config import SSDConfig
from keras_ssd.data.augment import resize_plan
from keras_ssd.matching import _MIN_OVERLAP

logger = logging.getLogger("keras_ssd.data")

#: The quantiles of the best IoU each group reports (as `p10`, `p25`, ...).
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

#: Default size buckets: octaves of `sqrt(w * h)` in input pixels.
OCTAVE_EDGES = (8, 16, 32, 64, 128, 256, 512)

#: COCO's small / medium / large limits (area 32^2 and 96^2), applied to
#: `sqrt(w * h)` in the model's input pixels (COCO applies them to the
#: original image).
COCO_EDGES = (32, 96)

#: The scale factors the suggestion tries, globally and per map: quarter
#: octaves from x0.25 to x4 (1.0, the configuration itself, included).
DEFAULT_SCALES = tuple(2.0 ** (k / 4) for k in range(-8, 9))

#: Bins of the best-IoU histogram in `to_dict` and `plot_anchor_fit`.
HISTOGRAM_BINS = 20

#: Boxes per IoU chunk: `chunk * num_priors` float32 pairs, two buffers.
_CHUNK_PAIRS = 1 << 23


# ---------------------------------------------------------------- report
@dataclasses.dataclass
class AnchorFitReport:
    """How well a configuration's priors fit a dataset's boxes.

    Shares are fractions of `num_boxes` (0 to 1). Group statistics
    (`overall`, each entry of `per_class` and `per_size`) are dicts with
    `boxes`, `matched` (share with best IoU >= threshold), `mean`, `min`
    and the `QUANTILES` of the best IoU as `p10`, `p25`, `p50`, `p75`, `p90`.

    Attributes:
        num_images: records read.
        num_boxes: ground-truth boxes measured.
        num_skipped_boxes: boxes left out (zero width or height, not finite).
        iou_threshold: the encoder's positive threshold used.
        input_size: `(height, width)` of the model input, pixels.
        num_priors: priors of the configuration.
        feature_map_sizes, min_sizes, max_sizes: the configuration's maps.
        matched: share of boxes whose best prior IoU >= `iou_threshold`
            (positives by IoU, as the encoder makes them; the bipartite
            step's reassignments between competing objects are ignored).
        bipartite_only: share below the threshold but overlapping a prior,
            so trained only through the bipartite step's single prior.
        no_prior: share overlapping no prior at all (never trained).
        overall: statistics of all boxes.
        per_class: class name -> statistics (classes with boxes, in label order).
        per_size: bucket label -> statistics (buckets with boxes, small first);
            `size_edges` are the bucket limits in input pixels of
            `sqrt(w * h)`.
        best_map_share: map label (`"38x38"`) -> share of boxes whose best
            prior lies on that map.
        unreachable_count: boxes with best IoU below the threshold.
        unreachable: up to `max_examples` of them, worst first: dicts with
            `record`, `image_id`, `image_path`, `class`, `box` (pixel xyxy
            in the original image), `size` (input pixels), `best_iou`,
            `best_map` and `best_prior` (its `(w, h)` in input pixels).
        suggestion: `None` (not searched) or a dict with `min_sizes`,
            `max_sizes`, `scale` (the global factor), `map_scales` (each
            map's factor over the configuration's sizes), `matched` (share
            reached, never below `matched`), `bipartite_only` and
            `changed` (False when nothing matched more boxes).
        best_ious: float32 `(num_boxes,)` best IoU of each box.
        suggested_best_ious: the same under the suggested sizes, or `None`.
    """

    num_images: int
    num_boxes: int
    num_skipped_boxes: int
    iou_threshold: float
    input_size: Tuple[int, int]
    num_priors: int
    feature_map_sizes: list
    min_sizes: List[float]
    max_sizes: List[float]
    matched: float
    bipartite_only: float
    no_prior: float
    overall: dict
    per_class: dict
    per_size: dict
    size_edges: List[float]
    best_map_share: dict
    unreachable_count: int
    unreachable: list
    suggestion: Optional[dict]
    best_ious: np.ndarray = dataclasses.field(repr=False)
    suggested_best_ious: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)

    def histogram(self, bins=HISTOGRAM_BINS):
        """`(edges, counts, suggested_counts)` of the best IoUs over `[0, 1]`
        (`suggested_counts` is `None` without a suggestion)."""
        edges = np.linspace(0.0, 1.0, int(bins) + 1)
        counts = np.histogram(np.clip(self.best_ious, 0, 1), edges)[0]
        suggested = None
        if self.suggested_best_ious is not None:
            suggested = np.histogram(np.clip(self.suggested_best_ious, 0, 1), edges)[0]
        return edges, counts, suggested

    def to_dict(self):
        """A JSON-ready dict: every field but the per-box arrays, plus a
        `histogram` (`edges`, `counts`, `suggested_counts`)."""
        out = {}
        for field in dataclasses.fields(self):
            if field.name in ("best_ious", "suggested_best_ious"):
                continue
            out[field.name] = _plain(getattr(self, field.name))
        edges, counts, suggested = self.histogram()
        out["histogram"] = {
            "edges": [round(float(e), 6) for e in edges],
            "counts": [int(c) for c in counts],
            "suggested_counts": None if suggested is None else [int(c) for c in suggested],
        }
        return out

    def format(self):
        """The report as a readable text table (what `keras-ssd anchors` prints)."""
        t = self.iou_threshold
        h, w = self.input_size
        lines = [
            f"Anchor fit: {self.num_boxes} boxes in {self.num_images} images against "
            f"{self.num_priors} priors ({len(self.feature_map_sizes)} maps) at {w}x{h} px, "
            f"IoU threshold {t:g}",
        ]
        if self.num_skipped_boxes:
            lines.append(f"  ({self.num_skipped_boxes} boxes with zero width or height "
                         f"left out)")
        n = self.num_boxes
        lines += [
            "",
            f"  matched by IoU >= {t:g}      {_count(self.matched, n)}",
            f"  only by the bipartite step  {_count(self.bipartite_only, n)}"
            "   (one prior each, below the threshold)",
            f"  no prior overlaps           {_count(self.no_prior, n)}",
            "",
            "Best IoU with any prior",
        ]
        rows = [("all", self.overall)]
        rows += [(f"class {name}", s) for name, s in self.per_class.items()]
        rows += [(f"size {label}", s) for label, s in self.per_size.items()]
        lines += _stats_table(rows)
        lines.append("  (size: sqrt(w * h) of the box in input pixels)")
        lines += ["", "Map of the best prior: " + ", ".join(
            f"{m} {_pct(s)} %" for m, s in self.best_map_share.items())]
        lines += ["", f"Boxes no prior reaches at IoU {t:g}: {self.unreachable_count}"]
        if self.unreachable:
            lines.append(f"  worst {len(self.unreachable)}:")
            header = ("record", "class", "box xyxy (image px)", "size", "best IoU",
                      "best prior (w x h)", "image")
            table = [header]
            for ex in self.unreachable:
                box = ", ".join(f"{v:.0f}" for v in ex["box"])
                pw, ph = ex["best_prior"]
                table.append((str(ex["record"]), ex["class"], f"[{box}]",
                              f"{ex['size']:.1f}", _floor3(ex["best_iou"]),
                              f"{ex['best_map']} {pw:.0f} x {ph:.0f}", ex["image_path"]))
            lines += _columns(table, right={0, 3, 4})
        lines += [""] + self._format_suggestion()
        return "\n".join(lines)

    def _format_suggestion(self):
        s = self.suggestion
        if s is None:
            return ["Suggested sizes: not searched"]
        if not s["changed"]:
            return [f"Suggested sizes: keep the configuration's; no scale from "
                    f"x{min(s['scales_tried']):g} to x{max(s['scales_tried']):g} "
                    f"matches more boxes ({_pct(self.matched)} %)"]
        how = (f"every map's sizes x{s['scale']:.3g}"
               if len(set(s["map_scales"])) == 1
               else f"global scale x{s['scale']:.3g}, then per map")
        lines = [
            f"Suggested sizes (maps, steps and aspect ratios kept): matched "
            f"{_pct(self.matched)} % -> {_pct(s['matched'])} % ({how})",
        ]
        table = [("map", "min_size", "max_size", "->", "min_size", "max_size", "scale")]
        for i, f in enumerate(self.feature_map_sizes):
            table.append((_map_label(f), f"{self.min_sizes[i]:g}", f"{self.max_sizes[i]:g}",
                          "->", f"{s['min_sizes'][i]:g}", f"{s['max_sizes'][i]:g}",
                          f"x{s['map_scales'][i]:.3g}"))
        lines += _columns(table, right={1, 2, 4, 5, 6})
        lines.append("  min_sizes: " + str([float(v) for v in s["min_sizes"]]))
        lines.append("  max_sizes: " + str([float(v) for v in s["max_sizes"]]))
        return lines


def _plain(value):
    """numpy scalars and arrays -> Python numbers and lists, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) else v
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _count(share, n):
    return f"{int(round(share * n)):>7d}  {_pct(share):>5} %"


def _columns(rows, right=(), indent="  "):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
                 for i, c in enumerate(r)]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _stats_table(rows):
    keys = ["min"] + [_qname(q) for q in QUANTILES] + ["mean"]
    table = [("", "boxes", "matched") + tuple(keys)]
    for label, s in rows:
        table.append((label, str(s["boxes"]), f"{_pct(s['matched'])} %")
                     + tuple(f"{s[k]:.2f}" for k in keys))
    return _columns(table, right=set(range(1, len(table[0]))))


def _pct(share):
    """A share as a percentage to 0.1, rounded down: 99.96 % reads 99.9 %, and
    100.0 % means every box."""
    return f"{math.floor(share * 1000 + 1e-9) / 10:.1f}"


def _floor3(value):
    """Three decimals rounded down: a best IoU of 0.4999 must not read 0.500."""
    return f"{math.floor(value * 1000) / 1000:.3f}"


def _qname(q):
    return f"p{int(round(100 * q))}"


def _map_label(f):
    if isinstance(f, (list, tuple)):
        return f"{int(f[0])}x{int(f[1])}"
    return f"{int(f)}x{int(f)}"


# ----------------------------------------------------------- the boxes
def _input_hw(config):
    size = config.image_size
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def _records(dataset):
    records = getattr(dataset, "records", None)
    if records is not None:
        return list(records)
    return [dataset[i] for i in range(len(dataset))]


def _gather(dataset, include_difficult, letterbox_into=None):
    """All boxes of the dataset: normalised float32 xyxy, pixel boxes,
    record index and label, and the record list. `letterbox_into`: the
    `(height, width)` input a letterboxing model renders images into (the
    boxes are normalised as it sees them), None for a stretching one."""
    records = _records(dataset)
    norm, pixels, index, labels = [], [], [], []
    skipped = 0
    for i, rec in enumerate(records):
        boxes = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] == 0:
            continue
        width, height = rec.get("width"), rec.get("height")
        if not width or not height:
            raise ValueError(
                f"anchor_fit: record {i} ({rec.get('image_path', '?')}) has no image "
                f"width/height; the boxes cannot be normalised"
            )
        lab = np.asarray(rec["labels"], dtype=np.int64).reshape(-1)
        if lab.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"anchor_fit: record {i} ({rec.get('image_path', '?')}) has "
                f"{boxes.shape[0]} boxes but {lab.shape[0]} labels"
            )
        valid = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > boxes[:, 0]) \
            & (boxes[:, 3] > boxes[:, 1])
        skipped += int((~valid).sum())
        keep = valid
        if not include_difficult and rec.get("difficult") is not None:
            difficult = np.asarray(rec["difficult"], dtype=bool).reshape(-1)
            if difficult.shape[0] == keep.shape[0]:
                keep = keep & ~difficult
        if not keep.any():
            continue
        boxes, lab = boxes[keep], lab[keep]
        if letterbox_into is not None:
            norm.append(resize_plan(width, height, boxes, letterbox_into,
                                    letterbox=True).normalized_boxes)
        else:
            scale = np.array([width, height, width, height], dtype=np.float64)
            norm.append(boxes / scale)
        pixels.append(boxes)
        index.append(np.full(boxes.shape[0], i, dtype=np.int64))
        labels.append(lab)
    if not norm:
        raise ValueError("anchor_fit: the dataset has no boxes to measure")
    return (np.concatenate(norm).astype(np.float32), np.concatenate(pixels),
            np.concatenate(index), np.concatenate(labels), records, skipped)


# ------------------------------------------------------------ the IoU
def _map_slices(config, num_priors):
    """`(start, end, grid spec or None)` of each map's priors."""
    out, start = [], 0
    for f, k in zip(config.feature_map_sizes, config.boxes_per_cell):
        if isinstance(f, (list, tuple)):
            cells, spec = int(f[0]) * int(f[1]), ((int(f[0]), int(f[1])), int(k))
        else:
            cells, spec = int(f) * int(f), (int(f), int(k))
        end = start + cells * int(k)
        out.append((start, end, spec))
        start = end
    if start != num_priors:
        raise ValueError(f"anchor_fit: the configuration's maps describe {start} priors, "
                         f"generate_anchors gave {num_priors}")
    return out


def best_iou_per_map(boxes, config, chunk_size=None):
    """Best IoU of each box with the priors of each feature map.

    Args:
        boxes: float32 `(G, 4)` normalised xyxy boxes with positive size.
        config: an `SSDConfig`.
        chunk_size: boxes per IoU chunk (default: about 8M box-prior pairs
            per chunk); the result does not depend on it.

    Returns:
        `(best, arg)`: float32 `(num_maps, G)` best IoU per map and int64
        `(num_maps, G)` the index (into `generate_anchors(config)`) of that
        prior.
    """
    boxes = np.ascontiguousarray(boxes, dtype=np.float32)
    anchors = generate_anchors(config)
    anchors_xyxy = cxcywh_to_xyxy(anchors).astype(np.float32)
    slices = _map_slices(config, anchors.shape[0])
    g = boxes.shape[0]
    best = np.empty((len(slices), g), dtype=np.float32)
    arg = np.empty((len(slices), g), dtype=np.int64)
    for m, (start, end, spec) in enumerate(slices):
        prior = anchors_xyxy[start:end]
        grid = None
        if spec is not None:
            try:
                grid = anchor_grid(prior, [spec])
            except ValueError:
                grid = None
        n = end - start
        chunk = int(chunk_size) if chunk_size else max(1, _CHUNK_PAIRS // max(n, 1))
        chunk = max(1, min(chunk, g))
        out = np.empty((chunk, n), dtype=np.float32)
        scratch = np.empty_like(out)
        for s in range(0, g, chunk):
            part = boxes[s:s + chunk]
            rows = part.shape[0]
            o, sc = out[:rows], scratch[:rows]
            if grid is not None:
                grid_iou(part, grid, o, sc)
            else:
                iou(part, prior, o, sc)
            a = o.argmax(axis=1)
            arg[m, s:s + rows] = a + start
            best[m, s:s + rows] = o[np.arange(rows), a]
    return best, arg


def _scaled(config, factors):
    """The configuration with map `i`'s min and max sizes times `factors[i]`."""
    return config.replace(
        min_sizes=[v * f for v, f in zip(config.min_sizes, factors)],
        max_sizes=[v * f for v, f in zip(config.max_sizes, factors)],
    )


# --------------------------------------------------------- statistics
def _stats(values, threshold):
    values = np.asarray(values, dtype=np.float64)
    out = {"boxes": int(values.size), "matched": float(np.mean(values >= threshold)),
           "mean": float(values.mean()), "min": float(values.min())}
    for q, v in zip(QUANTILES, np.quantile(values, QUANTILES)):
        out[_qname(q)] = float(v)
    return out


def _size_edges(size_buckets, input_hw):
    if isinstance(size_buckets, str):
        if size_buckets == "octave":
            top = math.sqrt(input_hw[0] * input_hw[1])
            return [float(e) for e in OCTAVE_EDGES if e < top]
        if size_buckets == "coco":
            return [float(e) for e in COCO_EDGES]
        raise ValueError(f"anchor_fit: size_buckets must be 'octave', 'coco' or a list "
                         f"of increasing sizes, got {size_buckets!r}")
    edges = [float(e) for e in size_buckets]
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] <= 0:
        raise ValueError(f"anchor_fit: size_buckets must be increasing positive sizes, "
                         f"got {list(size_buckets)}")
    return edges


def _bucket_labels(edges, coco):
    if coco:
        return ["small", "medium", "large"]
    labels = [f"< {edges[0]:g} px"]
    labels += [f"{a:g}-{b:g} px" for a, b in zip(edges, edges[1:])]
    labels.append(f">= {edges[-1]:g} px")
    return labels


# ---------------------------------------------------------- suggestion
def _suggest(boxes, config, threshold, scales, chunk_size):
    """Search min/max size scales: a global one, then per map (coordinate
    ascent over a table of per-map best IoUs, one IoU pass per scale).

    Sizes are kept non-decreasing from map to map when the configuration's
    are. A change is taken only when it matches strictly more boxes; among
    equal counts the scale nearest 1 wins.

    Returns:
        `(factors per map, global factor, boxes matched)`.
    """
    scales = sorted({float(s) for s in scales} | {1.0})
    num_maps = len(config.feature_map_sizes)
    # table[j, m, g]: best IoU of box g with map m's priors at scales[j].
    table = np.stack([best_iou_per_map(boxes, _scaled(config, [s] * num_maps),
                                       chunk_size)[0] for s in scales])
    hits = table >= threshold  # (S, M, G)
    closeness = np.abs(np.log(np.asarray(scales)))
    # Global scale.
    counts = hits.any(axis=1).sum(axis=1)  # (S,)
    one = scales.index(1.0)
    j0 = _pick(counts, closeness, one)
    choice = [j0] * num_maps
    monotone = all(b >= a for a, b in zip(config.min_sizes, config.min_sizes[1:]))

    def count_of(choice):
        return int(hits[choice, np.arange(num_maps)].any(axis=0).sum())

    best = count_of(choice)
    for _ in range(4):
        improved = False
        for m in range(num_maps):
            others = [c for i, c in enumerate(choice) if i != m]
            rest = (hits[others, [i for i in range(num_maps) if i != m]].any(axis=0)
                    if others else np.zeros(hits.shape[2], dtype=bool))
            cand = (hits[:, m] | rest[None]).sum(axis=1)  # (S,)
            if monotone:
                mins = np.asarray(config.min_sizes)
                size_m = mins[m] * np.asarray(scales)
                ok = np.ones(len(scales), dtype=bool)
                if m > 0:
                    ok &= size_m >= mins[m - 1] * scales[choice[m - 1]] - 1e-9
                if m + 1 < num_maps:
                    ok &= size_m <= mins[m + 1] * scales[choice[m + 1]] + 1e-9
                cand = np.where(ok, cand, -1)
            j = _pick(cand, np.abs(np.log(np.asarray(scales) / scales[choice[m]])),
                      choice[m])
            if cand[j] > best:
                choice[m], best, improved = j, int(cand[j]), True
        if not improved:
            break
    factors = [scales[j] for j in choice]
    return factors, scales[j0], best


def _pick(counts, closeness, default):
    """Index of the highest count, nearest (by `closeness`) on ties;
    `default` unless something beats its count."""
    counts = np.asarray(counts)
    top = counts.max()
    if top <= counts[default]:
        return default
    candidates = np.flatnonzero(counts == top)
    return int(candidates[np.argmin(closeness[candidates])])


# ------------------------------------------------------------ main API
def anchor_fit(dataset, config, iou_threshold=0.5, size_buckets="octave",
               suggest=True, scales=DEFAULT_SCALES, max_examples=20,
               include_difficult=True, chunk_size=None):
    """Measure how well a configuration's priors fit a dataset's boxes.

    Each box is normalised by its image's width and height, as training
    sees it after stretching the image to the input size (or, for a
    `config.letterbox` model, as it lands in the letterboxed input), and its best IoU
    with any prior is computed (the encoder's IoU, in float32).

    Args:
        dataset: a dataset with the records interface (`VOCDataset`,
            `COCODataset`, or any object with `records` or `__len__` /
            `__getitem__` returning dicts with `width`, `height`, pixel
            xyxy `boxes` and `labels`; `class_names` optional).
        config: an `SSDConfig`, its dict, a preset name (`"ssd300"`,
            `"tiny"`, ...) or a model with a `config`.
        iou_threshold: the encoder's positive threshold.
        size_buckets: `"octave"` (default: `sqrt(w * h)` in input pixels
            split at 8, 16, 32, ... below the input size), `"coco"` (small
            < 32, medium < 96, large, in input pixels) or a list of
            increasing limits.
        suggest: search for min/max sizes that match more boxes.
        scales: the factors the search tries, globally then per map (1.0
            is always added).
        max_examples: how many unreachable boxes to list (worst first).
        include_difficult: measure boxes flagged difficult (they are trained
            by default, as in Caffe).
        chunk_size: boxes per IoU chunk (memory bound; same result).

    Returns:
        an `AnchorFitReport`.

    Raises:
        ValueError: for a dataset without boxes, a record without image
            size, or a bad argument.

    Example:

    >>> train = VOCDataset("VOCdevkit/VOC2007", "trainval")
    >>> report = anchor_fit(train, "ssd300")
    >>> print(report.format())
    >>> report.suggestion["min_sizes"]
    """
    threshold, scales = _check_arguments(iou_threshold, scales)
    config, names = _config_and_names(dataset, config)
    input_hw = _input_hw(config)
    boxes, pixels, index, labels, records, skipped = _gather(
        dataset, include_difficult,
        input_hw if getattr(config, "letterbox", False) else None)
    best_map, arg_map = best_iou_per_map(boxes, config, chunk_size)
    which = best_map.argmax(axis=0)
    cols = np.arange(boxes.shape[0])
    best = best_map[which, cols]
    matched = best >= threshold

    # Sizes in the model's input: normalised width/height times the input's.
    wh = (boxes[:, 2:] - boxes[:, :2]).astype(np.float64) * [input_hw[1], input_hw[0]]
    sizes = np.sqrt(wh[:, 0] * wh[:, 1])
    edges = _size_edges(size_buckets, input_hw)
    bucket = np.searchsorted(np.asarray(edges), sizes, side="right")
    bucket_labels = _bucket_labels(edges, size_buckets == "coco")
    per_size = {bucket_labels[b]: _stats(best[bucket == b], threshold)
                for b in range(len(bucket_labels)) if np.any(bucket == b)}
    per_class = {_name_of(names, int(c)): _stats(best[labels == c], threshold)
                 for c in np.unique(labels)}
    map_labels = [_map_label(f) for f in config.feature_map_sizes]
    anchors = generate_anchors(config)
    worst = np.flatnonzero(~matched)
    worst = worst[np.argsort(best[worst], kind="stable")][: max(int(max_examples), 0)]
    examples = [_unreachable_example(
        j, int(index[j]), records[int(index[j])], names, labels, pixels, sizes, best,
        map_labels[int(which[j])], anchors[arg_map[which[j], j]], input_hw) for j in worst]
    suggestion = suggested_best = None
    if suggest:
        suggestion, suggested_best = _suggestion(boxes, config, threshold, scales,
                                                 chunk_size, int(matched.sum()), best)
    return AnchorFitReport(
        num_images=len(records),
        num_boxes=int(best.size),
        num_skipped_boxes=int(skipped),
        iou_threshold=threshold,
        input_size=input_hw,
        num_priors=int(anchors.shape[0]),
        feature_map_sizes=_plain(list(config.feature_map_sizes)),
        min_sizes=[float(v) for v in config.min_sizes],
        max_sizes=[float(v) for v in config.max_sizes],
        matched=float(matched.mean()),
        bipartite_only=float((~matched & (best > _MIN_OVERLAP)).mean()),
        no_prior=float(np.mean(best <= _MIN_OVERLAP)),
        overall=_stats(best, threshold),
        per_class=per_class,
        per_size=per_size,
        size_edges=edges,
        best_map_share={label: float(np.mean(which == m))
                        for m, label in enumerate(map_labels)},
        unreachable_count=int((~matched).sum()),
        unreachable=examples,
        suggestion=suggestion,
        best_ious=best.astype(np.float32),
        suggested_best_ious=suggested_best,
    )


def _check_arguments(iou_threshold, scales):
    """`(threshold, scales)` as floats, or `ValueError`."""
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(
            f"anchor_fit: iou_threshold must lie in (0, 1], got {iou_threshold}")
    scales = [float(v) for v in scales]
    if not scales or any(not math.isfinite(v) or v <= 0 for v in scales):
        raise ValueError(f"anchor_fit: scales must be positive numbers, got {scales}")
    return float(iou_threshold), scales


def _config_and_names(dataset, config):
    """The `SSDConfig` of `config` (a preset name, dict, config or model)
    and the class names (the dataset's, else the config's)."""
    names = getattr(dataset, "class_names", None)
    if isinstance(config, str):
        config = SSDConfig.from_preset(config, num_classes=len(names) if names else None)
    elif hasattr(config, "config") and not isinstance(config, (SSDConfig, dict)):
        config = config.config
    config = SSDConfig.from_dict(config)
    return config, list(names or config.names)


def _name_of(names, label):
    return names[label] if 0 <= label < len(names) else f"label_{label}"


def _unreachable_example(j, record_index, record, names, labels, pixels, sizes, best,
                         best_map, prior, input_hw):
    """The report's entry for box `j` (of record `record_index`), which no
    prior matches."""
    return {
        "record": record_index,
        "image_id": _plain(record.get("image_id")),
        "image_path": str(record.get("image_path", "")),
        "class": _name_of(names, int(labels[j])),
        "box": [float(v) for v in pixels[j]],
        "size": float(sizes[j]),
        "best_iou": float(best[j]),
        "best_map": best_map,
        "best_prior": [float(prior[2] * input_hw[1]), float(prior[3] * input_hw[0])],
    }


def _suggestion(boxes, config, threshold, scales, chunk_size, matched, best):
    """The suggested min/max sizes (the report's `suggestion`) and the best
    IoUs under them."""
    factors, global_scale, count = _suggest(boxes, config, threshold, scales, chunk_size)
    changed = count > matched
    new, new_best = config, best
    if changed:
        # Sizes to 0.1 px, as printed, when that matches as many boxes.
        exact = _scaled(config, factors)
        new = config.replace(min_sizes=[round(v, 1) for v in exact.min_sizes],
                             max_sizes=[round(v, 1) for v in exact.max_sizes])
        new_best = best_iou_per_map(boxes, new, chunk_size)[0].max(axis=0)
        if np.sum(new_best >= threshold) < count:
            new = exact
            new_best = best_iou_per_map(boxes, new, chunk_size)[0].max(axis=0)
    suggestion = {
        "changed": bool(changed),
        "min_sizes": [float(v) for v in new.min_sizes],
        "max_sizes": [float(v) for v in new.max_sizes],
        "scale": float(global_scale) if changed else 1.0,
        "map_scales": ([float(f) for f in factors] if changed
                       else [1.0] * len(config.min_sizes)),
        "matched": float(np.mean(new_best >= threshold)),
        "bipartite_only": float(np.mean((new_best < threshold)
                                        & (new_best > _MIN_OVERLAP))),
        "scales_tried": sorted({float(s) for s in scales} | {1.0}),
    }
    return suggestion, new_best.astype(np.float32)


# ---------------------------------------------------------------- plot
def plot_anchor_fit(report, path, bins=HISTOGRAM_BINS, title=None):
    """Write a PNG histogram of the boxes' best IoUs (and, with a
    suggestion, of their best IoUs under the suggested sizes), with the
    threshold marked.

    Args:
        report: an `AnchorFitReport`.
        path: output PNG path.
        bins: histogram bins over `[0, 1]`.
        title: optional title.

    Returns:
        `path`, or `None` when matplotlib is not installed (a warning is
        logged: `pip install matplotlib`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("plot_anchor_fit: matplotlib is not installed (pip install "
                       "matplotlib); no plot written to %s", path)
        return None
    edges, counts, suggested = report.histogram(bins)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue",
           alpha=0.7, label=f"configuration: {_pct(report.matched)} % matched")
    if suggested is not None and report.suggestion and report.suggestion["changed"]:
        ax.step(edges, np.append(suggested, suggested[-1]), where="post",
                color="tab:orange",
                label=f"suggested sizes: {_pct(report.suggestion['matched'])} % "
                      "matched")
    ax.axvline(report.iou_threshold, color="tab:red", linestyle="--",
               label=f"threshold {report.iou_threshold:g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("best IoU of a ground-truth box with any prior")
    ax.set_ylabel("boxes")
    h, w = report.input_size
    ax.set_title(title or f"anchor fit: {report.num_boxes} boxes, {report.num_priors} "
                          f"priors at {w}x{h}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
