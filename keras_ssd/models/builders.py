"""Builders for the variants of `keras_ssd.presets`, and `build_model` by name."""

from keras_ssd import presets
from keras_ssd.config import SSDConfig
from keras_ssd.models.ssd import SSD


def _resolve_config(variant, num_classes, class_names, config):
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
        if changes.get("num_classes", config.num_classes) != config.num_classes or \
                changes.get("class_names", config.class_names) != config.class_names:
            changes["category_ids"] = None  # other classes: the COCO ids no longer apply
        return config.replace(**changes) if changes else config
    return SSDConfig.from_preset(variant, num_classes, class_names)


def default_weight_decay(variant, backbone_weights=None):
    """The builders' `weight_decay=None`: the L2 penalty of the variant's
    training recipe (`keras_ssd.presets.recipe_for`, pretrained when
    `backbone_weights` is given; `Recipe.model_weight_decay`): 5e-4 for the
    paper's SGD (SSD300/SSD512 from ImageNet VGG16), 0 for an AdamW recipe,
    whose decay `train_detector` puts in the optimizer instead."""
    recipe = presets.recipe_for(variant, pretrained=backbone_weights is not None)
    return recipe.model_weight_decay


def _build(variant, num_classes, class_names, config, normalization, weight_decay,
           backbone_weights, name, **kwargs):
    config = _resolve_config(variant, num_classes, class_names, config)
    if weight_decay is None:
        weight_decay = default_weight_decay(variant, backbone_weights)
    return SSD(config, architecture=variant, normalization=normalization,
               weight_decay=weight_decay, backbone_weights=backbone_weights, name=name,
               **kwargs)


def SSD300(num_classes=None, class_names=None, backbone_weights=None, normalization="l2",
           weight_decay=None, config=None, name="ssd300", **kwargs):
    """SSD300 on the reduced VGG16 with the exact Caffe VOC geometry.

    Maps 38, 19, 10, 5, 3, 1 (conv4_3 with L2 normalisation, fc7, conv6_2 ..
    conv9_2), 8732 priors (preset `"ssd300"`).

    Args:
        num_classes: object classes without background; default 20, or
            `len(class_names)`, or the given config's.
        class_names: optional list of names (stored in the model).
        backbone_weights: `None`, `"imagenet"` or a path to the `.h5` /
            `.weights.h5` weights of a full `keras.applications.VGG16`
            (include_top=True): conv layers copied, fc6/fc7 decimated.
        normalization: `"l2"` (paper), `"batchnorm"` or `"none"` on conv4_3.
        weight_decay: SGD-style weight decay on conv kernels (`L2(wd / 2)`).
            Default `None`: the training recipe's (`default_weight_decay`):
            5e-4, the paper's, with `backbone_weights` (the paper's SGD
            recipe); 0 without (the AdamW recipe decays in the optimizer,
            see `keras_ssd.training.train_detector`). 0 disables it.
        config: optional `SSDConfig` to change the priors; its
            `feature_map_sizes` must stay those of the network. Its
            `category_ids` (COCO ids of the classes) are kept unless
            `num_classes` / `class_names` change the classes.
        image_size: optional int or `(height, width)`, e.g. `(300, 540)`:
            build at this input size; the feature maps are read from the
            network and the priors follow (`SSDConfig.with_image_size`).
            Every builder takes it.
        preprocessing: optional input normalisation of the RGB 0..255
            pixels (`SSD`'s argument): `None` keeps the architecture's
            (`"caffe"` for VGG16: BGR minus the ImageNet mean), a mode name,
            or a dict of `ImagePreprocessing` arguments, e.g. `{"mode":
            "custom", "channel_order": "rgb", "mean": [123.675, 116.28,
            103.53]}`. Stored with the model (`model.preprocessing`).
        postprocessing: optional dict of `DecodeDetections` defaults
            (`confidence_threshold`, `iou_threshold`,
            `max_candidates_per_class`, `top_k`, `clip_boxes`,
            `max_log_scale`) that prediction and evaluation start from
            (`model.postprocessing`); converted checkpoints carry their
            source's. Every builder takes both.
        name: model name.

    Returns:
        An `SSD` model, output `(B, 8732, 4 + num_classes + 1)`.

    Example:

    >>> model = SSD300(num_classes=20)
    >>> model.output_shape
    (None, 8732, 25)
    """
    return _build("ssd300", num_classes, class_names, config, normalization,
                  weight_decay, backbone_weights, name, **kwargs)


