"""`WinogradConv2D`: a Keras `Conv2D` whose float32 CPU inference may run as
a Winograd convolution (`keras_ssd.accel.winograd`), and the pieces
`keras_ssd.accel.prepare_for_inference` uses to run plain `Conv2D` layers
the same way (`eligible`, `auto_tile`, `winograd_call`).

The tile per layer shape follows the machine (`auto_tile`): the measured
table (`table_tile`) on the CPU kind it was measured on, a timing at first
use, cached per machine, elsewhere; `KERAS_SSD_WINOGRAD=off|auto|table|
measure` forces the choice (`tile_source`)."""

import os
import statistics
import threading
import time
import warnings

import numpy as np

import keras
from keras import ops

from keras_ssd.accel import machine, winograd

#: Output tile sizes `winograd_tile` accepts besides "auto": 0 = never.
TILES = (0, 2, 4)

#: Forces how `auto_tile` chooses: `off` (never Winograd), `table` (the
#: measured table, `table_tile`), `measure` (time the candidates on this
#: machine at first use, `measured_tile`), `auto` (the default: `table` on
#: the kinds in `TABLE_KINDS`, `measure` elsewhere).
WINOGRAD_ENV = "KERAS_SSD_WINOGRAD"
MODES = ("auto", "off", "table", "measure")

#: The machine kinds `table_tile` was measured on: a 2-core AMD Zen 4
#: (AVX-512, AVX512_BF16). Every other kind measures at first use.
TABLE_KINDS = frozenset({"x86-avx512-bf16"})

#: A Winograd tile is chosen by measurement only when its median is below
#: this share of the direct convolution's (run-to-run noise is a few %).
MARGIN = 0.95

#: Per shape: timed rounds (each runs direct, F2 and F4 once, alternating),
#: at least `MIN_ROUNDS` of them, and no more once `BUDGET_S` seconds of
#: timed calls are spent. Tracing and compilation (one untimed call each)
#: come on top: about 1-3 s per shape in all.
ROUNDS, MIN_ROUNDS, BUDGET_S = 5, 3, 1.0


def table_tile(height, width, in_channels, out_channels):
    """The Winograd output tile of the measured table for a 3x3 stride-1
    layer on a `height x width x in_channels` input: 4, 2, or 0 (direct).

    From per-layer measurements of SSD300's VGG16 convolutions at batch 1 in
    float32 on a 2-core AMD Zen 4 (AVX-512, AVX512_BF16;
    `benchmarks/winograd.py`): F(4x4) wins on the 150x150 and 75x75 maps
    with at least 128 channels (e.g. conv3_2), F(2x2) on the 38x38 maps
    with 256-512 channels (conv4_2; figures in docs/performance.md), and the direct
    convolution everywhere else (few channels, where the transforms cost
    more than the saved multiplies, and the 19x19 maps, where oneDNN is
    already efficient). On SSD512's larger maps the same rule picks F4 for
    conv4_x (64x64) and F2 for conv5_x (32x32), again the fastest of the
    three there. `auto_tile` uses it on the kinds of `TABLE_KINDS`.
    """
    side = min(int(height), int(width))
    if out_channels < 128:
        return 0
    if side >= 64 and in_channels >= 128:
        return 4
    if side >= 24 and in_channels >= 256:
        return 2
    return 0


def winograd_mode():
    """`KERAS_SSD_WINOGRAD` (`auto` when unset).

    Raises:
        ValueError: the variable holds something else than `MODES`.
    """
    value = os.environ.get(WINOGRAD_ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"environment variable {WINOGRAD_ENV} must be one of {MODES}, "
                         f"got {value!r}")
    return value


def tile_source(kind=None):
    """How `auto_tile` chooses here: `"off"`, `"table"` or `"measure"`.

    `KERAS_SSD_WINOGRAD` decides when set to other than `auto`; otherwise
    `"table"` on the kinds of `TABLE_KINDS` and `"measure"` on the others.

    Args:
        kind: a machine kind; defaults to `machine.machine_kind()`.
    """
    mode = winograd_mode()
    if mode != "auto":
        return mode
    kind = machine.machine_kind() if kind is None else kind
    return "table" if kind in TABLE_KINDS else "measure"


