"""Checking and reading backbone weight files."""

import os
import warnings


class DownloadError(OSError):
    """A file could not be downloaded (no network, a dead link)."""


def imagenet_application(build, what):
    """`build()`, a `keras.applications` constructor called with
    `weights="imagenet"`, with a failed download of its weights raised as a
    `DownloadError` that says what to do offline (Keras raises a bare
    `Exception` with the URL and the socket error)."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - keras.utils.get_file's bare Exception
        if not isinstance(e, OSError) and "URL fetch failure" not in str(e):
            raise
        reason = " ".join(str(e).split())[:200]
        raise DownloadError(
            f"could not download the ImageNet weights of {what} ({reason}); offline, "
            "give a local .h5 file of it (backbone_weights=PATH, --backbone-weights "
            "PATH) or random weights (None, --backbone-weights none)"
        ) from None


def check_weights_path(weights, what):
    """Return `weights` as a path string after checking it names an existing
    Keras `.h5` / `.weights.h5` file; `ValueError` otherwise. `what` names
    the expected model in the message."""
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            f"backbone_weights must be None, 'imagenet' or a path to a {what} "
            f"weights file, got {weights!r}"
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(f"backbone_weights file not found: {path}")
    if not path.endswith(".h5"):
        raise ValueError(
            f"backbone_weights file {path} must be a Keras '.h5' or '.weights.h5' "
            f"file of a {what}"
        )
    return path


def load_into(model, path):
    """`model.load_weights(path)`, also failing on partial loads."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for w in caught:
        text = str(w.message)
        if "could not be loaded" in text or "mismatch" in text.lower():
            raise ValueError(text)


#: The most bytes the JSON entries of a `.keras` file (`config.json`,
#: `metadata.json`) may declare: Keras reads them whole into memory, and a
#: detector's config is a few tens of kB.
MAX_KERAS_JSON_BYTES = 32 << 20


class KerasFileError(ValueError):
    """A `.keras` file refused before Keras read it; the message names the
    file and the entry."""


def check_keras_archive(path):
    """Refuse a `.keras` archive whose entries declare sizes that could not be
    honest or that would inflate beyond `keras_ssd.archives.MAX_INFLATION`,
    or JSON entries beyond `MAX_KERAS_JSON_BYTES`.

    Only the zip's central directory is read. A file that is not a zip is
    left to Keras' own error.

    Raises:
        KerasFileError: naming the file, the entry and the sizes.
    """
    import zipfile

    from keras_ssd.archives import declared_size_problem

    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return
    with archive:
        for info in archive.infolist():
            if info.filename.endswith(".json") and info.file_size > MAX_KERAS_JSON_BYTES:
                raise KerasFileError(
                    f"{path}: its entry {info.filename!r} declares {info.file_size} bytes, "
                    f"more than the {MAX_KERAS_JSON_BYTES} a model's JSON may take; "
                    "refused before reading")
            problem = declared_size_problem(info)
            if problem is not None:
                raise KerasFileError(f"{path}: {problem}")