def SSD512(num_classes=None, class_names=None, backbone_weights=None, normalization="l2",
           weight_decay=None, config=None, name="ssd512", **kwargs):
    """SSD512 on the reduced VGG16 (Caffe geometry): maps 64, 32, 16, 8, 4,
    2, 1 (the last from a 4x4 pad-1 conv), 24564 priors (preset `"ssd512"`).
    Arguments as `SSD300` (`preprocessing=` and `postprocessing=` included:
    the input normalisation and the decoder defaults stored with the model).

    Returns:
        An `SSD` model, output `(B, 24564, 4 + num_classes + 1)`.
    """
    return _build("ssd512", num_classes, class_names, config, normalization,
                  weight_decay, backbone_weights, name, **kwargs)


def SSDTiny(num_classes=None, class_names=None, normalization="none", weight_decay=None,
            config=None, name="ssd_tiny", **kwargs):
    """A tiny SSD for CPU experiments: 160 px input, conv-BN-ReLU backbone of
    16..128 filters, 5 maps (20, 10, 5, 3, 1), 2390 priors (preset `"tiny"`).
    No pretrained weights. Other arguments as `SSD300`.

    Returns:
        An `SSD` model, output `(B, 2390, 4 + num_classes + 1)`.

    Example:

    >>> SSDTiny(num_classes=3).output_shape
    (None, 2390, 8)
    """
    return _build("tiny", num_classes, class_names, config, normalization,
                  weight_decay, None, name, **kwargs)


def SSDMobileNetV2(num_classes=None, class_names=None, backbone_weights=None,
                   normalization="none", weight_decay=None, config=None,
                   name="ssd_mobilenet_v2", **kwargs):
    """SSD on `keras.applications.MobileNetV2` (alpha 1.0), 320 px input:
    sources `block_13_expand_relu` (20x20) and `out_relu` (10x10) plus four
    extra blocks (5, 3, 2, 1), 3234 priors (preset `"mobilenet_v2"`).

    Args:
        backbone_weights: `None`, `"imagenet"` or a path to the `.h5` /
            `.weights.h5` weights of a `keras.applications.MobileNetV2`
            (alpha 1.0, with or without top).
        Others: as `SSD300`. Inputs are RGB 0..255, scaled to [-1, 1] inside.

    Returns:
        An `SSD` model, output `(B, 3234, 4 + num_classes + 1)`.
    """
    return _build("mobilenet_v2", num_classes, class_names, config, normalization,
                  weight_decay, backbone_weights, name, **kwargs)


def SSDLite320(num_classes=None, class_names=None, normalization="none", weight_decay=None,
               config=None, name="ssdlite320", **kwargs):
    """SSDLite320 on MobileNetV3-Large with the reduced tail (torchvision's
    `ssdlite320_mobilenet_v3_large` network, `keras_ssd.models.mobilenet_v3`):
    maps 20, 10, 5, 3, 2, 1, SSDLite heads (depthwise 3x3 + BN + ReLU6, then
    1x1), 3234 priors clipped to the image (preset `"ssdlite320"`).

    From random weights it trains with the from-scratch recipe;
    `SSDLite320.from_preset("ssdlite320_coco")` gives torchvision's COCO
    detector. Inputs are RGB 0..255, scaled to [-1, 1] inside. Other
    arguments as `SSD300` (`normalization` must stay `"none"`: every map is
    batch-normalised already).

    Returns:
        An `SSD` model, output `(B, 3234, 4 + num_classes + 1)`.

    Example:

    >>> SSDLite320(num_classes=3).output_shape
    (None, 3234, 8)
    """
    return _build("ssdlite320", num_classes, class_names, config, normalization,
                  weight_decay, None, name, **kwargs)


