"""A plain from-scratch Keras tiny SSD: the comparison point of the learning benchmark.

Written here on purpose with none of keras_ssd's model builders, loss, prior
boxes or target encoder, the way one would write a small SSD by hand:

* network: 192x192 input, a conv-BN-ReLU backbone (3x3 convolutions, stride-2
  downsampling, 1x1 bottlenecks on the small maps), six source maps
  (24, 12, 6, 3, 2, 1 cells) with 4 or 6 priors per cell, one 3x3
  convolution head per map giving box offsets and class logits
  (`count_macs` gives its size: about 1.4 M parameters and 0.36 G
  multiply-adds per image);
* priors: SSD's recipe, scales 0.08 .. 0.86, aspect ratios 1, 2, 1/2 (+ 3,
  1/3 on the middle maps) and the extra sqrt(s_k s_k+1) square, clipped to
  the image;
* matching in numpy: every ground-truth box takes its best prior, every
  other prior its best box when IoU >= 0.5; offsets are SSD's centre-size
  encoding with variances 0.1 / 0.2;
* loss: smooth-L1 on the positives plus softmax cross-entropy on the
  positives and the hardest negatives (3 per positive, per image), divided
  by the number of positives;
* training: Adam at a constant 1e-3, batch 32; every training image is
  resized to 192x192 and encoded ONCE into in-memory numpy arrays; the only
  augmentation is a horizontal flip (done on the encoded arrays: the prior
  grid is mirror-symmetric, so a flip permutes the priors and negates the
  x offset); `model.fit` runs over a `keras.utils.PyDataset` that slices
  those arrays, shuffled each epoch;
* evaluation: softmax, decode, per-class NMS at 0.45
  (`tf.image.combined_non_max_suppression`, score >= 0.01, 200 detections
  per image), and VOC07 11-point mAP with keras_ssd's `voc_map` so both
  sides of the benchmark are scored by the same code.

`train_baseline` trains for a wall-clock budget and evaluates at snapshot
times; the clock counts training only (it is paused while evaluating).
"""

import time

import numpy as np
from PIL import Image

IMAGE_SIZE = 192
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
IOU_THRESHOLD = 0.5
NEG_POS_RATIO = 3
VARIANCES = (0.1, 0.2)

#: The source maps: (cells per side, prior scale, extra aspect ratios beyond 1).
SOURCES = (
    (24, 0.08, (2.0,)),
    (12, 0.18, (2.0, 3.0)),
    (6, 0.32, (2.0, 3.0)),
    (3, 0.48, (2.0, 3.0)),
    (2, 0.66, (2.0,)),
    (1, 0.86, (2.0,)),
)
_LAST_SCALE = 1.0  # s_{k+1} of the last map, for its extra square prior


def priors_per_cell(ratios):
    """1 (square at s_k) + 1 (square at sqrt(s_k s_k+1)) + 2 per extra ratio."""
    return 2 + 2 * len(ratios)


# --------------------------------------------------------------------------
# Priors, matching, encoding (numpy)
# --------------------------------------------------------------------------

def make_priors(sources=SOURCES):
    """Prior boxes `(P, 4)` float32 normalised `(cx, cy, w, h)`, clipped to
    [0, 1], in the order of the heads' outputs: map, row, column, prior."""
    out = []
    for k, (cells, scale, ratios) in enumerate(sources):
        nxt = sources[k + 1][1] if k + 1 < len(sources) else _LAST_SCALE
        shapes = [(scale, scale), (np.sqrt(scale * nxt),) * 2]
        for r in ratios:
            shapes += [(scale * np.sqrt(r), scale / np.sqrt(r)),
                       (scale / np.sqrt(r), scale * np.sqrt(r))]
        centres = (np.arange(cells) + 0.5) / cells
        for cy in centres:
            for cx in centres:
                for w, h in shapes:
                    out.append((cx, cy, w, h))
    p = np.asarray(out, dtype=np.float64)
    xyxy = np.clip(np.concatenate([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], 1),
                   0.0, 1.0)
    return np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]],
                          1).astype(np.float32)


def mirror_index(sources=SOURCES):
    """`(P,)` int: the prior that prior `i` becomes under a horizontal flip."""
    index, start = [], 0
    for cells, _, ratios in sources:
        a = priors_per_cell(ratios)
        grid = np.arange(cells * cells * a).reshape(cells, cells, a)
        index.append(start + grid[:, ::-1, :].reshape(-1))
        start += cells * cells * a
    return np.concatenate(index)


def _xyxy(cxcywh):
    return np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2,
                           cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)


