"""What the torch equality tests (`tests/models/test_convert_*_equality.py`)
and `benchmarks/ssdlite.py` share: the offline photos, stand-in weights for
torchvision's networks, lufficc/SSD's detector shell, box predictor, priors
and post-processing, the torch-only child process that records a reference,
and the comparisons of our outputs with it.

It lives here, not under `tests/`, because the benchmarks import it too
(`benchmarks` is a package; the tests put the repository root on the path
as the other benchmark tests do). Only numpy is imported at module level:
the torch-only child processes import this module (importing torch's
compiler stack after TensorFlow can crash a process), so PIL, scikit-image,
Keras and keras-ssd are imported inside the functions that use them, and
torch is passed in.
"""

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: scikit-image's colour sample photos (those a version lacks are skipped).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "hubble_deep_field",
                  "immunohistochemistry", "retina", "skin")
#: scikit-learn's two sample photos, in `load_sample_images` order (used
#: when scikit-learn is installed).
SKLEARN_PHOTOS = ("china", "flower")


def sample_photos(size, names=SKIMAGE_PHOTOS + SKLEARN_PHOTOS):
    """The offline colour photos among `names`, stretched to `size` x `size`.

    Args:
        size: int, the side in pixels (PIL bilinear resize; a photo already
            that size is returned unchanged).
        names: photo names from `SKIMAGE_PHOTOS` and `SKLEARN_PHOTOS`; those
            this scikit-image lacks, and scikit-learn's without
            scikit-learn, are left out.

    Returns:
        `(names found, uint8 array (N, size, size, 3))`.

    Raises:
        ImportError: scikit-image is not installed.
        ValueError: none of `names` is available.

    Example:
    >>> names, images = sample_photos(320, ("astronaut",))
    """
    from PIL import Image
    from skimage import data

    found = {}
    for name in names:
        if name in SKLEARN_PHOTOS:
            continue
        try:
            found[name] = getattr(data, name)()
        except Exception:  # noqa: BLE001 - a photo this scikit-image lacks
            continue
    if any(name in SKLEARN_PHOTOS for name in names):
        try:
            from sklearn.datasets import load_sample_images

            for name, image in zip(SKLEARN_PHOTOS, load_sample_images().images):
                if name in names:
                    found[name] = image
        except ImportError:
            pass
    kept = [n for n, a in found.items() if a.ndim == 3 and a.shape[-1] == 3]
    if not kept:
        raise ValueError(f"sample_photos: none of {list(names)} is available")
    arrays = [np.asarray(Image.fromarray(found[n]).resize((size, size), Image.BILINEAR))
              for n in kept]
    return kept, np.stack(arrays)


def photo(name, size):
    """One sample photo (`sample_photos`) as RGB float32 `(size, size, 3)`."""
    return sample_photos(size, (name,))[1][0].astype(np.float32)


def raise_class_biases(classification_head, background, classes=None):
    """Add `background` to the background logit of every prior of a
    torchvision classification head, and `classes[c]` to class `c`'s (in
    place, under `torch.no_grad()` by the caller). Each entry of its
    `module_list` is a convolution or ends with one (SSDLite)."""
    k = classification_head.num_columns
    for block in classification_head.module_list:
        conv = block if hasattr(block, "bias") else block[-1]
        bias = conv.bias.view(-1, k)
        bias[:, 0] += background
        for c, up in (classes or {}).items():
            bias[:, c] += up


