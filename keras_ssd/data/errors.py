"""Errors and the skip-or-raise policy shared by the dataset readers."""

import logging

logger = logging.getLogger("keras_ssd.data")

ON_ERROR_CHOICES = ("raise", "skip")


class DataError(ValueError):
    """A problem with one file of a dataset.

    The message always starts with the file's path, then says what is wrong,
    e.g. ``VOC2007/Annotations/000123.xml: object 2 has unknown class 'dgo'``.

    Args:
        path: the offending file (or `None` when no file is involved).
        problem: what is wrong with it, in words.

    The exception pickles with its fields, so it crosses a
    `use_multiprocessing=True` worker boundary intact.
    """

    def __init__(self, path, problem):
        self.path = None if path is None else str(path)
        self.problem = str(problem)
        super().__init__(self.problem if path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


def check_on_error(on_error):
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(
            f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}"
        )
    return on_error


class ErrorLog:
    """Applies an `on_error` policy: re-raise, or log a warning and count.

    Args:
        on_error: `"raise"` or `"skip"`.
        what: name of the reader, used in the summary line.
    """

    def __init__(self, on_error, what):
        self.on_error = check_on_error(on_error)
        self.what = what
        self.skipped = []

    def handle(self, error):
        """Raise `error` (raise mode) or record it with a warning (skip mode)."""
        if self.on_error == "raise":
            raise error
        self.skipped.append((error.path, error.problem))
        logger.warning("%s: skipped %s", self.what, error)

    def summarise(self, total):
        if self.skipped:
            logger.warning(
                "%s: skipped %d of %d records because of bad input (see the "
                "warnings above, or the dataset's `.skipped` list)",
                self.what, len(self.skipped), total,
            )
