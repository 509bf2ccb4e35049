"""How fast this machine trains a model: a few steps on random images.

A time budget says how long a run may train, not how much it can learn in
that time; that depends on the machine (a 2-core AVX2 CPU trains the tiny
model several times slower than a 2-core AVX-512 one) and on the backend.
`keras-ssd train --time-limit` therefore measures the speed before it fits
the input size and the batch to the budget
(`keras_ssd.training.fitted_defaults`). The probe trains a throw-away copy
of the network, so the real run starts from its own initial weights, and
its cost (tracing and a few steps, seconds for the tiny model) comes on top
of the budget, as model building does.

Given the training set, the probe times the real input pipeline too
(reading, augmenting and encoding a batch) and adds it to the step: on a
small CPU the loader threads share the cores with the network, and timing
the network alone overstated the speed of a real run on a 2-core machine
(docs/training.md, "Defaults fitted to the budget"). Where loading overlaps the network on spare cores, the
sum understates the speed, so the fitted input and batch err on the small
side.
"""

import time

import numpy as np

#: Steps timed after the first (which includes tracing): their median is the
#: step time.
PROBE_STEPS = 3


def measure_training_speed(model, batch_size, steps=PROBE_STEPS, seed=0, dataset=None,
                           augmentation=None, on_error="raise"):
    """Training images per second of `model` at `batch_size` on this machine.

    Compiles `model` with AdamW and `SSDLoss` (the runtime's `jit_compile`
    default, as a training run compiles) and trains it on random images
    with a few random positive priors per image, or, given `dataset`, on
    its augmented batches, the time to make each batch added to the step.
    `model` is changed: pass a fresh copy built for the probe, not the model
    you will train.

    Args:
        model: an `SSD` (square or not).
        batch_size: images per step.
        steps: steps to time after the first; the median is used.
        seed: for the random batch and the augmentation.
        dataset: the training set (records interface), or None for random
            images and no loading time.
        augmentation: `SSDSequence`'s augmentation options for `dataset`.
        on_error: `SSDSequence`'s, for an unreadable image of `dataset`
            (`"raise"`: its error, naming the file; `"skip"`: logged).

    Returns:
        float, images per second.

    Example:

    >>> from keras_ssd.models import build_model
    >>> probe = build_model("tiny", class_names=train_set.class_names)
    >>> images_per_second = measure_training_speed(probe, 32, dataset=train_set)
    """
    import keras

    from keras_ssd.accel.runtime import compile_defaults
    from keras_ssd.losses import SSDLoss

    if int(batch_size) < 1 or int(steps) < 1:
        raise ValueError(f"measure_training_speed: batch_size and steps must be >= 1, "
                         f"got {batch_size!r} and {steps!r}")
    batch_size = int(batch_size)
    batches, load_times = _batches(model, batch_size, int(steps) + 1, seed, dataset,
                                   augmentation, on_error)
    model.compile(**compile_defaults(None, optimizer=keras.optimizers.AdamW(1e-4),
                                     loss=SSDLoss()))
    model.train_on_batch(*batches[0])  # traces
    times = []
    for x, y in batches[1:]:
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times) + np.median(load_times))


def _batches(model, batch_size, count, seed, dataset, augmentation, on_error):
    """`count` `(images, targets)` batches and the seconds each took to make
    (zeros for random ones)."""
    if dataset is not None:
        from keras_ssd.data import SSDSequence

        sequence = SSDSequence(dataset, model.config, batch_size=batch_size, augment=True,
                               seed=seed, augmentation=augmentation or None,
                               on_error=on_error)
        batches, times = [], []
        for index in range(count):
            start = time.perf_counter()
            batches.append(sequence[index % len(sequence)])
            times.append(time.perf_counter() - start)
        return batches, times
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in model.config.image_shape[:2])
    num_priors = int(model.config.num_anchors)
    x = rng.uniform(0, 255, (batch_size, height, width, 3)).astype("float32")
    y = np.zeros((batch_size, num_priors, 5), "float32")
    for row in y:  # a few matched priors per image, as a real batch has
        picked = rng.choice(num_priors, size=min(8, num_priors), replace=False)
        row[picked, :4] = rng.normal(0, 1, (len(picked), 4))
        row[picked, 4] = rng.integers(1, model.config.num_classes + 1, len(picked))
    return [(x, y)] * count, [0.0]