def stand_in_weights(model, torch, seed=0, background=6.0, classes=None):
    """Give a torchvision SSD network stand-in weights (in place).

    Fan-in scaled normal kernels (torchvision's own init, normal with std
    0.03, all but erases the image by the last maps, so scores tie across
    cells), random batch-norm statistics, and `raise_class_biases`: a
    background bias of `background` makes most priors score below a
    0.001 threshold as in a trained detector (torchvision's init leaves
    every class near 1/91 on every prior: 27,000 boxes enter NMS, a worst
    case no trained model reaches). Not a detector: its detections mean
    nothing.

    Args:
        model: a torchvision detection model (`ssdlite320_mobilenet_v3_large`).
        torch: the `torch` module.
        seed: int, the seed of the torch generator drawing the weights.
        background: float added to every prior's background logit.
        classes: optional `{class index: float}` added to those logits.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator)
                               * (1.5 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
            if isinstance(m, torch.nn.BatchNorm2d):
                random_batch_norm(m, torch, generator)
        raise_class_biases(model.head.classification_head, background, classes)


def random_batch_norm(bn, torch, generator):
    """Random affine parameters and running statistics for a torch
    `BatchNorm2d` (in place, under `torch.no_grad()` by the caller): gamma
    in [0.5, 1.5), beta and the mean normal with std 0.2, the variance in
    [0.5, 1.5), drawn from `generator` in that order, so that the converted
    batch norms are checked with statistics that matter."""
    n = bn.num_features
    bn.weight.copy_(0.5 + torch.rand(n, generator=generator))
    bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
    bn.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
    bn.running_var.copy_(0.5 + torch.rand(n, generator=generator))
    bn.num_batches_tracked.fill_(1000)


def record_heads(model, x, torch, prefix=""):
    """A torchvision SSD network's feature maps and heads on a normalised
    batch `x` `(1, 3, H, W)`, in a torch-only child.

    Returns:
        `(features, heads, arrays)`: torch's maps and head dict, and numpy
        copies keyed `{prefix}feature{i}` (NHWC), `{prefix}loc` and
        `{prefix}conf`.
    """
    with torch.no_grad():
        features = list(model.backbone(x).values())
        heads = model.head(features)
    arrays = {f"{prefix}feature{i}": f.permute(0, 2, 3, 1).numpy()
              for i, f in enumerate(features)}
    arrays[prefix + "loc"] = heads["bbox_regression"].numpy()
    arrays[prefix + "conf"] = heads["cls_logits"].numpy()
    return features, heads, arrays


def record_torchvision_ssd(model, image, torch, prefix=""):
    """Everything a torchvision SSD or SSDLite computes on one image, in a
    torch-only child: its transform, maps and heads (`record_heads`), its
    anchors, its post-processing and its whole forward, and the
    post-processing again without the `detections_per_img` cut.

    Args:
        model: a torchvision `SSD` in eval mode.
        image: float array `(H, W, 3)`, RGB 0..255.
        torch: the `torch` module.
        prefix: str put before every key of `arrays`.

    Returns:
        `(heads, arrays, uncut)`: the head dict; numpy arrays keyed (after
        `prefix`) `input`, `feature{i}`, `loc`, `conf`, `anchors`,
        `default_boxes`, `det_{boxes,scores,labels}` (post-processing) and
        `full_{boxes,scores,labels}` (forward); the uncut scores, best
        first.
    """
    tensor = torch.from_numpy(image).permute(2, 0, 1) / 255.0
    with torch.no_grad():
        images, _ = model.transform([tensor])
        features, heads, arrays = record_heads(model, images.tensors, torch)
        arrays["input"] = images.tensors.permute(0, 2, 3, 1).numpy()
        anchors = model.anchor_generator(images, features)
        arrays["anchors"] = anchors[0].numpy()
        grid = [list(f.shape[-2:]) for f in features]
        arrays["default_boxes"] = model.anchor_generator._grid_default_boxes(
            grid, list(images.tensors.shape[-2:]), dtype=torch.float32).numpy()
        dets = model.postprocess_detections(heads, anchors, images.image_sizes)[0]
        full = model([tensor])[0]
        for key in ("boxes", "scores", "labels"):
            arrays["det_" + key] = dets[key].numpy()
            arrays["full_" + key] = full[key].numpy()
        cut, model.detections_per_img = model.detections_per_img, 10 ** 6
        uncut = model.postprocess_detections(heads, anchors, images.image_sizes)[0]
        model.detections_per_img = cut
    return heads, {prefix + k: v for k, v in arrays.items()}, uncut["scores"].numpy()


def record_reference(code, out, timeout=900):
    """Run `code` (a torch-only script) in a child process with `out` as
    its `sys.argv[1]` and this repository on its path; the script writes
    `reference.npz` and `report.json` into `out`.

    Returns:
        `(report dict, {name: array})`.

    Raises:
        AssertionError: the child failed (its stderr's tail).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                            text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    return report, dict(np.load(os.path.join(out, "reference.npz")))


def lufficc_detector(backbone, predictor, torch):
    """lufficc/SSD's `SSDDetector` module tree around `backbone` and
    `predictor` (`backbone.*`, `box_head.predictor.*`): a state dict with
    the published checkpoints' key names."""
    model = torch.nn.Module()
    model.backbone = backbone
    model.box_head = torch.nn.Module()
    model.box_head.predictor = predictor
    return model


def lufficc_predict(features, cls_headers, reg_headers, num_classes, torch):
    """lufficc/SSD's `BoxPredictor.forward`: every head on its map, NHWC,
    flattened and concatenated over maps.

    Returns:
        `(class logits (N, priors, num_classes), offsets (N, priors, 4))`.
    """
    cls = [h(f).permute(0, 2, 3, 1).contiguous() for f, h in zip(features, cls_headers)]
    reg = [h(f).permute(0, 2, 3, 1).contiguous() for f, h in zip(features, reg_headers)]
    n = features[0].shape[0]
    cls = torch.cat([c.view(n, -1) for c in cls], 1).view(n, -1, num_classes)
    reg = torch.cat([r.view(n, -1) for r in reg], 1).view(n, -1, 4)
    return cls, reg


def record_lufficc(model, image, out, checkpoint, torch):
    """In a torch-only child: run a lufficc/SSD detector (`lufficc_detector`)
    on `image` (RGB float `(H, W, 3)`) minus lufficc's `PIXEL_MEAN`, and
    write into folder `out` what `record_reference` reads (`reference.npz`:
    `feature{i}` NHWC, `loc`, `conf`; `report.json`: the torch version and
    the parameter count) and the checkpoint as lufficc saves it (`{"model":
    state dict, "iteration": ...}`) named `checkpoint`."""
    mean = torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)
    x = torch.from_numpy(image).permute(2, 0, 1)[None] - mean
    with torch.no_grad():
        features = model.backbone(x)
        cls, reg = model.box_head.predictor(features)
    arrays = {"loc": reg.numpy(), "conf": cls.numpy()}
    for i, f in enumerate(features):
        arrays[f"feature{i}"] = f.permute(0, 2, 3, 1).numpy()
    np.savez(os.path.join(out, "reference.npz"), **arrays)
    torch.save({"model": model.state_dict(), "iteration": 120000},
               os.path.join(out, checkpoint))
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump({"torch": torch.__version__,
                   "params": sum(p.numel() for p in model.parameters())}, f)


