"""SSDLite320 on MobileNetV3-Large: the network of torchvision's
`ssdlite320_mobilenet_v3_large`, written in Keras.

Read from torchvision 0.29 (`models/mobilenetv3.py`,
`models/detection/ssdlite.py`):

- MobileNetV3-Large with the *reduced tail* (MobileNetV3 paper, table 6:
  the last three bottlenecks and the last 1x1 convolution at half width),
  the layout of the published COCO weights: a 3x3 stride-2 stem of 16
  filters with hard-swish, fifteen inverted-residual blocks
  (`MOBILENET_V3_LARGE_BLOCKS`: 1x1 expansion unless the expansion keeps
  the width, depthwise kxk, squeeze-excite on some, linear 1x1 projection,
  a residual when stride 1 keeps the width), then a 1x1 convolution to
  6 x 80 = 480 channels with hard-swish. Every convolution but the
  squeeze-excite ones is followed by batch normalisation (eps 0.001) and
  has no bias. Squeeze-excite: global average, 1x1 (bias) + ReLU, 1x1
  (bias) + hard-sigmoid, times the input; its width is
  `make_divisible(expanded / 4)`.
- Source maps (MobileNetV3 paper, section 6.3): the output of the
  expansion layer of the 13th block (the first at stride 16: 20x20x672 at
  320 px) and the network's last map (10x10x480), then four extra blocks
  (1x1 to half width, depthwise 3x3 stride 2, 1x1; BN + ReLU6 after each)
  of 512, 256, 256, 128 channels: maps 5, 3, 2, 1.
- SSDLite heads: per map and per output (boxes, classes) a depthwise 3x3 +
  BN + ReLU6, then a 1x1 convolution with bias.

PyTorch pads a stride-2 kxk convolution by `(k - 1) // 2` on every side,
Keras' `"same"` by (0, 1) on even inputs: stride-2 layers here pad
explicitly. BatchNorm momentum 0.97 is torchvision's 0.03 (PyTorch counts
the other way).
"""

import keras

from keras_ssd.models import heads

#: MobileNetV3-Large's bottlenecks with the reduced tail, in torchvision's
#: order: (kernel, expanded channels, output channels, squeeze-excite,
#: activation, stride). The first takes the stem's 16 channels.
MOBILENET_V3_LARGE_BLOCKS = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hard_swish", 2),
    (3, 200, 80, False, "hard_swish", 1),
    (3, 184, 80, False, "hard_swish", 1),
    (3, 184, 80, False, "hard_swish", 1),
    (3, 480, 112, True, "hard_swish", 1),
    (3, 672, 112, True, "hard_swish", 1),
    (5, 672, 80, True, "hard_swish", 2),
    (5, 480, 80, True, "hard_swish", 1),
    (5, 480, 80, True, "hard_swish", 1),
)
#: Channels of the stem and of the last 1x1 convolution (6 x 80).
STEM_FILTERS = 16
LAST_FILTERS = 480
#: The (1-based) block whose expansion output is the first source map.
C4_BLOCK = 13
#: Output channels of the four SSDLite extra blocks.
SSDLITE_EXTRAS = (512, 256, 256, 128)
#: Batch-norm epsilon and (Keras) momentum of torchvision's SSDLite.
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.97


