"""SSD on a Keras MobileNetV2 backbone (the lufficc/SSD "MobileNetV2-320"
geometry: maps 20, 10, 5, 3, 2, 1 at 320 pixels)."""

import keras

from keras_ssd.config import SSDConfig
from keras_ssd.deprecation import warn_deprecated
from keras_ssd.models.blocks import extra_block, normalize_source
from keras_ssd.models.weights_files import (
    check_weights_path,
    imagenet_application,
    load_into,
)

#: (name, 1x1 filters, out filters, kernel, stride, pad) of the extra layers.
MOBILENET_V2_EXTRAS = (
    ("extra1", 256, 512, 3, 2, 1),
    ("extra2", 128, 256, 3, 2, 1),
    ("extra3", 128, 256, 3, 2, 1),
    ("extra4", 64, 128, 3, 2, 1),
)
#: The MobileNetV2 layers feeding the first two heads (stride 16 and 32).
MOBILENET_V2_SOURCES = ("block_13_expand_relu", "out_relu")


def mobilenet_v2_config(num_classes=20, class_names=None, image_size=320):
    """Deprecated alias of `SSDConfig.from_preset("mobilenet_v2", ...)`
    (a `DeprecationWarning`; it goes in 0.3.0)."""
    warn_deprecated("keras_ssd.models.mobilenet_v2_config(...)",
                    "SSDConfig.from_preset('mobilenet_v2', num_classes, class_names)")
    if image_size != 320:
        raise ValueError(
            "mobilenet_v2_config only defines the 320-pixel geometry; pass your "
            f"own SSDConfig for image_size={image_size}"
        )
    return SSDConfig.from_preset("mobilenet_v2", num_classes, class_names)


def mobilenet_v2_features(x, normalization="none", regularizer=None, alpha=1.0):
    """MobileNetV2 (`keras.applications`, layers inlined into the SSD graph)
    plus four 1x1 / 3x3-stride-2 extra blocks.

    The regularizer goes on the backbone's `Conv2D` kernels (not the
    depthwise kernels, not batch-norm parameters), and on the extras.
    """
    base = keras.applications.MobileNetV2(
        input_tensor=x, include_top=False, weights=None, alpha=alpha
    )
    if regularizer is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.Conv2D):
                layer.kernel_regularizer = regularizer
                layer.kernel.regularizer = regularizer
    c4 = base.get_layer(MOBILENET_V2_SOURCES[0]).output
    c5 = base.get_layer(MOBILENET_V2_SOURCES[1]).output
    c4, c4_name = normalize_source(c4, normalization, MOBILENET_V2_SOURCES[0])
    sources = [(c4_name, c4), (MOBILENET_V2_SOURCES[1], c5)]
    y = c5
    for name, mid, out, kernel, stride, pad in MOBILENET_V2_EXTRAS:
        y = extra_block(y, name, mid, out, kernel_size=kernel, strides=stride, pad=pad,
                        regularizer=regularizer)
        sources.append((f"{name}_2", y))
    return sources


def reference_mobilenet_v2(weights, alpha=1.0):
    """A `keras.applications.MobileNetV2` holding `weights` ("imagenet" or a
    `.h5` / `.weights.h5` file of a MobileNetV2 with or without top)."""
    if isinstance(weights, str) and weights == "imagenet":
        return imagenet_application(
            lambda: keras.applications.MobileNetV2(
                input_shape=(224, 224, 3), alpha=alpha, include_top=False,
                weights="imagenet"),
            "keras.applications.MobileNetV2 (include_top=False)")
    path = check_weights_path(weights, "keras.applications.MobileNetV2")
    errors = []
    for include_top in (False, True):
        reference = keras.applications.MobileNetV2(
            input_shape=(224, 224, 3), alpha=alpha, include_top=include_top, weights=None
        )
        try:
            load_into(reference, path)
            return reference
        except Exception as e:
            errors.append(f"include_top={include_top}: {e}")
    raise ValueError(
        f"could not load MobileNetV2 (alpha={alpha}) weights from {path}: "
        + "; ".join(errors)
    )


def load_mobilenet_v2_weights(model, weights, alpha=1.0):
    """Copy MobileNetV2 weights, layer by layer (same names), into `model`."""
    reference = reference_mobilenet_v2(weights, alpha)
    copied = 0
    for layer in reference.layers:
        values = layer.get_weights()
        if not values or layer.name == "predictions":
            continue
        model.get_layer(layer.name).set_weights(values)
        copied += 1
    if copied == 0:
        raise ValueError(f"no MobileNetV2 weights found in {weights}")