def lufficc_prior_box(size, feature_maps, strides, min_sizes, max_sizes, aspect_ratios):
    """lufficc/SSD's `PriorBox` in numpy, from a config's `PRIORS`: per map
    `k`, rows i, columns j: cx = (j + 0.5) / (size / stride); the min
    square, the sqrt(min * max) square, then per ratio r (min sqrt(r), min /
    sqrt(r)) and its transpose; all four values clamped to [0, 1]
    (`PRIORS.CLIP`).

    Returns:
        float32 `(priors, 4)`: normalised `(cx, cy, w, h)`.

    Example:
    >>> lufficc_prior_box(300, [1], [300], [30], [60], [[2]]).shape
    (4, 4)
    """
    out = []
    for k, f in enumerate(feature_maps):
        scale = size / strides[k]
        for i, j in itertools.product(range(f), repeat=2):
            cx, cy = (j + 0.5) / scale, (i + 0.5) / scale
            s = min_sizes[k] / size
            out.append([cx, cy, s, s])
            big = math.sqrt(min_sizes[k] * max_sizes[k]) / size
            out.append([cx, cy, big, big])
            for r in aspect_ratios[k]:
                q = math.sqrt(r)
                out += [[cx, cy, s * q, s / q], [cx, cy, s / q, s * q]]
    return np.clip(np.asarray(out, np.float32), 0, 1)