def make_divisible(value, divisor=8):
    """The channel rounding of the TF-slim MobileNets (and torchvision's
    `_make_divisible`): the nearest multiple of `divisor`, at least
    `divisor`, never more than 10% below `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def block_layout():
    """Per bottleneck `i` (1-based): `(i, in_channels, kernel, expanded, out,
    se_channels or 0, activation, stride, has_expansion, residual)`."""
    rows = []
    channels = STEM_FILTERS
    for i, (kernel, expanded, out, se, activation, stride) in enumerate(
            MOBILENET_V3_LARGE_BLOCKS, start=1):
        rows.append((i, channels, kernel, expanded, out,
                     make_divisible(expanded // 4) if se else 0, activation, stride,
                     expanded != channels, stride == 1 and channels == out))
        channels = out
    return rows


def backbone_layer_names():
    """The names of the MobileNetV3 layers that hold weights (stem to the
    last 1x1 convolution): what `freeze="backbone"` freezes."""
    names = ["stem_conv", "stem_bn"]
    for i, _, _, _, _, se, _, _, expand, _ in block_layout():
        if expand:
            names += [f"block{i}_expand", f"block{i}_expand_bn"]
        names += [f"block{i}_dw", f"block{i}_dw_bn"]
        if se:
            names += [f"block{i}_se_reduce", f"block{i}_se_expand"]
        names += [f"block{i}_project", f"block{i}_project_bn"]
    return names + ["last_conv", "last_bn"]


def _bn(x, name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                           name=name)(x)


def _activation(x, activation, name):
    if activation == "relu6":
        return keras.layers.ReLU(6.0, name=name)(x)
    return keras.layers.Activation(activation, name=name)(x)


def _pad(x, kernel_size, strides, name):
    """Explicit PyTorch padding for stride 2; `"same"` is symmetric at stride 1."""
    if strides == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x), "valid"


def conv_bn(x, filters, kernel_size, name, bn_name, activation, strides=1,
            regularizer=None):
    """Conv (no bias) + BN (+ activation named `{name}_act`)."""
    x, padding = _pad(x, kernel_size, strides, name)
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                            use_bias=False, kernel_regularizer=regularizer, name=name)(x)
    x = _bn(x, bn_name)
    return x if activation is None else _activation(x, activation, f"{name}_act")


def depthwise_bn(x, kernel_size, name, activation, strides=1):
    """Depthwise conv (no bias) + BN + activation, as torchvision's
    `Conv2dNormActivation(groups=channels)`."""
    x, padding = _pad(x, kernel_size, strides, name)
    x = keras.layers.DepthwiseConv2D(kernel_size, strides=strides, padding=padding,
                                     use_bias=False, name=name)(x)
    return _activation(_bn(x, f"{name}_bn"), activation, f"{name}_act")


def squeeze_excite(x, channels, squeeze, name, regularizer=None):
    """torchvision's `SqueezeExcitation` with a hard-sigmoid gate."""
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    s = keras.layers.Conv2D(squeeze, 1, activation="relu", kernel_regularizer=regularizer,
                            name=f"{name}_reduce")(s)
    s = keras.layers.Conv2D(channels, 1, kernel_regularizer=regularizer,
                            name=f"{name}_expand")(s)
    s = keras.layers.Activation("hard_sigmoid", name=f"{name}_gate")(s)
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def mobilenet_v3_ssdlite_features(x, normalization="none", regularizer=None):
    """MobileNetV3-Large (reduced tail) and the SSDLite extra blocks.

    Args:
        x: the preprocessed image tensor (values in [-1, 1]).
        normalization: only `"none"` (SSDLite normalises every map with BN).
        regularizer: kernel regularizer of the (non-depthwise) convolutions.

    Returns:
        `[(source name, map)]`: `block13_expand` (stride 16), `last_conv`
        (stride 32) and `extra1` .. `extra4`.
    """
    if normalization != "none":
        raise ValueError(f"the ssdlite320 network normalises its maps with batch "
                         f"normalisation; normalization must be 'none', got "
                         f"{normalization!r}")
    x = conv_bn(x, STEM_FILTERS, 3, "stem_conv", "stem_bn", "hard_swish", strides=2,
                regularizer=regularizer)
    sources = []
    for i, _, kernel, expanded, out, se, activation, stride, expand, residual in \
            block_layout():
        y = x
        if expand:
            y = conv_bn(y, expanded, 1, f"block{i}_expand", f"block{i}_expand_bn",
                        activation, regularizer=regularizer)
            if i == C4_BLOCK:
                sources.append((f"block{i}_expand", y))
        y = depthwise_bn(y, kernel, f"block{i}_dw", activation, strides=stride)
        if se:
            y = squeeze_excite(y, expanded, se, f"block{i}_se", regularizer)
        y = conv_bn(y, out, 1, f"block{i}_project", f"block{i}_project_bn", None,
                    regularizer=regularizer)
        x = keras.layers.Add(name=f"block{i}_add")([x, y]) if residual else y
    x = conv_bn(x, LAST_FILTERS, 1, "last_conv", "last_bn", "hard_swish",
                regularizer=regularizer)
    sources.append(("last_conv", x))
    for j, out in enumerate(SSDLITE_EXTRAS, start=1):
        x = conv_bn(x, out // 2, 1, f"extra{j}_reduce", f"extra{j}_reduce_bn", "relu6",
                    regularizer=regularizer)
        x = depthwise_bn(x, 3, f"extra{j}_dw", "relu6", strides=2)
        x = conv_bn(x, out, 1, f"extra{j}", f"extra{j}_bn", "relu6",
                    regularizer=regularizer)
        sources.append((f"extra{j}", x))
    return sources


def head_depthwise(x, name):
    """The depthwise part of torchvision's SSDLite heads: depthwise 3x3 (no
    bias) + BN + ReLU6 (`{name}`, `{name}_bn`, `{name}_act`)."""
    return depthwise_bn(x, 3, name, "relu6")


def ssdlite_heads(sources, config, regularizer=None):
    """torchvision's `SSDLiteHead`: `keras_ssd.models.heads.ssdlite_heads`
    with `head_depthwise` on every map.

    Returns:
        float32 tensor `(B, num_anchors, 4 + num_classes + 1)`.
    """
    return heads.ssdlite_heads(sources, config, head_depthwise, regularizer)
