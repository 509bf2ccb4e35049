"""Checking and reading backbone weight files."""

import os
import warnings


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
