"""`WinogradConv2D`: a Keras `Conv2D` whose float32 CPU inference may run as
a Winograd convolution (`keras_ssd.accel.winograd`), and the pieces
`keras_ssd.accel.prepare_for_inference` uses to run plain `Conv2D` layers
the same way (`eligible`, `auto_tile`, `winograd_call`)."""

import keras
from keras import ops

from keras_ssd.accel import winograd

#: Output tile sizes `winograd_tile` accepts besides "auto": 0 = never.
TILES = (0, 2, 4)


def auto_tile(height, width, in_channels, out_channels):
    """The Winograd output tile that `"auto"` picks for a 3x3 stride-1 layer
    on a `height x width x in_channels` input: 4, 2, or 0 (direct).

    From per-layer measurements of SSD300's VGG16 convolutions at batch 1 in
    float32 on a 2-core AVX-512 CPU (`benchmarks/winograd.py`): F(4x4) wins
    on the 150x150 and 75x75 maps with at least 128 channels (e.g. conv3_2:
    31 -> 19 ms), F(2x2) on the 38x38 maps with 256-512 channels (conv4_2:
    31 -> 23 ms), and the direct convolution everywhere else (few channels,
    where the transforms cost more than the saved multiplies, and the 19x19
    maps, where oneDNN is already efficient). On SSD512's larger maps the
    same rule picks F4 for conv4_x (64x64) and F2 for conv5_x (32x32),
    again the fastest of the three there.
    """
    side = min(int(height), int(width))
    if out_channels < 128:
        return 0
    if side >= 64 and in_channels >= 128:
        return 4
    if side >= 24 and in_channels >= 256:
        return 2
    return 0


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
            shape by `auto_tile`), or 2 or 4 (force F(2x2, 3x3) or
            F(4x4, 3x3); the layer must then be eligible), or 0 (never).
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

    def _eligible(self):
        return eligible(self)

    def build(self, input_shape):
        super().build(input_shape)
        if self.winograd_tile == 0:
            self._tile = 0
            return
        fits = self._eligible() and None not in tuple(input_shape[1:3])
        if self.winograd_tile == "auto":
            self._tile = auto_tile(input_shape[1], input_shape[2], input_shape[-1],
                                   self.filters) if fits else 0
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
        configuration and the current backend, device and dtype."""
        if not self._tile or winograd.is_disabled():
            return 0
        return self._tile if runs_on_this_machine(self.compute_dtype) else 0

    def call(self, inputs, training=None):
        tile = 0 if training else self.active_tile
        if not tile:
            return super().call(inputs)
        return winograd_call(self, inputs, tile)

    def get_config(self):
        config = super().get_config()
        config["winograd_tile"] = self.winograd_tile
        return config