def compare_priors(model, ref_priors, size, figures, tol_px=1e-5):
    """The model's priors (`keras_ssd.anchors.generate_anchors`) are the
    reference's `ref_priors` (normalised `(cx, cy, w, h)`), each value within
    `tol_px` pixels at `size`; asserts it. `figures` gets the worst, in
    pixels.

    Returns:
        the model's priors.
    """
    from keras_ssd.anchors import generate_anchors

    priors = generate_anchors(model.config)
    assert priors.shape == ref_priors.shape, (priors.shape, ref_priors.shape)
    figures["priors (px)"] = float(np.abs(priors - ref_priors).max()) * size
    assert figures["priors (px)"] < tol_px, figures
    return priors


def compare_network(model, image, ref, source_maps, figures, tol=1e-4):
    """Run a keras-ssd `model` on `image` and assert that its maps
    `source_maps` (layer names, in the reference's order) and its head
    outputs equal the reference's `feature{i}`, `loc` and `conf` (relative
    error below `tol`); `figures` gets each relative error.

    Returns:
        the model's raw predictions `(1, priors, 4 + classes + 1)`.
    """
    import keras

    probe = keras.Model(model.input, [model.get_layer(n).output for n in source_maps]
                        + [model.output])
    outs = [np.asarray(o) for o in probe(image[None])]
    for i, name in enumerate(source_maps):
        assert outs[i].shape == ref[f"feature{i}"].shape, name
        figures[name] = relative(outs[i], ref[f"feature{i}"])[0]
        assert figures[name] < tol, (name, figures)
    predictions = outs[-1]
    for part, got in (("loc", predictions[0, :, :4]), ("conf", predictions[0, :, 4:])):
        figures[f"{part} (relative)"] = relative(got, ref[part][0])[0]
        assert figures[f"{part} (relative)"] < tol, (part, figures)
    return predictions


def relative(ours, ref):
    """`(max |ours - ref| / max |ref|, max |ours - ref|)`, in float64."""
    diff = float(np.abs(np.asarray(ours, np.float64) - ref).max())
    return diff / float(np.abs(ref).max()), diff


def decode_first(model, predictions, size):
    """The detections of image 0 of raw `predictions` through the model's
    own decoder settings: `(pixel boxes, scores, labels)`, padding cut."""
    import keras

    from keras_ssd.layers.decode_detections import DecodeDetections

    out = DecodeDetections(model.config, **model.postprocessing)(predictions)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}
    n = int(out["num_detections"][0])
    return out["boxes"][0, :n] * size, out["scores"][0, :n], out["labels"][0, :n]


def match_decoded(model, heads, predictions, theirs, size, figures, source):
    """The detections `theirs` of a source's post-processing are what the
    model's decoder gives (`match_detections`, scores within 1e-3) on the
    source's raw `heads` (the post-processing alone: boxes within 1e-3 px)
    and on the model's own `predictions` (end to end: within 1e-2 px, for
    the float32 rounding of two networks); asserts it. `figures` gets
    `(count, worst box px, worst score)` of each, named after `source`."""
    for key, got, tol in ((f"from {source}'s heads", heads, 1e-3),
                          ("end to end", predictions, 1e-2)):
        figures[f"detections {key}"] = match_detections(
            decode_first(model, got, size), theirs, tol, score_tol=1e-3)


def match_detections(ours, theirs, box_tol, score_tol=None):
    """Same count, and each reference detection has its own one of ours with
    the same label, the box within `box_tol` pixels and (when `score_tol`
    is given) the score within `score_tol`; asserts it.

    Args:
        ours, theirs: `(boxes, scores, labels)` each.

    Returns:
        `(count, worst box error in pixels, worst score error)`.
    """
    (ob, os_, ol), (tb, ts, tl) = ours, theirs
    assert len(ob) == len(tb) > 0, (len(ob), len(tb))
    used = np.zeros(len(ob), bool)
    worst_box = worst_score = 0.0
    for box, score, label in zip(tb, ts, tl):
        err = np.abs(ob - box).max(axis=1)
        err[(ol != label) | used] = np.inf
        if score_tol is not None:
            err[np.abs(os_ - score) > score_tol] = np.inf
        j = int(np.argmin(err))
        assert err[j] < box_tol, (label, score, box, err[j])
        used[j] = True
        worst_box = max(worst_box, float(err[j]))
        worst_score = max(worst_score, abs(float(os_[j]) - float(score)))
    return len(tb), worst_box, worst_score