def iou_matrix(a, b):
    """IoU `(len(a), len(b))` of two xyxy box arrays."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0,
                 None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                 None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def encode(boxes, labels, priors, threshold=IOU_THRESHOLD):
    """Targets `(P, 5)` float32 for one image: 4 encoded offsets and the class
    (0 = background, `label + 1` for a matched prior).

    Args:
        boxes: `(G, 4)` normalised xyxy ground-truth boxes.
        labels: `(G,)` 0-based classes.
        priors: `(P, 4)` from `make_priors`.
        threshold: IoU from which a prior matches its best box.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    target = np.zeros((len(priors), 5), np.float32)
    if len(boxes) == 0:
        return target
    ious = iou_matrix(_xyxy(priors.astype(np.float64)), boxes)  # (P, G)
    best_box = ious.argmax(1)
    best_iou = ious[np.arange(len(priors)), best_box]
    # every box keeps its own best prior, whatever the threshold
    best_prior = ious.argmax(0)
    best_box[best_prior] = np.arange(len(boxes))
    best_iou[best_prior] = 1.0
    pos = best_iou >= threshold
    g = boxes[best_box]
    gc = (g[:, :2] + g[:, 2:]) / 2
    gwh = np.maximum(g[:, 2:] - g[:, :2], 1e-6)
    p = priors.astype(np.float64)
    off = np.concatenate([(gc - p[:, :2]) / (p[:, 2:] * VARIANCES[0]),
                          np.log(gwh / p[:, 2:]) / VARIANCES[1]], 1)
    target[pos, :4] = off[pos]
    target[pos, 4] = labels[best_box[pos]] + 1
    return target


def decode(offsets, priors):
    """Normalised xyxy boxes `(..., P, 4)` from predicted offsets."""
    c = priors[:, :2] + offsets[..., :2] * VARIANCES[0] * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(np.clip(offsets[..., 2:] * VARIANCES[1], -10, 5))
    return np.clip(np.concatenate([c - wh / 2, c + wh / 2], -1), 0.0, 1.0)


def flip_targets(targets, mirror):
    """Targets of the mirrored image: priors permuted, x offset negated."""
    out = targets[..., mirror, :].copy()
    out[..., 0] = -out[..., 0]
    return out


# --------------------------------------------------------------------------
# The network and its loss (Keras)
# --------------------------------------------------------------------------

def build_model(num_classes, sources=SOURCES, seed=0):
    """The tiny SSD: `(B, 192, 192, 3)` float 0..255 -> `(B, P, 4 + 1 + C)`
    (offsets, then background and class logits)."""
    import keras
    from keras import layers

    init = keras.initializers.HeNormal(seed=seed)

    def cbr(x, filters, kernel=3, stride=1, name=None):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_initializer=init, name=name)(x)
        x = layers.BatchNormalization(name=None if name is None else name + "_bn")(x)
        return layers.ReLU()(x)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = cbr(x, 16, stride=2)        # 96
    x = cbr(x, 36)
    x = cbr(x, 48, stride=2)        # 48
    x = cbr(x, 48)
    x = cbr(x, 96, stride=2)        # 24
    x = cbr(x, 96)
    s24 = cbr(x, 96)
    x = cbr(s24, 144, stride=2)     # 12
    s12 = cbr(x, 144)
    x = cbr(s12, 96, kernel=1)
    s6 = cbr(x, 160, stride=2)      # 6
    x = cbr(s6, 64, kernel=1)
    s3 = cbr(x, 128, stride=2)      # 3
    x = cbr(s3, 64, kernel=1)
    s2 = cbr(x, 96, stride=2)       # 2
    x = cbr(s2, 48, kernel=1)
    s1 = cbr(x, 96, stride=2)       # 1
    maps = (s24, s12, s6, s3, s2, s1)
    outs = []
    per = 4 + 1 + num_classes
    for fmap, (cells, _, ratios) in zip(maps, sources):
        a = priors_per_cell(ratios)
        h = layers.Conv2D(a * per, 3, padding="same", kernel_initializer=init,
                          name=f"head_{cells}")(fmap)
        outs.append(layers.Reshape((cells * cells * a, per))(h))
    out = layers.Concatenate(axis=1, name="predictions")(outs)
    return keras.Model(inputs, out, name="baseline_tiny_ssd")


