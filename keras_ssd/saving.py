"""Loading keras-ssd models: make sure every keras-ssd object is registered
with Keras first."""

import importlib

# Modules whose import registers keras-ssd classes with Keras' serializer.
_REGISTERING_MODULES = (
    "keras_ssd.layers",
    "keras_ssd.models",
    "keras_ssd.losses",
    "keras_ssd.schedules",
    "keras_ssd.inference",
)


def register_keras_ssd_objects():
    """Import the modules that register keras-ssd layers, models, losses and
    schedules, so `keras.saving.load_model` can rebuild them."""
    for name in _REGISTERING_MODULES:
        importlib.import_module(name)


def load_model(path, compile=True, custom_objects=None, **kwargs):
    """`keras.saving.load_model` for keras-ssd models.

    Args:
        path: a `.keras` file written by `model.save`.
        compile: bool, restore the compiled loss and optimizer state.
        custom_objects: optional dict of further custom objects.
        **kwargs: passed to `keras.saving.load_model`.

    Returns:
        The model, with its `config` (`SSDConfig`) and class names.
    """
    import keras

    register_keras_ssd_objects()
    return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile,
                                   **kwargs)
