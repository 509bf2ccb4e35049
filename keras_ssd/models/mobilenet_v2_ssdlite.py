"""SSDLite320 on MobileNetV2: the network of lufficc/SSD's
`mobilenet_v2_ssd320_voc0712`, written in Keras.

Read from lufficc/SSD (`ssd/modeling/backbone/mobilenet.py`,
`ssd/layers/separable_conv.py`, `ssd/modeling/box_head/box_predictor.py`,
`configs/mobilenet_v2_ssd320_voc0712.yaml`):

- MobileNetV2 (width 1.0): a 3x3 stride-2 stem of 32 filters, seventeen
  inverted-residual blocks (`MOBILENET_V2_BLOCKS`: a 1x1 expansion unless
  the ratio is 1, a depthwise 3x3, a linear 1x1 projection; a residual when
  stride 1 keeps the width), then a 1x1 convolution to 1280 channels. Every
  convolution is followed by batch normalisation (PyTorch's eps 1e-5) and,
  but for the projections, ReLU6; none has a bias.
- Source maps: the output of the 13th block (96 channels, stride 16: 20x20
  at 320 px) and the last 1x1 convolution's (1280, 10x10), then four extra
  inverted-residual blocks of stride 2 (`SSDLITE_EXTRAS`: 1280 -> 512 with
  ratio 0.2, 512 -> 256 with 0.25, 256 -> 256 with 0.5, 256 -> 64 with
  0.25; hidden width `round(in * ratio)`), linear outputs: maps 5, 3, 2, 1.
- SSDLite heads (`SSDLiteBoxPredictor`): on every map but the last, per
  output a depthwise 3x3 convolution *with* a bias + BN + ReLU6, then a 1x1
  convolution with bias (`SeparableConv2d`); on the last (1x1) map a plain
  1x1 convolution with bias.

Unlike `keras.applications.MobileNetV2` (Keras' asymmetric `"same"`
padding at stride 2), PyTorch pads a stride-2 3x3 convolution by 1 on every
side, so stride-2 layers here pad explicitly. BatchNorm momentum 0.9 is
PyTorch's 0.1 (PyTorch counts the other way).
"""

import keras

from keras_ssd.models import heads

#: MobileNetV2's inverted-residual stages: (expansion ratio, output
#: channels, repeats, stride of the first), as lufficc (and torchvision) list them.
MOBILENET_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: Channels of the stem and of the last 1x1 convolution.
STEM_FILTERS = 32
LAST_FILTERS = 1280
#: The (1-based) block whose output is the first source map (stride 16).
C4_BLOCK = 13
#: The extra inverted-residual blocks: (output channels, expansion ratio).
SSDLITE_EXTRAS = ((512, 0.2), (256, 0.25), (256, 0.5), (64, 0.25))
#: Batch-norm epsilon and (Keras) momentum of PyTorch's `BatchNorm2d` defaults.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def block_layout():
    """Per backbone block `i` (1-based): `(i, in_channels, hidden, out,
    stride, has_expansion, residual)`."""
    rows, channels, i = [], STEM_FILTERS, 0
    for ratio, out, repeats, first_stride in MOBILENET_V2_BLOCKS:
        for r in range(repeats):
            i += 1
            stride = first_stride if r == 0 else 1
            rows.append((i, channels, int(round(channels * ratio)), out, stride, ratio != 1,
                         stride == 1 and channels == out))
            channels = out
    return rows


def extra_layout():
    """Per extra block `j` (1-based): `(j, in_channels, hidden, out)`."""
    rows, channels = [], LAST_FILTERS
    for j, (out, ratio) in enumerate(SSDLITE_EXTRAS, start=1):
        rows.append((j, channels, int(round(channels * ratio)), out))
        channels = out
    return rows


def source_channels():
    """`[(source name, channels)]` of the six maps, in head order."""
    c4 = block_layout()[C4_BLOCK - 1][3]
    return [(f"block{C4_BLOCK}", c4), ("last_conv", LAST_FILTERS)] + [
        (f"extra{j}", out) for j, _, _, out in extra_layout()]


def backbone_layer_names():
    """The names of the MobileNetV2 layers that hold weights (stem to the
    last 1x1 convolution): what `freeze="backbone"` freezes."""
    names = ["stem_conv", "stem_bn"]
    for i, _, _, _, _, expand, _ in block_layout():
        if expand:
            names += [f"block{i}_expand", f"block{i}_expand_bn"]
        names += [f"block{i}_dw", f"block{i}_dw_bn", f"block{i}_project",
                  f"block{i}_project_bn"]
    return names + ["last_conv", "last_bn"]