def count_macs(model):
    """Multiply-adds per image of the model's convolutions (BN, ReLU and the
    reshapes not counted)."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += int(h) * int(w) * kh * kw * int(cin) * int(cout)
    return total


def multibox_loss(y_true, y_pred):
    """Smooth-L1 + softmax cross-entropy with 3:1 hard negative mining.

    `y_true` `(B, P, 5)`: offsets and class (0 background); `y_pred`
    `(B, P, 4 + 1 + C)`. Returns the batch loss divided by the number of
    positive priors in the batch (at least 1).
    """
    from keras import ops

    labels = ops.cast(y_true[..., 4], "int32")
    pos = ops.cast(labels > 0, y_pred.dtype)
    num_pos = ops.sum(pos, axis=1)  # (B,)
    diff = ops.abs(y_pred[..., :4] - y_true[..., :4])
    smooth_l1 = ops.sum(ops.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5), axis=-1)
    loc = ops.sum(smooth_l1 * pos)
    logits = y_pred[..., 4:]
    log_z = ops.logsumexp(logits, axis=-1)
    picked = ops.squeeze(ops.take_along_axis(logits, labels[..., None], axis=-1), -1)
    ce = log_z - picked  # (B, P)
    num_priors = ops.shape(ce)[1]
    # negatives ranked by their loss; positives pushed to the end
    neg_loss = ops.stop_gradient(ops.where(pos > 0, -1.0, ce))
    k = ops.minimum(NEG_POS_RATIO * num_pos, ops.cast(num_priors, pos.dtype) - num_pos)
    rank = ops.argsort(ops.argsort(-neg_loss, axis=1), axis=1)  # 0 = hardest
    hard = ops.cast(ops.cast(rank, pos.dtype) < k[:, None], pos.dtype) * (1.0 - pos)
    conf = ops.sum(ce * (pos + hard))
    return (loc + conf) / ops.maximum(ops.sum(num_pos), 1.0)


# --------------------------------------------------------------------------
# Data: resize once, encode once
# --------------------------------------------------------------------------

def load_split(dataset, priors=None):
    """Images resized to 192 `(N, 192, 192, 3)` uint8, targets `(N, P, 5)`
    float32 (None when `priors` is None) and the records."""
    n = len(dataset)
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    targets = None if priors is None else np.zeros((n, len(priors), 5), np.float32)
    for i in range(n):
        rec = dataset[i]
        img = Image.fromarray(dataset.load_image(i))
        images[i] = np.asarray(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR))
        if targets is not None:
            scale = np.array([rec["width"], rec["height"]] * 2, np.float64)
            targets[i] = encode(np.asarray(rec["boxes"], np.float64) / scale, rec["labels"],
                                priors)
    return images, targets, list(dataset)


def _batches(images, targets, mirror, batch_size, seed):
    import keras

    class Batches(keras.utils.PyDataset):
        """Shuffled batches of the in-memory arrays, half of them flipped."""

        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images))

        def __len__(self):
            return len(images) // batch_size

        def __getitem__(self, index):
            idx = np.sort(self.order[index * batch_size:(index + 1) * batch_size])
            x = images[idx].astype(np.float32)
            y = targets[idx]
            flip = self.rng.random(len(idx)) < 0.5
            if flip.any():
                x[flip] = x[flip, :, ::-1]
                y = y.copy()
                y[flip] = flip_targets(y[flip], mirror)
            return x, y

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(images))

    return Batches()


def predict_detections(model, images, records, priors, batch_size=32, score_threshold=0.01,
                       nms_iou=0.45, max_detections=200):
    """Per-image detections (pixel xyxy of the original image size) for
    `voc_map`."""
    import tensorflow as tf

    out = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].astype(np.float32)
        raw = np.asarray(model.predict_on_batch(x), np.float32)
        boxes = decode(raw[..., :4], priors).astype(np.float32)
        logits = raw[..., 4:]
        prob = np.exp(logits - logits.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        # TF wants (y1, x1, y2, x2)
        yx = boxes[..., [1, 0, 3, 2]]
        nms = tf.image.combined_non_max_suppression(
            yx[:, :, None, :], prob[..., 1:], max_output_size_per_class=100,
            max_total_size=max_detections, iou_threshold=nms_iou,
            score_threshold=score_threshold, clip_boxes=True)
        b, s, c, v = (np.asarray(t) for t in nms)
        for j in range(len(x)):
            rec = records[start + j]
            n = int(v[j])
            scale = np.array([rec["width"], rec["height"]] * 2, np.float64)
            out.append({"boxes": b[j, :n][:, [1, 0, 3, 2]].astype(np.float64) * scale,
                        "scores": s[j, :n].astype(np.float64),
                        "labels": c[j, :n].astype(np.int64)})
    return out


def evaluate_map(model, images, records, priors, num_classes, class_names=None):
    """VOC07 11-point mAP at IoU 0.5, by keras_ssd's `voc_map`."""
    from keras_ssd.evaluation.voc import voc_map

    dets = predict_detections(model, images, records, priors)
    return float(voc_map(dets, records, num_classes, use_07_metric=True,
                         class_names=class_names)["mAP"])


