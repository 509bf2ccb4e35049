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
"""

import time

import numpy as np

#: Steps timed after the first (which includes tracing): their median is the
#: step time.
PROBE_STEPS = 3


def measure_training_speed(model, batch_size, steps=PROBE_STEPS, seed=0):
    """Training images per second of `model` at `batch_size` on this machine.

    Compiles `model` with AdamW and `SSDLoss` (the runtime's `jit_compile`
    default, as a training run compiles) and trains it on random images
    with a few random positive priors per image. `model` is changed: pass a
    fresh copy built for the probe, not the model you will train.

    Args:
        model: an `SSD` (square or not).
        batch_size: images per step.
        steps: steps to time after the first; the median is used.
        seed: for the random batch.

    Returns:
        float, images per second.

    Example:

    >>> from keras_ssd.models import build_model
    >>> measure_training_speed(build_model("tiny", num_classes=3), 16)
    37.2
    """
    import keras

    from keras_ssd.accel.runtime import compile_defaults
    from keras_ssd.losses import SSDLoss

    if int(batch_size) < 1 or int(steps) < 1:
        raise ValueError(f"measure_training_speed: batch_size and steps must be >= 1, "
                         f"got {batch_size!r} and {steps!r}")
    batch_size = int(batch_size)
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in model.config.image_shape[:2])
    num_priors = int(model.config.num_anchors)
    x = rng.uniform(0, 255, (batch_size, height, width, 3)).astype("float32")
    y = np.zeros((batch_size, num_priors, 5), "float32")
    for row in y:  # a few matched priors per image, as a real batch has
        picked = rng.choice(num_priors, size=min(8, num_priors), replace=False)
        row[picked, :4] = rng.normal(0, 1, (len(picked), 4))
        row[picked, 4] = rng.integers(1, model.config.num_classes + 1, len(picked))
    model.compile(**compile_defaults(None, optimizer=keras.optimizers.AdamW(1e-4),
                                     loss=SSDLoss()))
    model.train_on_batch(x, y)  # traces
    times = []
    for _ in range(int(steps)):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))
