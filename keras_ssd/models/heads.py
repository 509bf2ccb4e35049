"""SSD prediction heads: the SSD paper's 3x3 convolution pair per feature
map (`build_heads`) and the SSDLite separable heads (`ssdlite_heads`)."""

import keras

from keras_ssd.models.blocks import conv


def check_feature_maps(sources, config, architecture):
    """Raise `ValueError` unless the backbone's maps match `config`.

    Args:
        sources: list of `(name, tensor)` feature maps `(B, H, W, C)`.
        config: the `SSDConfig`.
        architecture: name used in the error message.
    """
    expected = list(config.feature_map_shapes)
    got = [tuple(t.shape[1:3]) for _, t in sources]
    shown = [g[0] if g[0] == g[1] else g for g in got]
    if len(got) != len(expected):
        raise ValueError(
            f"SSD architecture {architecture!r} produces {len(got)} feature maps "
            f"{shown} for image_size={config.image_size}, but the "
            f"SSDConfig has {len(expected)} feature_map_sizes {config.feature_map_sizes}"
        )
    for i, ((name, _), (h, w), (fh, fw)) in enumerate(zip(sources, got, expected)):
        if h != fh or w != fw:
            raise ValueError(
                f"SSD architecture {architecture!r}: feature map {i} ({name}) is "
                f"{h}x{w} for image_size={config.image_size}, but "
                f"SSDConfig.feature_map_sizes[{i}] is {config.feature_map_sizes[i]}; all "
                f"maps: {shown} vs config {config.feature_map_sizes} (build with "
                "image_size= to take the network's maps)"
            )


def build_heads(sources, config, regularizer=None):
    """Box-offset and class-logit heads over all feature maps.

    Each map `i` with `k` priors per cell gets a 3x3 conv emitting `k * 4`
    offsets and one emitting `k * (num_classes + 1)` logits. `(H, W, k * 4)`
    is reshaped to `(H * W * k, 4)`, i.e. ordered row, column, box: the order
    of `keras_ssd.anchors.generate_anchors`. Maps are concatenated in config
    order.

    Returns:
        float32 tensor `(B, num_anchors, 4 + num_classes + 1)`: offsets first,
        then logits with index 0 = background.
    """
    num_outputs = config.num_classes + 1
    locs, confs = [], []
    for (name, x), (fh, fw), k in zip(sources, config.feature_map_shapes,
                                      config.boxes_per_cell):
        loc = conv(x, k * 4, 3, f"{name}_mbox_loc", activation=None,
                   regularizer=regularizer)
        cls = conv(x, k * num_outputs, 3, f"{name}_mbox_conf", activation=None,
                   regularizer=regularizer)
        n = fh * fw * k
        locs.append(keras.layers.Reshape((n, 4), name=f"{name}_mbox_loc_flat")(loc))
        confs.append(
            keras.layers.Reshape((n, num_outputs), name=f"{name}_mbox_conf_flat")(cls)
        )
    return _predictions(locs, confs)


def ssdlite_heads(sources, config, depthwise, regularizer=None, plain_last=False):
    """SSDLite prediction heads (MobileNetV2 paper, section 6.2): per map and
    per output (offsets, logits) a depthwise 3x3 + BN + ReLU6, then a 1x1
    convolution with bias.

    The 1x1 layers are named `{source}_mbox_loc` / `{source}_mbox_conf` (as
    `build_heads`' convolutions, so new class heads replace them), the
    depthwise parts `{source}_mbox_loc_dw` / `{source}_mbox_conf_dw`.

    Args:
        sources: list of `(name, tensor)` feature maps `(B, H, W, C)`.
        config: the `SSDConfig`.
        depthwise: `(x, name) -> tensor`, the network's own depthwise 3x3 +
            BN + ReLU6 block named `name` (its batch-norm constants, whether
            the depthwise convolution has a bias, its activation's name).
        regularizer: kernel regularizer of the 1x1 convolutions.
        plain_last: the last map gets the 1x1 convolution alone (lufficc/SSD's
            `SSDLiteBoxPredictor`); `False`: every map is separable
            (torchvision's `SSDLiteHead`).

    Returns:
        float32 tensor `(B, num_anchors, 4 + num_classes + 1)`, ordered as
        `keras_ssd.anchors.generate_anchors` (map, row, column, box).

    Example:
    >>> sources = mobilenet_v3.mobilenet_v3_ssdlite_features(x)
    >>> predictions = ssdlite_heads(sources, config, mobilenet_v3.head_depthwise)
    """
    num_outputs = config.num_classes + 1
    locs, confs = [], []
    last = len(sources) - 1
    for level, ((name, x), (fh, fw), k) in enumerate(zip(
            sources, config.feature_map_shapes, config.boxes_per_cell)):
        n = fh * fw * k
        separable = not (plain_last and level == last)
        for kind, width, out in (("loc", 4, locs), ("conf", num_outputs, confs)):
            y = depthwise(x, f"{name}_mbox_{kind}_dw") if separable else x
            y = keras.layers.Conv2D(k * width, 1, kernel_regularizer=regularizer,
                                    name=f"{name}_mbox_{kind}")(y)
            out.append(keras.layers.Reshape((n, width), name=f"{name}_mbox_{kind}_flat")(y))
    return _predictions(locs, confs)


def _predictions(locs, confs):
    """The per-map `(B, n, 4)` offsets and `(B, n, C)` logits, concatenated
    over maps (in config order), offsets first."""
    if len(locs) > 1:
        loc = keras.layers.Concatenate(axis=1, name="mbox_loc")(locs)
        cls = keras.layers.Concatenate(axis=1, name="mbox_conf")(confs)
    else:
        loc, cls = locs[0], confs[0]
    out = keras.layers.Concatenate(axis=-1, name="mbox")([loc, cls])
    # Outputs in float32 even under a mixed-precision policy.
    return keras.layers.Activation("linear", dtype="float32", name="predictions")(out)
