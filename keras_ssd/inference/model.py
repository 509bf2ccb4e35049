"""Inference models: a training SSD plus prior generation and detection
decoding, as one saveable `keras.Model`."""

import keras

from keras_ssd.config import SSDConfig
from keras_ssd.layers.anchor_boxes import AnchorBoxes
from keras_ssd.layers.decode_detections import DecodeDetections
from keras_ssd.models.walk import iter_layers


def get_config_from_model(model):
    """The `SSDConfig` of a training or inference model.

    Looks for a `config` attribute holding an `SSDConfig` (the `SSD` model
    classes) on the model, then for a `DecodeDetections` or `AnchorBoxes`
    layer anywhere inside it (inference models, also after loading).

    Args:
        model: a `keras.Model` (or an `SSDConfig`, returned as is).

    Returns:
        `SSDConfig`.

    Raises:
        ValueError: when the model carries no SSD configuration.
    """
    if isinstance(model, SSDConfig):
        return model
    for layer in iter_layers(model):
        config = getattr(layer, "config", None)
        if isinstance(config, SSDConfig):
            return config
    raise ValueError(
        f"get_config_from_model: {type(model).__name__} "
        f"{getattr(model, 'name', '')!r} has no SSDConfig: expected a `config` "
        "attribute (keras_ssd SSD models) or a DecodeDetections / AnchorBoxes layer"
    )


def inference_model(model, name=None, **decode_options):
    """Wrap a training SSD into a model that outputs final detections.

    `images -> model -> AnchorBoxes -> DecodeDetections`. The result saves
    and loads as `.keras` like any model; `get_config_from_model` finds the
    configuration again after loading.

    Args:
        model: a `keras.Model` with a `config` attribute (`SSDConfig`) whose
            output is `(B, N, 4 + num_classes + 1)`.
        name: optional name of the new model (default: `<model>_inference`).
        **decode_options: forwarded to `DecodeDetections`:
            `confidence_threshold`, `iou_threshold`,
            `max_candidates_per_class`, `top_k`, `clip_boxes`,
            `max_log_scale`. Those not given come from the model's
            `postprocessing` (the source's settings of a converted
            checkpoint), else the `DecodeDetections` defaults.

    Returns:
        `keras.Model` mapping images `(B, H, W, 3)` to the `DecodeDetections`
        dict (`boxes`, `scores`, `labels`, `num_detections`; docs/outputs.md;
        keras-ssd 0.1 named `scores` `confidence`).

    Raises:
        ValueError: when the model has no SSD config, its output does not
            match the config, or an unknown decode option is given.

    Example:

    >>> detector = inference_model(ssd, confidence_threshold=0.5)
    >>> out = detector.predict(images)
    >>> out["boxes"].shape
    (batch, 200, 4)
    """
    config = get_config_from_model(model)
    allowed = {
        "confidence_threshold",
        "iou_threshold",
        "max_candidates_per_class",
        "top_k",
        "clip_boxes",
        "max_log_scale",
    }
    unknown = sorted(set(decode_options) - allowed)
    if unknown:
        raise ValueError(
            f"inference_model: unknown decode option(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )
    # A converted checkpoint carries its source's settings (SSD.postprocessing).
    decode_options = {**(getattr(model, "postprocessing", None) or {}), **decode_options}
    input_shape = None
    inputs = getattr(model, "inputs", None)
    if inputs:
        if len(inputs) != 1:
            raise ValueError(
                f"inference_model: the model must take one image input, it takes "
                f"{len(inputs)}"
            )
        input_shape = tuple(inputs[0].shape[1:])
    if input_shape is None:
        input_shape = tuple(config.image_shape) + (3,)
    images = keras.Input(shape=input_shape, name="images")
    predictions = model(images)
    if isinstance(predictions, (list, tuple, dict)):
        raise ValueError(
            "inference_model: the model must return one predictions tensor "
            f"(B, N, 4 + num_classes + 1), got a {type(predictions).__name__}"
        )
    anchors = AnchorBoxes(config, name="anchors")(predictions)
    detections = DecodeDetections(config, name="detections", **decode_options)(
        predictions, anchors
    )
    return keras.Model(
        images, detections, name=name or f"{getattr(model, 'name', 'ssd')}_inference"
    )
