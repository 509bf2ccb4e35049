"""The "reduced" VGG16 backbone of the Caffe SSD and its ImageNet weights.

conv1_1..conv5_3 as in VGG16; pools 2x2/2 with Caffe's ceil rounding (SSD300:
75 -> 38 at pool3), pool5 3x3/1 pad 1; fc6 becomes a 3x3 dilation-6 conv with
1024 filters and fc7 a 1x1 conv with 1024 filters, both initialised from
ImageNet's fc1/fc2 by decimation (see `decimate_fc6`, `decimate_fc7`).
"""

import keras
import numpy as np

from keras_ssd.models.blocks import conv, extra_block, normalize_source
from keras_ssd.models.weights_files import (
    check_weights_path,
    imagenet_application,
    load_into,
)

#: (filters, number of 3x3 convs) of VGG16's five blocks.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

#: (name, 1x1 filters, out filters, kernel, stride, pad) of the extra layers.
SSD300_EXTRAS = (
    ("conv6", 256, 512, 3, 2, 1),
    ("conv7", 128, 256, 3, 2, 1),
    ("conv8", 128, 256, 3, 1, 0),
    ("conv9", 128, 256, 3, 1, 0),
)
SSD512_EXTRAS = (
    ("conv6", 256, 512, 3, 2, 1),
    ("conv7", 128, 256, 3, 2, 1),
    ("conv8", 128, 256, 3, 2, 1),
    ("conv9", 128, 256, 3, 2, 1),
    ("conv10", 128, 256, 4, 1, 1),
)


def vgg16_reduced(x, normalization="l2", regularizer=None):
    """VGG16 conv1_1..fc7 (SSD "reduced" variant).

    Returns:
        `(sources, fc7)`: `sources` is `[(name, conv4_3 normalised), ("fc7",
        fc7)]`.
    """
    conv4_3 = None
    for block, (filters, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            x = conv(x, filters, 3, f"conv{block}_{i}", regularizer=regularizer)
        if block == 4:
            conv4_3 = x
        if block < 5:
            # "same" max pooling == Caffe's ceil-mode rounding (75 -> 38).
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"pool{block}")(x)
        else:
            x = keras.layers.MaxPooling2D(3, 1, padding="same", name="pool5")(x)
    x = conv(x, 1024, 3, "fc6", dilation_rate=6, regularizer=regularizer)
    fc7 = conv(x, 1024, 1, "fc7", regularizer=regularizer)
    source, source_name = normalize_source(conv4_3, normalization, "conv4_3")
    return [(source_name, source), ("fc7", fc7)], fc7


def _with_extras(x, sources, extras, regularizer):
    for name, mid, out, kernel, stride, pad in extras:
        x = extra_block(x, name, mid, out, kernel_size=kernel, strides=stride, pad=pad,
                        regularizer=regularizer)
        sources.append((f"{name}_2", x))
    return sources


def ssd300_vgg16_features(x, normalization="l2", regularizer=None):
    """Feature maps of SSD300: conv4_3, fc7, conv6_2 .. conv9_2."""
    sources, x = vgg16_reduced(x, normalization, regularizer)
    return _with_extras(x, sources, SSD300_EXTRAS, regularizer)


def ssd512_vgg16_features(x, normalization="l2", regularizer=None):
    """Feature maps of SSD512: conv4_3, fc7, conv6_2 .. conv10_2 (4x4)."""
    sources, x = vgg16_reduced(x, normalization, regularizer)
    return _with_extras(x, sources, SSD512_EXTRAS, regularizer)


# ---------------------------------------------------------------- weights
def decimate_fc6(kernel, bias):
    """ImageNet fc6 (Keras `fc1`) -> SSD's 3x3 dilated conv, 1024 filters.

    Keras' `fc1` kernel is `(7 * 7 * 512, 4096)` with rows in the order of
    `Flatten` over a channels-last `(7, 7, 512)` map (row, column, channel).
    Keep every 4th output unit and every 3rd spatial tap (rows/columns 0, 3,
    6), as in the Caffe "VGG_ILSVRC_16_layers_fc_reduced" model.

    Returns:
        `(kernel (3, 3, 512, 1024), bias (1024,))`.
    """
    kernel = np.asarray(kernel)
    bias = np.asarray(bias)
    if kernel.shape != (7 * 7 * 512, 4096) or bias.shape != (4096,):
        raise ValueError(
            "decimate_fc6 expects VGG16 fc1 weights of shape (25088, 4096) and "
            f"(4096,), got {kernel.shape} and {bias.shape}"
        )
    return kernel.reshape(7, 7, 512, 4096)[::3, ::3, :, ::4], bias[::4]


def decimate_fc7(kernel, bias):
    """ImageNet fc7 (Keras `fc2`, `(4096, 4096)`) -> 1x1 conv 1024 -> 1024:
    every 4th input and every 4th output unit.

    Returns:
        `(kernel (1, 1, 1024, 1024), bias (1024,))`.
    """
    kernel = np.asarray(kernel)
    bias = np.asarray(bias)
    if kernel.shape != (4096, 4096) or bias.shape != (4096,):
        raise ValueError(
            "decimate_fc7 expects VGG16 fc2 weights of shape (4096, 4096) and "
            f"(4096,), got {kernel.shape} and {bias.shape}"
        )
    return kernel[::4, ::4].reshape(1, 1, 1024, 1024), bias[::4]


def reference_vgg16(weights):
    """A `keras.applications.VGG16(include_top=True)` holding `weights`
    ("imagenet" or a local `.h5` / `.weights.h5` file)."""
    if isinstance(weights, str) and weights == "imagenet":
        return imagenet_application(
            lambda: keras.applications.VGG16(weights="imagenet", include_top=True),
            "keras.applications.VGG16 (include_top=True)")
    path = check_weights_path(weights, "full keras.applications.VGG16 (include_top=True)")
    reference = keras.applications.VGG16(weights=None, include_top=True)
    try:
        load_into(reference, path)
    except Exception as e:
        notop = keras.applications.VGG16(weights=None, include_top=False)
        try:
            load_into(notop, path)
        except Exception:
            hint = ""
        else:
            hint = (
                " It holds an include_top=False VGG16, but SSD's fc6/fc7 are "
                "converted from the fully connected layers fc1/fc2, so the weights "
                "of the full model (include_top=True) are needed."
            )
        raise ValueError(
            f"could not load VGG16 weights from {path}: {e}.{hint}"
        ) from None
    return reference


def load_vgg16_weights(model, weights):
    """Copy ImageNet VGG16 weights into an SSD model's reduced VGG16.

    conv1_1..conv5_3 are copied from `block{b}_conv{i}`; fc6/fc7 are the
    decimated `fc1`/`fc2` (`decimate_fc6`, `decimate_fc7`).

    Args:
        model: an SSD model built on `vgg16_reduced`.
        weights: `"imagenet"` (downloads Keras' VGG16 with top) or the path of
            a `.h5` / `.weights.h5` file of a full `keras.applications.VGG16`.
    """
    reference = reference_vgg16(weights)
    for block, (_, repeats) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, repeats + 1):
            model.get_layer(f"conv{block}_{i}").set_weights(
                reference.get_layer(f"block{block}_conv{i}").get_weights()
            )
    model.get_layer("fc6").set_weights(list(decimate_fc6(*reference.get_layer("fc1").get_weights())))
    model.get_layer("fc7").set_weights(list(decimate_fc7(*reference.get_layer("fc2").get_weights())))
    del reference
