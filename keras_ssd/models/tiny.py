"""A tiny SSD backbone for CPU experiments (`SSDConfig.tiny`: 160 px,
maps 20, 10, 5, 3, 1)."""

import keras

from keras_ssd.models.blocks import conv, extra_block, normalize_source

#: (name, filters, stride, pool after) of the backbone's conv-BN-ReLU blocks.
TINY_BLOCKS = (
    ("tiny_conv1", 16, 2, False),   # 160 -> 80
    ("tiny_conv2", 32, 1, True),    # 80 -> 40
    ("tiny_conv3", 64, 1, True),    # 40 -> 20
    ("tiny_conv4", 64, 1, False),   # 20: source 1
    ("tiny_conv5", 128, 1, False),  # after pool 20 -> 10: source 2
)
TINY_EXTRAS = (
    ("tiny_extra1", 64, 128, 3, 2, 1),  # 10 -> 5
    ("tiny_extra2", 64, 128, 3, 2, 1),  # 5 -> 3
    ("tiny_extra3", 64, 128, 3, 1, 0),  # 3 -> 1
)


def _conv_bn_relu(x, filters, strides, name, regularizer):
    x = conv(x, filters, 3, name, strides=strides, activation=None, use_bias=False,
             regularizer=regularizer)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def tiny_features(x, normalization="none", regularizer=None):
    """Five conv-BN-ReLU blocks (16..128 filters) and three extra blocks.

    At 160 px the sources are 20, 10, 5, 3 and 1 pixels wide (strides 8, 16,
    32, ~53, 160), about 0.13 G multiply-adds per image for 20 classes.
    """
    for name, filters, strides, pool in TINY_BLOCKS[:4]:
        x = _conv_bn_relu(x, filters, strides, name, regularizer)
        if pool:
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"{name}_pool")(x)
    s1, s1_name = normalize_source(x, normalization, TINY_BLOCKS[3][0])
    x = keras.layers.MaxPooling2D(2, 2, padding="same", name="tiny_conv4_pool")(x)
    name, filters, strides, _ = TINY_BLOCKS[4]
    x = _conv_bn_relu(x, filters, strides, name, regularizer)
    sources = [(s1_name, s1), (name, x)]
    for name, mid, out, kernel, stride, pad in TINY_EXTRAS:
        x = extra_block(x, name, mid, out, kernel_size=kernel, strides=stride, pad=pad,
                        regularizer=regularizer)
        sources.append((f"{name}_2", x))
    return sources
