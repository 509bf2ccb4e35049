"""The small SSD backbone: the default network for training from scratch
on a CPU budget (`SSDConfig.from_preset("small")`: 192 px, maps 24, 12, 6,
3, 2, 1).

Against `tiny` it spends its extra work where small, look-alike objects
need it: eight 3x3 conv-BN-ReLU blocks before the second source instead of
five (a receptive field of about 100 px at the first source instead of
about 40), stride-2 convolutions instead of max pooling, a 192 px input
(the first map 24 cells wide), and a light top-down fusion: the second
source, reduced by a 1x1 convolution and upsampled, is added to the first,
so the finest map also sees the context of the coarser one.
"""

import keras

from keras_ssd.models.blocks import conv

#: (name, filters, stride) of the backbone's conv-BN-ReLU blocks; the
#: blocks marked as sources feed the heads.
SMALL_BLOCKS = (
    ("small_conv1", 16, 2),   # 192 -> 96
    ("small_conv2", 32, 2),   # 96 -> 48
    ("small_conv3", 32, 1),
    ("small_conv4", 64, 2),   # 48 -> 24
    ("small_conv5", 64, 1),
    ("small_conv6", 96, 1),   # source 1 (24)
    ("small_conv7", 128, 2),  # 24 -> 12
    ("small_conv8", 128, 1),  # source 2 (12)
)
#: The blocks whose outputs are the first two sources.
SMALL_SOURCES = ("small_conv6", "small_conv8")
#: (name, bottleneck filters, output filters) of the stride-2 extra blocks:
#: 12 -> 6 -> 3 -> 2 -> 1.
SMALL_EXTRAS = (
    ("small_extra1", 64, 128),
    ("small_extra2", 64, 128),
    ("small_extra3", 32, 96),
    ("small_extra4", 32, 96),
)


def conv_bn_relu(x, filters, kernel_size, strides, name, regularizer):
    """Convolution without bias, batch normalisation, ReLU."""
    x = conv(x, filters, kernel_size, name, strides=strides, activation=None, use_bias=False,
             regularizer=regularizer)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def small_features(x, normalization="none", regularizer=None):
    """Eight conv-BN-ReLU blocks, a top-down fusion into the first source,
    and four extra blocks.

    Args:
        x: the preprocessed image tensor.
        normalization: accepted for the backbone interface; batch
            normalisation already scales every source, so only `"none"`.
        regularizer: the kernel regularizer of every convolution.

    Returns:
        `[(name, map)]`: six sources, 24, 12, 6, 3, 2 and 1 cells wide at
        192 px (strides 8, 16, 32, 64, 96, 192).
    """
    if normalization not in (None, "none"):
        raise ValueError(f"the small backbone takes normalization='none' (its sources are "
                         f"batch-normalised), got {normalization!r}")
    found = {}
    for name, filters, strides in SMALL_BLOCKS:
        x = conv_bn_relu(x, filters, 3, strides, name, regularizer)
        if name in SMALL_SOURCES:
            found[name] = x
    fine, coarse = (found[n] for n in SMALL_SOURCES)
    # Top-down fusion: the 12-cell map, brought to the 24-cell map's width and
    # size, added to it. Nearest-neighbour upsampling then a crop keeps odd
    # input sizes working (the fine map is ceil(2 x) or 2 x the coarse one).
    top = conv(coarse, fine.shape[-1], 1, "small_fuse_reduce", activation=None,
               regularizer=regularizer)
    top = keras.layers.UpSampling2D(2, name="small_fuse_up")(top)
    extra_h = top.shape[1] - fine.shape[1]
    extra_w = top.shape[2] - fine.shape[2]
    if extra_h or extra_w:
        top = keras.layers.Cropping2D(((0, extra_h), (0, extra_w)), name="small_fuse_crop")(top)
    fused = keras.layers.Add(name="small_fuse_add")([fine, top])
    fused = conv_bn_relu(fused, fine.shape[-1], 3, 1, "small_fuse", regularizer)
    sources = [("small_fuse", fused), (SMALL_SOURCES[1], coarse)]
    x = coarse
    for name, mid, out in SMALL_EXTRAS:
        x = conv_bn_relu(x, mid, 1, 1, f"{name}_1", regularizer)
        x = conv_bn_relu(x, out, 3, 2, f"{name}_2", regularizer)
        sources.append((f"{name}_2", x))
    return sources