def _bn(x, name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM,
                                           name=name)(x)


def _pad(x, strides, name):
    """PyTorch's padding 1 of a 3x3 convolution: `"same"` at stride 1 (it is
    symmetric there), explicit at stride 2."""
    if strides == 1:
        return x, "same"
    return keras.layers.ZeroPadding2D(1, name=f"{name}_pad")(x), "valid"


def _relu6(x, name):
    return keras.layers.ReLU(6.0, name=name)(x)


def _pointwise_bn(x, filters, name, bn_name, relu6, regularizer):
    x = keras.layers.Conv2D(filters, 1, use_bias=False, kernel_regularizer=regularizer,
                            name=name)(x)
    x = _bn(x, bn_name)
    return _relu6(x, f"{name}_relu") if relu6 else x


def _depthwise_bn_relu6(x, name, strides=1, use_bias=False):
    x, padding = _pad(x, strides, name)
    x = keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding,
                                     use_bias=use_bias, name=name)(x)
    return _relu6(_bn(x, f"{name}_bn"), f"{name}_relu")


def inverted_residual(x, name, hidden, out, strides, expand, residual, regularizer=None):
    """lufficc's (and torchvision's) `InvertedResidual`: 1x1 expansion + BN +
    ReLU6 (when the ratio is not 1), depthwise 3x3 + BN + ReLU6, linear 1x1
    projection + BN, plus the input when `residual`."""
    y = x
    if expand:
        y = _pointwise_bn(y, hidden, f"{name}_expand", f"{name}_expand_bn", True,
                          regularizer)
    y = _depthwise_bn_relu6(y, f"{name}_dw", strides)
    y = _pointwise_bn(y, out, f"{name}_project", f"{name}_project_bn", False, regularizer)
    return keras.layers.Add(name=f"{name}_add")([x, y]) if residual else y


def mobilenet_v2_ssdlite_features(x, normalization="none", regularizer=None):
    """MobileNetV2 with PyTorch's padding and the SSDLite extra blocks.

    Args:
        x: the preprocessed image tensor.
        normalization: only `"none"` (every map is batch-normalised already).
        regularizer: kernel regularizer of the (non-depthwise) convolutions.

    Returns:
        `[(source name, map)]`: `block13` (stride 16), `last_conv` (stride
        32) and `extra1` .. `extra4`.
    """
    if normalization != "none":
        raise ValueError("the ssdlite320_mobilenet_v2 network normalises its maps with "
                         f"batch normalisation; normalization must be 'none', got "
                         f"{normalization!r}")
    x, padding = _pad(x, 2, "stem_conv")
    x = keras.layers.Conv2D(STEM_FILTERS, 3, strides=2, padding=padding, use_bias=False,
                            kernel_regularizer=regularizer, name="stem_conv")(x)
    x = _relu6(_bn(x, "stem_bn"), "stem_relu")
    sources = []
    for i, _, hidden, out, stride, expand, residual in block_layout():
        x = inverted_residual(x, f"block{i}", hidden, out, stride, expand, residual,
                              regularizer)
        if i == C4_BLOCK:
            sources.append((f"block{i}", x))
    x = _pointwise_bn(x, LAST_FILTERS, "last_conv", "last_bn", True, regularizer)
    sources.append(("last_conv", x))
    for j, _, hidden, out in extra_layout():
        x = inverted_residual(x, f"extra{j}", hidden, out, 2, True, False, regularizer)
        sources.append((f"extra{j}", x))
    return sources


def head_depthwise(x, name):
    """The depthwise part of lufficc's `SeparableConv2d` heads: depthwise 3x3
    *with* a bias + BN + ReLU6 (`{name}`, `{name}_bn`, `{name}_relu`)."""
    return _depthwise_bn_relu6(x, name, use_bias=True)


def ssdlite_heads(sources, config, regularizer=None):
    """lufficc's `SSDLiteBoxPredictor`: `keras_ssd.models.heads.ssdlite_heads`
    with `head_depthwise` on every map but the last, a 1x1 convolution alone
    on the last.

    Returns:
        float32 tensor `(B, num_anchors, 4 + num_classes + 1)`.
    """
    return heads.ssdlite_heads(sources, config, head_depthwise, regularizer,
                               plain_last=True)
