"""Loading keras-ssd models: make sure every keras-ssd object is registered
with Keras first, and check a `.keras` archive's declared sizes before
Keras reads it (`keras_ssd.models.weights_files.check_keras_archive`)."""

from keras_ssd.models.weights_files import KerasFileError, check_keras_archive

__all__ = ["KerasFileError", "check_keras_archive", "load_model",
           "register_keras_ssd_objects"]


def register_keras_ssd_objects():
    """Import the modules that register keras-ssd layers, models, losses and
    schedules, so `keras.saving.load_model` can rebuild them."""
    import keras_ssd.accel.winograd_conv  # noqa: F401
    import keras_ssd.layers  # noqa: F401
    import keras_ssd.losses  # noqa: F401
    import keras_ssd.models  # noqa: F401
    import keras_ssd.schedules  # noqa: F401


def load_model(path, compile=True, custom_objects=None, **kwargs):
    """`keras.saving.load_model` for keras-ssd models.

    The archive's declared sizes are checked first (`check_keras_archive`);
    Keras' safe mode stays on, and the model is rebuilt from its config and
    the archive's weights only (an `SSD` config's `backbone_weights` is
    ignored, so loading never downloads or reads another file).

    Args:
        path: a `.keras` file written by `model.save`.
        compile: bool, restore the compiled loss and optimizer state.
        custom_objects: optional dict of further custom objects.
        **kwargs: passed to `keras.saving.load_model`.

    Returns:
        The model, with its `config` (`SSDConfig`) and class names.

    Raises:
        KerasFileError: the archive declares entries beyond the bounds.
    """
    import keras

    check_keras_archive(path)
    register_keras_ssd_objects()
    return keras.saving.load_model(path, custom_objects=custom_objects, compile=compile,
                                   **kwargs)
