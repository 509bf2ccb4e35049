"""SSD300 training step at batch 8: ours (`model.fit`) vs torchvision.

Ours: `SSD300(num_classes=20)` compiled with `SSDLoss()` and
`keras.optimizers.SGD(1e-3, momentum=0.9)` plus the package's runtime
defaults (`keras_ssd.accel.runtime.compile_defaults()`), trained through one
`model.fit` epoch of `STEPS` batches of 8 random images with targets from
`TargetEncoder` (encoding is the data pipeline's job, measured separately);
the figure is the epoch's wall time / `STEPS`. The batches come from a
`keras.utils.PyDataset`, as `keras_ssd.train_detector` feeds `fit` (an
`SSDSequence`). Not from numpy arrays: for arrays Keras builds a `tf.data`
pipeline with autotuned `map` and `prefetch`, and on this 2-core CPU that
made the same step take 7.8 s or 13.7 s depending on the run (autotuning
off: always 7.8 s); a PyDataset gets 7.8 s every time.

Theirs: torchvision `ssd300_vgg16(weights=None, weights_backbone=None,
num_classes=21)` in train mode, `torch.optim.SGD(lr=1e-3, momentum=0.9)`,
one step = `loss = sum(model(images, targets).values())`, `zero_grad`,
`backward`, `step` on 8 images of 300x300 (its own transform, matching and
hard-negative mining included, as in its reference training script), run
`STEPS` times per timed call, like ours.

The same compiled model is also timed through the two other ways a Keras
user feeds a step, `fit(x, y)` on numpy arrays (`STEPS` batches) and
`STEPS` calls of `train_on_batch`, each against the same torchvision
figure.

One timed call per side per round, alternating. Also with the mixed-precision
switch (ours `mixed_bfloat16`) vs torchvision under bfloat16 autocast.
"""

import numpy as np

from benchmarks import common

SECTION = "train"

#: Training steps per timed call, on both sides.
STEPS = 3


def make_batch(batch=8, num_classes=20, seed=0):
    """Random images (B, 300, 300, 3) 0..255 and per-image boxes/labels."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch, 300, 300, 3)).astype("float32")
    boxes, labels = [], []
    for _ in range(batch):
        g = int(rng.integers(1, 8))
        c = rng.uniform(0.15, 0.85, (g, 2))
        s = rng.uniform(0.1, 0.5, (g, 2))
        b = np.clip(np.concatenate([c - s / 2, c + s / 2], 1), 0.0, 1.0).astype("float32")
        boxes.append(b)
        labels.append(rng.integers(0, num_classes, g))
    return images, boxes, labels


def _epoch(images, targets, steps):
    """A `keras.utils.PyDataset` serving the same pre-encoded batch `steps`
    times, with 2 loader threads (as `train_detector` sets up)."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, index):
            if not 0 <= index < steps:
                raise IndexError(index)
            return images, targets

    return Batches(workers=2, use_multiprocessing=False)


def build_ours(images, boxes, labels, precision="float32"):
    import keras

    from benchmarks.forward import ssd300
    from keras_ssd.accel import runtime
    from keras_ssd.targets import TargetEncoder
    from keras_ssd.losses import SSDLoss

    model = ssd300(precision)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss(),
                  **runtime.compile_defaults())
    encoder = TargetEncoder.from_config(model.config)
    y = np.stack([encoder(b, l) for b, l in zip(boxes, labels)])
    epoch = _epoch(images, y, STEPS)
    x_all = np.concatenate([images] * STEPS)
    y_all = np.concatenate([y] * STEPS)

    def fit_pydataset():
        model.fit(epoch, epochs=1, verbose=0)

    def fit_arrays():
        model.fit(x_all, y_all, batch_size=len(images), epochs=1, verbose=0, shuffle=False)

    def train_on_batch():
        for _ in range(STEPS):
            model.train_on_batch(images, y)

    return model, {"fit on a PyDataset": fit_pydataset, "fit on arrays": fit_arrays,
                   "train_on_batch": train_on_batch}


def build_torchvision(images, boxes, labels, bf16=False):
    torch, _ = common.import_torchvision()
    if torch is None:
        return None
    from torchvision.models.detection import ssd300_vgg16

    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    imgs = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1) / 255.0)).float()
            for im in images]
    targets = [{"boxes": torch.from_numpy(b * 300.0).float(),
                "labels": torch.from_numpy(np.asarray(l) + 1).long()}
               for b, l in zip(boxes, labels)]

    def step():
        for _ in range(STEPS):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                losses = model(imgs, targets)
                loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return step


#: The ways a Keras user feeds a training step: `train_detector`'s (a
#: PyDataset), numpy arrays, and one batch at a time.
FEEDS = ("fit on a PyDataset", "fit on arrays", "train_on_batch")


def run(quick=False, batch=8, precisions=("fp32", "bf16")):
    images, boxes, labels = make_batch(batch)
    rows = []
    for precision in precisions:
        bf16 = precision == "bf16"
        _, feeds = build_ours(images, boxes, labels,
                              precision="bfloat16" if bf16 else "float32")
        theirs = build_torchvision(images, boxes, labels, bf16=bf16)
        if theirs is None:
            print(common.TORCH_MISSING)
        sides = dict(feeds) if not bf16 else {FEEDS[0]: feeds[FEEDS[0]]}
        sides["torchvision"] = theirs
        res = common.alternate(sides, warmup=1, rounds=2 if quick else 3)
        tv_ips = (STEPS * batch / res["torchvision"]["median"]
                  if theirs is not None else None)
        for feed in sides:
            if feed == "torchvision" or feed not in res:
                continue
            ours_ips = STEPS * batch / res[feed]["median"]
            label = ("model.fit epoch, SGD momentum" if feed == FEEDS[0]
                     else f"{feed}, SGD momentum")
            rows.append(common.row(
                SECTION, f"train step {precision} ({label})", ours_ips, "img/s",
                theirs=tv_ips, floor=1.2 if theirs is not None and not bf16 else None,
                batch=batch,
                note=f"vs torchvision SSD300 train step; {STEPS} steps per timed call"
                     + (" under bf16 autocast; ours mixed_bfloat16" if bf16 else "")))
        del feeds, theirs, sides
    return rows
