"""Small building blocks shared by the SSD backbones and heads."""

import keras

from keras_ssd.layers.l2_normalization import L2Normalization

NORMALIZATIONS = ("l2", "batchnorm", "none")


def conv(x, filters, kernel_size, name, strides=1, padding="same", dilation_rate=1,
         activation="relu", regularizer=None, use_bias=True):
    """A `keras.layers.Conv2D` with an explicit name and the model's kernel
    regularizer.

    Models hold plain convolutions: speed-ups for one kind of machine (the
    Winograd path of float32 CPU inference) are applied when a model is run
    for inference, by `keras_ssd.accel.prepare_for_inference`.
    """
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        activation=activation,
        use_bias=use_bias,
        kernel_regularizer=regularizer,
        name=name,
    )(x)


def conv_pad1(x, filters, kernel_size, name, strides=1, regularizer=None):
    """Caffe-style `pad=1` convolution: `ZeroPadding2D(1)` then a "valid"
    convolution. Unlike Keras' `padding="same"` with stride 2, which pads
    (0, 1), this pads one pixel on every side as Caffe and PyTorch do."""
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return conv(x, filters, kernel_size, name, strides=strides, padding="valid",
                regularizer=regularizer)


def extra_block(x, name, mid_filters, out_filters, kernel_size=3, strides=2, pad=1,
                regularizer=None):
    """An SSD extra feature layer: 1x1 bottleneck, then a 3x3 (or kxk) conv.

    `pad=1` pads one pixel on each side (Caffe), `pad=0` is a valid conv.
    Layers are named `{name}_1` and `{name}_2` (Caffe: `conv6_1`, `conv6_2`).
    """
    x = conv(x, mid_filters, 1, f"{name}_1", regularizer=regularizer)
    if pad:
        if pad != 1:
            raise ValueError(f"extra_block: pad must be 0 or 1, got {pad!r}")
        return conv_pad1(x, out_filters, kernel_size, f"{name}_2", strides=strides,
                         regularizer=regularizer)
    return conv(x, out_filters, kernel_size, f"{name}_2", strides=strides,
                padding="valid", regularizer=regularizer)


def normalize_source(x, normalization, name):
    """The normalisation SSD puts on a shallow source map (VGG conv4_3).

    - `"l2"`: `L2Normalization` with a learnable scale initialised to 20
      (the paper).
    - `"batchnorm"`: a `BatchNormalization` layer instead (the variant of
      some Keras tutorials).
    - `"none"`: unchanged.

    Returns `(tensor, source_name)`.
    """
    if normalization == "l2":
        return L2Normalization(scale_init=20.0, name=f"{name}_norm")(x), f"{name}_norm"
    if normalization == "batchnorm":
        return keras.layers.BatchNormalization(name=f"{name}_bn")(x), f"{name}_bn"
    if normalization == "none":
        return x, name
    raise ValueError(
        f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
    )


def kernel_regularizer(weight_decay):
    """The L2 kernel regularizer implementing SGD weight decay `weight_decay`.

    Keras' `L2(l)` adds `l * sum(w ** 2)` to the loss, whose gradient is
    `2 * l * w`; SGD weight decay `wd` adds `wd * w` to the gradient, so
    `l = wd / 2`. Returns `None` for `weight_decay == 0`.
    """
    try:
        wd = float(weight_decay)
    except (TypeError, ValueError):
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if not wd >= 0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    if wd == 0:
        return None
    return keras.regularizers.L2(wd / 2.0)