def SSDLite320MobileNetV2(num_classes=None, class_names=None, normalization="none",
                          weight_decay=None, config=None, name="ssdlite320_mobilenet_v2",
                          **kwargs):
    """SSDLite320 on MobileNetV2 (lufficc/SSD's `mobilenet_v2_ssd320_voc0712`
    network, `keras_ssd.models.mobilenet_v2_ssdlite`): PyTorch's symmetric
    stride-2 padding, maps 20, 10, 5, 3, 2, 1 (block 13, the last 1x1
    convolution, four inverted-residual extra blocks), SSDLite heads, 3234
    priors clamped to [0, 1] (preset `"ssdlite320_mobilenet_v2"`).

    From random weights it trains with the from-scratch recipe;
    `SSDLite320MobileNetV2.from_preset("ssdlite320_mobilenet_v2_voc")` gives
    lufficc's VOC detector. Inputs are RGB 0..255, scaled to [-1, 1] inside
    (the converted preset subtracts lufficc's mean instead). Other arguments
    as `SSD300` (`normalization` must stay `"none"`).

    Returns:
        An `SSD` model, output `(B, 3234, 4 + num_classes + 1)`.

    Example:

    >>> SSDLite320MobileNetV2(num_classes=3).output_shape
    (None, 3234, 8)
    """
    return _build("ssdlite320_mobilenet_v2", num_classes, class_names, config,
                  normalization, weight_decay, None, name, **kwargs)


def _preset_loader(architecture):
    """`<Builder>.from_preset`: a pretrained detector of this architecture."""

    def from_preset(name, num_classes=None, class_names=None, classes=None, freeze=None,
                    **kwargs):
        """A pretrained detector (`keras_ssd.presets.PRETRAINED`), as published,
        with new class heads for fine-tuning, or for some of its classes.

        Downloads the checkpoint once (SHA-256 checked), converts it exactly
        and caches the converted `.keras` file (`keras_ssd.models.pretrained`).

        Args:
            name: a preset of `keras_ssd.presets.pretrained_names()` built
                on this architecture: `"ssd300_coco"` (torchvision, 80 COCO
                classes), `"ssd300_voc"` (lufficc/SSD, 20 VOC classes),
                `"ssd300_voc_amdegroot"` (amdegroot/ssd.pytorch),
                `"ssdlite320_coco"` (torchvision SSDLite320, 80 COCO classes),
                `"ssdlite320_mobilenet_v2_voc"` (lufficc/SSD's MobileNetV2
                SSDLite320, 20 VOC classes), the `*_mmdet` presets.
            num_classes, class_names: new class heads for these classes
                (background prior: the objects start at 1% together); the
                backbone, extra layers and box heads are kept.
            classes: some of the source's class names: a detector of just
                these, no training (the source's softmax and scores).
            freeze: `None`, `"conv1-conv2"` (VGG16: the Caffe recipe) or
                `"backbone"` (VGG16: conv1_1 .. fc7; the SSDLite320s: the whole
                MobileNetV3 or MobileNetV2).
            **kwargs: `keep_box_heads`, `weight_decay`, `converter`, `fetch`,
                `cache`, `verbose` of `keras_ssd.models.pretrained.from_preset`.

        Returns:
            An `SSD` model.

        Example:

        >>> model = SSD300.from_preset("ssd300_coco")
        >>> model = SSD300.from_preset("ssd300_coco", class_names=["cat", "dog", "bird"])
        >>> model = SSD300.from_preset("ssd300_coco", classes=["person", "car"])
        """
        from keras_ssd.models.pretrained import from_preset as load

        return load(name, num_classes=num_classes, class_names=class_names, classes=classes,
                    freeze=freeze, architecture=architecture, **kwargs)

    from_preset.__qualname__ = f"{presets.get(architecture).builder}.from_preset"
    return from_preset


for _variant in presets.names():
    globals()[presets.get(_variant).builder].from_preset = _preset_loader(_variant)
del _variant


def get_builder(name):
    """The builder function of the variant `name` (or an alias)."""
    return globals()[presets.get(name).builder]


#: Every accepted spelling -> builder, derived from `keras_ssd.presets`.
MODEL_BUILDERS = {s: get_builder(p.name) for p in presets.PRESETS.values()
                  for s in p.spellings}


def build_model(name, num_classes=None, class_names=None, **kwargs):
    """Build an SSD variant by name (for the CLI and config files).

    Args:
        name: a variant of `keras_ssd.presets` (`"ssd300"`, `"ssd512"`,
            `"mobilenet_v2"`, `"ssdlite320"`, `"ssdlite320_mobilenet_v2"`,
            `"tiny"`) or an alias
            (case-insensitive, `-` or `_`).
        num_classes, class_names, **kwargs: passed to the builder.

    Returns:
        An `SSD` model.
    """
    preset = presets.find(name)
    if preset is None:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(presets.names())}"
        )
    return get_builder(preset.name)(num_classes=num_classes, class_names=class_names,
                                    **kwargs)