def auto_tile(height, width, in_channels, out_channels):
    """The Winograd output tile that `"auto"` picks for a 3x3 stride-1 layer
    on a `height x width x in_channels` input on this machine: 4, 2, or 0
    (direct).

    Follows `tile_source()`: `table_tile` on the kinds it was measured on,
    else `measured_tile` (timed here at first use, cached per machine in
    `keras_ssd.accel.machine.tuning_path()`), or 0 with
    `KERAS_SSD_WINOGRAD=off`.
    """
    source = tile_source()
    if source == "off":
        return 0
    if source == "table":
        return table_tile(height, width, in_channels, out_channels)
    return measured_tile(height, width, in_channels, out_channels)


def worth_measuring(height, width, in_channels, out_channels):
    """False for shapes that stay direct without measuring: under 32
    channels in or out, or maps under 8 pixels a side, where the transforms
    cost more than the multiplies they save on every CPU measured."""
    return (min(int(height), int(width)) >= 8 and int(in_channels) >= 32
            and int(out_channels) >= 32)


def _threads():
    """TensorFlow's intra-op thread count (its default: the usable cores)."""
    try:
        import tensorflow as tf

        n = tf.config.threading.get_intra_op_parallelism_threads()
    except Exception:  # noqa: BLE001 - no TensorFlow: count cores
        n = 0
    if n:
        return int(n)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shape_key(height, width, in_channels, out_channels, threads=None):
    """The tuning-cache key of a shape, e.g. `"75x75x128->256 threads=2"`."""
    threads = _threads() if threads is None else threads
    return f"{int(height)}x{int(width)}x{int(in_channels)}->{int(out_channels)} threads={threads}"


def measure_candidates(height, width, in_channels, out_channels):
    """Milliseconds per call of the direct convolution and of Winograd F2
    and F4 for one image of this shape, here, in float32 (TensorFlow).

    Each candidate is a `tf.function` called once untimed (tracing, XLA and
    oneDNN set-up), then the three are timed alternately (the order
    reversed every round) for `ROUNDS` rounds, or fewer once `BUDGET_S`
    seconds are spent (never under `MIN_ROUNDS`); the figure is the median.
    Runs eagerly even when called while a graph is traced.

    Returns:
        `{"direct": ms, "F2": ms, "F4": ms}`.
    """
    import tensorflow as tf

    with tf.init_scope():
        rng = np.random.default_rng(0)
        x = tf.constant(rng.standard_normal((1, height, width, in_channels), np.float32))
        kernel = tf.constant(
            rng.normal(0, 0.05, (3, 3, in_channels, out_channels)).astype("float32"))
        fns = {"direct": tf.function(lambda: ops.conv(x, kernel, padding="same"))}
        for m in (2, 4):
            fns[f"F{m}"] = tf.function(lambda m=m: winograd.winograd_conv3x3(x, kernel, m))
        for fn in fns.values():
            fn().numpy()
        times = {name: [] for name in fns}
        names, spent = list(fns), 0.0
        for r in range(ROUNDS):
            if r >= MIN_ROUNDS and spent >= BUDGET_S:
                break
            for name in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                fns[name]().numpy()
                dt = time.perf_counter() - t0
                times[name].append(dt)
                spent += dt
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def choose_tile(milliseconds, margin=MARGIN):
    """The tile to use given `measure_candidates`' figures: the faster
    Winograd tile when it beats `margin` x the direct time, else 0."""
    direct = milliseconds["direct"]
    tile = min((2, 4), key=lambda m: milliseconds[f"F{m}"])
    return tile if milliseconds[f"F{tile}"] < margin * direct else 0


_MEASURE_LOCK = threading.Lock()


def measured_tile(height, width, in_channels, out_channels):
    """The tile measured fastest on this machine for a shape (4, 2 or 0).

    The first time a shape is seen on a machine kind (per CPU model and
    thread count), `measure_candidates` times it and the choice goes into
    the kind's tuning cache (`keras_ssd.accel.machine.TuningCache`); later
    calls, in this process or another, read it back. Shapes that
    `worth_measuring` rules out stay direct. A measurement that fails
    gives a warning and the direct convolution (for this process).
    """
    if not worth_measuring(height, width, in_channels, out_channels):
        return 0
    cache = machine.tuning_cache()
    key = shape_key(height, width, in_channels, out_channels)
    record = cache.get("winograd", key)
    if record is None or record.get("tile") not in TILES:
        with _MEASURE_LOCK:
            record = cache.get("winograd", key)
            if record is None or record.get("tile") not in TILES:
                record = _measure(cache, key, height, width, in_channels, out_channels)
    return int(record["tile"])


