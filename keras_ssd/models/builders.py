"""Builders for the standard SSD variants and `build_model` by name."""

from keras_ssd.config import SSDConfig
from keras_ssd.models.architectures import get_architecture
from keras_ssd.models.ssd import SSD


def _resolve_config(architecture, num_classes, class_names, config):
    if config is not None:
        config = SSDConfig.from_dict(
            config.to_dict() if isinstance(config, SSDConfig) else config
        )
        changes = {}
        if num_classes is not None and num_classes != config.num_classes:
            if class_names is None and config.class_names is not None:
                raise ValueError(
                    f"num_classes={num_classes} disagrees with the config's "
                    f"{config.num_classes} class_names"
                )
            changes["num_classes"] = num_classes
        if class_names is not None:
            changes["class_names"] = list(class_names)
            changes.setdefault("num_classes", len(class_names))
        return config.replace(**changes) if changes else config
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else 20
    return get_architecture(architecture).default_config(num_classes, class_names)


def SSD300(num_classes=None, class_names=None, backbone_weights=None, normalization="l2",
           weight_decay=0.0, config=None, name="ssd300", **kwargs):
    """SSD300 on the reduced VGG16 with the exact Caffe VOC geometry.

    Maps 38, 19, 10, 5, 3, 1 (conv4_3 with L2 normalisation, fc7, conv6_2 ..
    conv9_2), 8732 priors from `SSDConfig.ssd300`.

    Args:
        num_classes: object classes without background; default 20, or
            `len(class_names)`, or the given config's.
        class_names: optional list of names (stored in the model).
        backbone_weights: `None`, `"imagenet"` or a path to the `.h5` /
            `.weights.h5` weights of a full `keras.applications.VGG16`
            (include_top=True): conv layers copied, fc6/fc7 decimated.
        normalization: `"l2"` (paper), `"batchnorm"` or `"none"` on conv4_3.
        weight_decay: SGD weight decay on conv kernels (`L2(wd / 2)`), e.g.
            5e-4 as in the paper. 0 disables it.
        config: optional `SSDConfig` to change the priors; its
            `feature_map_sizes` must stay those of the network.
        name: model name.

    Returns:
        An `SSD` model, output `(B, 8732, 4 + num_classes + 1)`.

    Example:

    >>> model = SSD300(num_classes=20)
    >>> model.output_shape
    (None, 8732, 25)
    """
    config = _resolve_config("ssd300_vgg16", num_classes, class_names, config)
    return SSD(config, architecture="ssd300_vgg16", normalization=normalization,
               weight_decay=weight_decay, backbone_weights=backbone_weights, name=name,
               **kwargs)


def SSD512(num_classes=None, class_names=None, backbone_weights=None, normalization="l2",
           weight_decay=0.0, config=None, name="ssd512", **kwargs):
    """SSD512 on the reduced VGG16 (Caffe geometry): maps 64, 32, 16, 8, 4,
    2, 1 (the last from a 4x4 pad-1 conv), 24564 priors. Arguments as
    `SSD300`.

    Returns:
        An `SSD` model, output `(B, 24564, 4 + num_classes + 1)`.
    """
    config = _resolve_config("ssd512_vgg16", num_classes, class_names, config)
    return SSD(config, architecture="ssd512_vgg16", normalization=normalization,
               weight_decay=weight_decay, backbone_weights=backbone_weights, name=name,
               **kwargs)


def SSDTiny(num_classes=None, class_names=None, normalization="none", weight_decay=0.0,
            config=None, name="ssd_tiny", **kwargs):
    """A tiny SSD for CPU experiments: 160 px input, conv-BN-ReLU backbone of
    16..128 filters, 5 maps (20, 10, 5, 3, 1), 2390 priors from
    `SSDConfig.tiny`. No pretrained weights. Other arguments as `SSD300`.

    Returns:
        An `SSD` model, output `(B, 2390, 4 + num_classes + 1)`.

    Example:

    >>> SSDTiny(num_classes=3).output_shape
    (None, 2390, 8)
    """
    config = _resolve_config("ssd_tiny", num_classes, class_names, config)
    return SSD(config, architecture="ssd_tiny", normalization=normalization,
               weight_decay=weight_decay, name=name, **kwargs)


def SSDMobileNetV2(num_classes=None, class_names=None, backbone_weights=None,
                   normalization="none", weight_decay=0.0, config=None,
                   name="ssd_mobilenet_v2", **kwargs):
    """SSD on `keras.applications.MobileNetV2` (alpha 1.0), 320 px input:
    sources `block_13_expand_relu` (20x20) and `out_relu` (10x10) plus four
    extra blocks (5, 3, 2, 1), 3234 priors (`mobilenet_v2_config`).

    Args:
        backbone_weights: `None`, `"imagenet"` or a path to the `.h5` /
            `.weights.h5` weights of a `keras.applications.MobileNetV2`
            (alpha 1.0, with or without top).
        Others: as `SSD300`. Inputs are RGB 0..255, scaled to [-1, 1] inside.

    Returns:
        An `SSD` model, output `(B, 3234, 4 + num_classes + 1)`.
    """
    config = _resolve_config("ssd_mobilenet_v2", num_classes, class_names, config)
    return SSD(config, architecture="ssd_mobilenet_v2", normalization=normalization,
               weight_decay=weight_decay, backbone_weights=backbone_weights, name=name,
               **kwargs)


#: Names accepted by `build_model` (and the CLI's `--model`).
MODEL_BUILDERS = {
    "ssd300": SSD300,
    "ssd512": SSD512,
    "tiny": SSDTiny,
    "ssd_tiny": SSDTiny,
    "mobilenet_v2": SSDMobileNetV2,
    "ssd_mobilenet_v2": SSDMobileNetV2,
}


def build_model(name, num_classes=None, class_names=None, **kwargs):
    """Build an SSD variant by name (for the CLI and config files).

    Args:
        name: `"ssd300"`, `"ssd512"`, `"tiny"` / `"ssd_tiny"` or
            `"mobilenet_v2"` / `"ssd_mobilenet_v2"` (case-insensitive).
        num_classes, class_names, **kwargs: passed to the builder.

    Returns:
        An `SSD` model.
    """
    key = str(name).lower().replace("-", "_")
    if key not in MODEL_BUILDERS:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(sorted(MODEL_BUILDERS))}"
        )
    return MODEL_BUILDERS[key](num_classes=num_classes, class_names=class_names, **kwargs)