def softmax(x):
    """Softmax over the last axis (numpy)."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def per_class_nms(boxes, scores, labels, iou_threshold, max_keep):
    """Greedy NMS within each class, then the best `max_keep` over all
    classes: torchvision's `batched_nms` and mmcv's, in numpy (float64 IoU;
    a box is suppressed when its IoU with a kept box is > `iou_threshold`;
    ties keep the earlier index). The post-processing references of the
    sources (`lufficc_postprocess`, mmdetection's in
    `tests/models/test_convert_mmdetection.py`) end with it.

    Args:
        boxes: `(N, 4)` xyxy boxes.
        scores: `(N,)` scores.
        labels: `(N,)` class of each box.
        iou_threshold: float, the IoU above which a box is suppressed.
        max_keep: int, how many of the kept boxes to return.

    Returns:
        `(indices, gap)`: the kept indices into `boxes`, best score first
        (stable), at most `max_keep`; `gap` is the score difference at the
        `max_keep` cut (`None` when fewer were kept, 0 for a tie).

    Example:
    >>> per_class_nms(np.array([[0, 0, 2, 2], [0, 0, 2, 1.9]]), np.array([0.9, 0.8]),
    ...               np.array([0, 0]), 0.45, 100)
    (array([0]), None)
    """
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = []
    for c in np.unique(labels):
        sel = np.flatnonzero(labels == c)
        alive = list(sel[np.argsort(-scores[sel], kind="stable")])
        while alive:
            i = alive.pop(0)
            kept.append(i)
            if not alive:
                break
            rest = np.array(alive)
            w = np.clip(np.minimum(boxes[rest, 2], boxes[i, 2])
                        - np.maximum(boxes[rest, 0], boxes[i, 0]), 0, None)
            h = np.clip(np.minimum(boxes[rest, 3], boxes[i, 3])
                        - np.maximum(boxes[rest, 1], boxes[i, 1]), 0, None)
            inter = w * h
            iou = inter / (area[rest] + area[i] - inter)
            alive = list(rest[iou <= iou_threshold])
    kept = np.array(kept, dtype=np.int64)
    kept = kept[np.argsort(-scores[kept], kind="stable")]
    gap = (float(scores[kept[max_keep - 1]] - scores[kept[max_keep]])
           if len(kept) > max_keep else None)
    return kept[:max_keep], gap


def lufficc_postprocess(loc, conf, priors, size=300, conf_thresh=0.01, nms_thresh=0.45,
                        max_per_image=100):
    """lufficc/SSD's `convert_locations_to_boxes`, `center_form_to_corner_form`
    and `PostProcessor` in numpy: scores > thresh over all classes, pixel
    boxes, NMS per class (torchvision's nms: suppress IoU > thresh), the
    best `max_per_image`, computed in float64 whatever the inputs' type.

    Returns:
        `([boxes, scores, labels], gap)`: `gap` is the score difference at
        the `max_per_image` cut (`None` when fewer were kept), 0 for a tie.
    """
    loc, conf, priors = (np.asarray(a, np.float64) for a in (loc, conf, priors))
    centre = loc[:, :2] * 0.1 * priors[:, 2:] + priors[:, :2]
    wh = np.exp(loc[:, 2:] * 0.2) * priors[:, 2:]
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], 1) * size
    scores = softmax(conf)[:, 1:]
    prior_idx, labels = np.nonzero(scores > conf_thresh)
    s, b = scores[prior_idx, labels], boxes[prior_idx]

    kept, gap = per_class_nms(b, s, labels, nms_thresh, max_per_image)
    return [b[kept], s[kept], labels[kept]], gap
