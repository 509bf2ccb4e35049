"""Loading keras-ssd models: make sure every keras-ssd object is registered
with Keras first."""

def register_keras_ssd_objects():
    """Import the modules that register keras-ssd layers, models, losses and
    schedules, so `keras.saving.load_model` can rebuild them."""
    import keras_ssd.accel.winograd_conv  # noqa: F401  (files saved by 0.1 name it)
    import keras_ssd.layers  # noqa: F401
    import keras_ssd.losses  # noqa: F401
    import keras_ssd.models  # noqa: F401
    import keras_ssd.training.schedules  # noqa: F401


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

    from keras_ssd.accel.legacy_files import plain_conv_copy

    register_keras_ssd_objects()
    with plain_conv_copy(path) as readable:  # 0.1 files: WinogradConv2D -> Conv2D
        return keras.saving.load_model(readable, custom_objects=custom_objects,
                                       compile=compile, **kwargs)