# --------------------------------------------------------------------------
# Training for a wall-clock budget
# --------------------------------------------------------------------------

def describe_model(num_classes=10):
    """`{"params", "macs", "priors"}` of the network for `num_classes`."""
    model = build_model(num_classes)
    return {"params": int(model.count_params()), "macs": count_macs(model),
            "priors": int(len(make_priors()))}


def train_baseline(train_dir, test_dir_or_split, class_names, minutes,
                   snapshots=(5, 10, 20), seed=0, train_split="trainval",
                   batch_size=BATCH_SIZE, verbose=1):
    """Train the tiny SSD for `minutes` of training time; mAP at snapshots.

    Args:
        train_dir: a VOC-layout folder; its `train_split` is trained on.
        test_dir_or_split: a VOC folder (its "test" split is used) or a
            split name of `train_dir`.
        class_names: the class names (label order).
        minutes: the training-time budget.
        snapshots: times (minutes) at which the model is evaluated; those
            beyond `minutes` are dropped and `minutes` itself is added.
        seed: weights, shuffling and flips.
        train_split: the split of `train_dir` to train on.
        batch_size: images per step.
        verbose: 1 prints progress.

    Returns:
        list of dicts, one per snapshot: `minutes` (the snapshot), `epochs`
        (fractional epochs done), `train_seconds` (training clock when it
        was taken), `mAP` (VOC07 on the test split), `images_per_second`
        (training images per second of training time), `steps`, `loss`
        (the running mean of the current epoch).
    """
    import os

    import keras

    from keras_ssd.data import VOCDataset

    class_names = list(class_names)
    if os.path.isdir(os.fspath(test_dir_or_split)):
        test_set = VOCDataset(test_dir_or_split, "test", class_names=class_names)
    else:
        test_set = VOCDataset(train_dir, test_dir_or_split, class_names=class_names)
    train_set = VOCDataset(train_dir, train_split, class_names=class_names)
    priors = make_priors()
    mirror = mirror_index()
    t0 = time.perf_counter()
    images, targets, _ = load_split(train_set, priors)
    test_images, _, test_records = load_split(test_set)
    if verbose:
        pos = (targets[..., 4] > 0).sum(1)
        print(f"baseline: encoded {len(images)} training images and resized "
              f"{len(test_images)} test images in {time.perf_counter() - t0:.1f} s; "
              f"{len(priors)} priors, {pos.mean():.1f} positive per image")
    if len(images) < batch_size:
        batch_size = max(1, len(images))
    keras.utils.set_random_seed(seed)
    model = build_model(len(class_names), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=multibox_loss)
    if verbose:
        print(f"baseline model: {model.count_params():,} parameters, "
              f"{count_macs(model) / 1e9:.3f} G multiply-adds per {IMAGE_SIZE}px image")
    stops = sorted({float(s) for s in snapshots if 0 < float(s) < minutes}
                   | {float(minutes)})
    data = _batches(images, targets, mirror, batch_size, seed)
    steps_per_epoch = len(data)
    results = []

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()
            self.paused = 0.0
            self.steps = 0

        def elapsed(self):
            return time.perf_counter() - self.start - self.paused

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            train_seconds = self.elapsed()
            while stops and train_seconds >= 60.0 * stops[0]:
                snap = stops.pop(0)
                t = time.perf_counter()
                m_ap = evaluate_map(self.model, test_images, test_records, priors,
                                    len(class_names), class_names)
                self.paused += time.perf_counter() - t
                epochs = self.steps / steps_per_epoch
                loss = (logs or {}).get("loss")
                results.append({"minutes": snap, "epochs": epochs,
                                "train_seconds": train_seconds, "mAP": m_ap,
                                "loss": None if loss is None else float(loss),
                                "images_per_second":
                                    self.steps * batch_size / train_seconds,
                                "steps": self.steps})
                if verbose:
                    print(f"baseline @ {snap:g} min: {epochs:.2f} epochs, "
                          f"{results[-1]['images_per_second']:.1f} img/s, mAP {m_ap:.4f} "
                          f"(evaluated in {time.perf_counter() - t:.1f} s, clock paused)")
            if not stops:
                self.model.stop_training = True

    model.fit(data, epochs=1_000_000, callbacks=[Clock()], verbose=0)
    return results


__all__ = ["build_model", "count_macs", "decode", "describe_model", "encode",
           "evaluate_map", "flip_targets", "iou_matrix", "make_priors", "mirror_index",
           "multibox_loss", "train_baseline"]
