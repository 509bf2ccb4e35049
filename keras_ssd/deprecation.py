"""One way to deprecate: a `DeprecationWarning` that names the old spelling,
what to use instead and the release that removes it (CHANGELOG.md,
"Deprecations"). Standard library only, so the data modules (`presets`,
`config`) can use it.
"""

import dataclasses
import os
import sys
import warnings

#: The release that removes what 0.2.0 deprecates.
REMOVED_IN = "0.3.0"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_DATACLASSES = dataclasses.__file__


def _inside(code):
    """Whether a frame's code is keras-ssd's, or what runs a dataclass'
    `__post_init__` (`dataclasses.replace`, the generated `__init__`)."""
    name = code.co_filename
    return name.startswith(_PACKAGE_DIR) or name == _DATACLASSES or name.startswith("<")


def warn_deprecated(old, new):
    """Warn that `old` is deprecated: use `new`; it goes in `REMOVED_IN`.

    The warning is attributed to the first caller outside keras-ssd (and
    outside the dataclass machinery that validates `SSDConfig`), however
    deep inside the package the old spelling was read, so Python's default
    filters show it for a script's own call and `-W error` points at it.

    Args:
        old: str, the deprecated spelling, as the user wrote it.
        new: str, what to write instead.

    Example:
    >>> warn_deprecated("architecture='ssd_tiny'", "architecture='tiny'")
    """
    frame, level = sys._getframe(1), 2
    while frame is not None and _inside(frame.f_code):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{old} is deprecated and goes in keras-ssd {REMOVED_IN}: use {new}",
                  DeprecationWarning, stacklevel=level)