def _measure(cache, key, height, width, in_channels, out_channels):
    try:
        ms = measure_candidates(int(height), int(width), int(in_channels),
                                int(out_channels))
        record = {"tile": choose_tile(ms), "ms": {k: round(float(v), 4) for k, v in ms.items()},
                  "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    except Exception as exc:  # noqa: BLE001 - a tuning failure must not stop inference
        warnings.warn(f"keras-ssd could not time the Winograd candidates for {key} "
                      f"({type(exc).__name__}: {exc}); using the direct convolution",
                      RuntimeWarning, stacklevel=4)
        record = {"tile": 0, "error": f"{type(exc).__name__}: {exc}"}
        cache.put("winograd", key, record, persist=False)
        return record
    cache.put("winograd", key, record)
    return record


def eligible(layer):
    """True when `layer` is a `Conv2D` that Winograd F(m x m, 3 x 3) can
    compute: 3x3, stride 1, undilated, ungrouped, "same"-padded,
    channels-last and not quantized."""
    return (
        isinstance(layer, keras.layers.Conv2D)
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.padding == "same"
        and layer.data_format == "channels_last"
        and getattr(layer, "quantization_mode", None) is None
    )


def runs_on_this_machine(compute_dtype="float32"):
    """True when the Winograd path is the measured faster choice for a layer
    computing in `compute_dtype` here: float32 on the TensorFlow backend on
    a CPU (GPU libraries pick Winograd themselves; F4 in bfloat16 loses too
    much precision)."""
    if compute_dtype != "float32" or keras.backend.backend() != "tensorflow":
        return False
    from keras_ssd.accel.runtime import default_device

    return default_device() == "cpu"


def _winograd_image(conv, inputs, tile):
    kernel = conv.kernel  # a variable, or a tensor when LoRA is enabled
    kernel = getattr(kernel, "value", kernel)
    outputs = winograd.winograd_conv3x3(inputs, kernel, tile)
    if conv.use_bias:
        outputs = ops.add(outputs, ops.reshape(conv.bias, (1, 1, 1, conv.filters)))
    if conv.activation is not None:
        outputs = conv.activation(outputs)
    return outputs


def winograd_call(conv, inputs, tile):
    """`conv(inputs)` for an `eligible` `Conv2D`, computed as Winograd
    F(tile x tile, 3 x 3) with `conv`'s own kernel, bias and activation
    (TensorFlow backend).

    A batch goes through image by image: each image's transformed tiles stay
    in the CPU cache (a whole batch's do not, and then the direct
    convolution is faster), two images in flight so that one's transforms
    overlap the other's matmuls. Measured at batch 8: 1.20x the direct
    convolution; one image in flight: 1.09x; the whole batch at once: 0.91x.
    """
    if inputs.shape[0] == 1:
        return _winograd_image(conv, inputs, tile)
    import tensorflow as tf

    return tf.map_fn(
        lambda image: _winograd_image(conv, image[None], tile)[0],
        inputs,
        parallel_iterations=2,
        fn_output_signature=tf.TensorSpec(
            conv.compute_output_shape(inputs.shape)[1:], conv.compute_dtype),
    )


@keras.saving.register_keras_serializable(package="keras_ssd")
class WinogradConv2D(keras.layers.Conv2D):
    """A `Conv2D` that computes float32 CPU inference with Winograd's
    minimal filtering algorithm where that is faster.

    keras-ssd's builders make plain `Conv2D` layers and apply this path when
    a model is run for inference (`keras_ssd.accel.prepare_for_inference`),
    so saved models and exports hold only standard layers. This class bakes
    the path into a layer of your own model instead; it saves and loads as
    `keras_ssd>WinogradConv2D`.

    The weights, the training path and the results are those of
    `keras.layers.Conv2D` (the outputs agree to float rounding: about 3e-6
    of the largest output with F(2x2, 3x3), 2e-5 with F(4x4, 3x3)). The
    Winograd path is taken only when all of these hold, and otherwise the
    layer runs the ordinary convolution:

    - the layer is a 3x3, stride-1, undilated, ungrouped, "same"-padded,
      channels-last convolution, and `winograd_tile` selects a tile for it;
    - the call is not training and the compute dtype is float32 (Winograd
      F4 in bfloat16 loses too much precision);
    - the backend is TensorFlow on a CPU (GPU libraries choose Winograd
      themselves), and no (deprecated) `keras_ssd.accel.winograd.disabled()`
      context is active.

    A batch goes through the Winograd path image by image (`winograd_call`):
    a whole batch's transformed tiles do not fit in the CPU cache, one
    image's do. Measured
    on a 2-core AVX-512 CPU the path makes the SSD300 float32 forward pass
    about 20% faster at batch 1 and at batch 8.

    Args:
        filters, kernel_size, ...: as `keras.layers.Conv2D`.
        winograd_tile: `"auto"` (the default: a tile chosen from the input
            shape by `auto_tile`, which follows the machine and
            `KERAS_SSD_WINOGRAD`), or 2 or 4 (force F(2x2, 3x3) or
            F(4x4, 3x3); the layer must then be eligible; an explicit tile
            beats the environment), or 0 (never).
        **kwargs: the other `keras.layers.Conv2D` arguments.

    Call arguments:
        inputs: `(B, H, W, C)` tensor.
        training: bool; the Winograd path is used only when it is falsy.

    Returns:
        `(B, H', W', filters)`, as `keras.layers.Conv2D`.

    Example:

    >>> layer = WinogradConv2D(256, 3, padding="same", activation="relu")
    >>> y = layer(np.zeros((1, 75, 75, 128), "float32"))   # F(4x4, 3x3)
    """

    def __init__(self, filters, kernel_size, winograd_tile="auto", **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if winograd_tile != "auto" and (
            isinstance(winograd_tile, bool) or winograd_tile not in TILES
        ):
            raise ValueError(
                f"WinogradConv2D {self.name!r}: winograd_tile must be 'auto' or one of "
                f"{TILES}, got {winograd_tile!r}"
            )
        self.winograd_tile = winograd_tile
        self._tile = 0
        self._auto_shape = None

    def _eligible(self):
        return eligible(self)

    def build(self, input_shape):
        super().build(input_shape)
        self._tile = 0
        self._auto_shape = None
        if self.winograd_tile == 0:
            return
        fits = self._eligible() and None not in tuple(input_shape[1:3])
        if self.winograd_tile == "auto":
            # Chosen when the path can run (`active_tile`): on this machine's
            # rule, which may time the shape once (`auto_tile`).
            if fits:
                self._auto_shape = (int(input_shape[1]), int(input_shape[2]),
                                    int(input_shape[-1]))
            return
        if not fits:
            raise ValueError(
                f"WinogradConv2D {self.name!r}: winograd_tile={self.winograd_tile} needs a "
                "3x3, stride-1, undilated, ungrouped, 'same', channels_last convolution "
                f"on a known spatial size; got kernel {self.kernel_size}, strides "
                f"{self.strides}, dilation {self.dilation_rate}, groups {self.groups}, "
                f"padding {self.padding!r}, {self.data_format}, input {tuple(input_shape)}"
            )
        self._tile = int(self.winograd_tile)

    @property
    def active_tile(self):
        """The tile the Winograd path would use (0: none), given the layer's
        configuration, the current backend, device and dtype, and (for
        `"auto"`) this machine's choice for the layer's shape."""
        if winograd.is_disabled() or not runs_on_this_machine(self.compute_dtype):
            return 0
        if self.winograd_tile == "auto":
            shape = getattr(self, "_auto_shape", None)
            return auto_tile(*shape, self.filters) if shape else 0
        return self._tile

    def call(self, inputs, training=None):
        tile = 0 if training else self.active_tile
        if not tile:
            return super().call(inputs)
        return winograd_call(self, inputs, tile)

    def get_config(self):
        config = super().get_config()
        config["winograd_tile"] = self.winograd_tile
        return config
