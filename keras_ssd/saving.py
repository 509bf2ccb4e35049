"""Loading keras-ssd models: make sure every keras-ssd object is registered
with Keras first, and check a `.keras` archive's declared sizes before
Keras reads it."""

import os
import zipfile

#: The most bytes the JSON entries of a `.keras` file (`config.json`,
#: `metadata.json`) may declare: Keras reads them whole into memory, and a
#: detector's config is a few tens of kB.
MAX_KERAS_JSON_BYTES = 32 << 20
#: A compressed entry may inflate to at most this many times its compressed
#: size (plus `INFLATION_SLACK_BYTES`); Keras itself stores entries
#: uncompressed.
MAX_INFLATION = 100
INFLATION_SLACK_BYTES = 1 << 20


class KerasFileError(ValueError):
    """A `.keras` file refused before Keras read it; the message names the
    file and the entry."""


def check_keras_archive(path):
    """Refuse a `.keras` archive whose entries declare sizes that could not be
    honest or that would inflate beyond the bounds above.

    Only the zip's central directory is read. A file that is not a zip is
    left to Keras' own error.

    Raises:
        KerasFileError: naming the file, the entry and the sizes.
    """
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return
    with archive:
        for info in archive.infolist():
            name, size, packed = info.filename, info.file_size, info.compress_size
            if name.endswith(".json") and size > MAX_KERAS_JSON_BYTES:
                raise KerasFileError(
                    f"{path}: its entry {name!r} declares {size} bytes, more than the "
                    f"{MAX_KERAS_JSON_BYTES} a model's JSON may take; refused before "
                    "reading")
            if info.compress_type == zipfile.ZIP_STORED and size != packed:
                raise KerasFileError(
                    f"{path}: its stored entry {name!r} declares {size} bytes but holds "
                    f"{packed}; refused before reading")
            if size > MAX_INFLATION * packed + INFLATION_SLACK_BYTES:
                raise KerasFileError(
                    f"{path}: its entry {name!r} would inflate from {packed} to {size} "
                    f"bytes (more than {MAX_INFLATION} times); refused before reading")


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

    from keras_ssd.accel.legacy_files import plain_conv_copy

    check_keras_archive(path)
    register_keras_ssd_objects()
    with plain_conv_copy(path) as readable:  # 0.1 files: WinogradConv2D -> Conv2D
        return keras.saving.load_model(readable, custom_objects=custom_objects,
                                       compile=compile, **kwargs)
