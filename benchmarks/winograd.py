"""Per-layer Winograd vs direct convolution on SSD300's VGG16 shapes.

For each 3x3 stride-1 convolution shape of SSD300's VGG16 (input side,
input and output channels), and SSD512's where they differ, at batch 1 in
float32: the direct convolution
(`keras.ops.conv`, oneDNN on TensorFlow) against `keras_ssd.accel.winograd`'s
F(2x2, 3x3) and F(4x4, 3x3), each a compiled function, timed alternately.
The fastest choice per layer is what `keras_ssd.accel.winograd_conv.
auto_tile` encodes; the row's note says whether they agree. Also the
largest deviation from the direct result, relative to its largest value.
"""

import numpy as np

from benchmarks import common

SECTION = "winograd"

#: (name, input side, input channels, output channels) of SSD300's VGG16
#: 3x3 stride-1 convolutions (conv1_1 aside).
LAYERS = (
    ("conv1_2", 300, 64, 64),
    ("conv2_1", 150, 64, 128),
    ("conv2_2", 150, 128, 128),
    ("conv3_1", 75, 128, 256),
    ("conv3_2", 75, 256, 256),
    ("conv4_1", 38, 256, 512),
    ("conv4_2", 38, 512, 512),
    ("conv5_1", 19, 512, 512),
    # SSD512's larger maps, where `auto_tile` must choose differently.
    ("SSD512 conv2_2", 256, 128, 128),
    ("SSD512 conv3_2", 128, 256, 256),
    ("SSD512 conv4_1", 64, 256, 512),
    ("SSD512 conv4_2", 64, 512, 512),
    ("SSD512 conv5_1", 32, 512, 512),
)


def _functions(x, kernel):
    import tensorflow as tf
    from keras import ops

    from keras_ssd.accel import winograd

    fns = {"direct": tf.function(lambda: ops.conv(x, kernel, padding="same"))}
    for m in (2, 4):
        fns[f"F{m}"] = tf.function(lambda m=m: winograd.winograd_conv3x3(x, kernel, m))
    return fns


def run(quick=False, batch=1):
    import keras

    if keras.backend.backend() != "tensorflow":
        print("winograd: TensorFlow backend only (the path it measures is TensorFlow's)")
        return []
    import tensorflow as tf

    from keras_ssd.accel.winograd_conv import auto_tile

    rows = []
    rng = np.random.default_rng(0)
    for name, side, cin, cout in LAYERS:
        x = tf.constant(rng.normal(size=(batch, side, side, cin)).astype("float32"))
        kernel = tf.constant(rng.normal(0, 0.05, (3, 3, cin, cout)).astype("float32"))
        fns = _functions(x, kernel)
        reference = fns["direct"]().numpy()
        scale = float(np.abs(reference).max())
        errors = {k: float(np.abs(f().numpy() - reference).max()) / scale
                  for k, f in fns.items() if k != "direct"}
        res = common.alternate({k: (lambda f=f: f().numpy()) for k, f in fns.items()},
                               warmup=2, rounds=3 if quick else 7)
        ms = {k: 1e3 * v["median"] for k, v in res.items()}
        best = min(ms, key=ms.get)
        chosen = auto_tile(side, side, cin, cout)
        chosen_name = f"F{chosen}" if chosen else "direct"
        for m in (2, 4):
            key = f"F{m}"
            rows.append(common.row(
                SECTION, f"{name} {side}x{side}x{cin}->{cout} F({m}x{m},3x3)", ms[key], "ms",
                theirs=ms["direct"], higher_is_better=False, batch=batch,
                note=f"theirs = direct conv; error {errors[key]:.1e} of max; fastest "
                     f"{best}, auto_tile picks {chosen_name}"))
    return rows


if __name__ == "__main__":
    common.set_threads(2, with_torch=False)
    for r in run(quick=True):
        print(r)
