"""Quiet start-up: TensorFlow, absl and CUDA print 6-8 lines of logs when
TensorFlow loads (CPU feature notes, "Could not find cuda drivers", a cuInit
error on a machine without a GPU), before keras-ssd has said anything.

`quiet_import()` loads Keras (and through it the backend) with those logs
silenced: environment variables the C++ side reads before it starts
(`TF_CPP_MIN_LOG_LEVEL`), and, for the lines absl writes before its logging
is set up (which no variable silences), the process' standard error (file
descriptor 2) pointed at a temporary file while TensorFlow loads and finds
its devices. If the import fails, what was captured is written out, so a
real error is never hidden. `keras-ssd --verbose` skips all of it.
"""

import os
import sys
import tempfile

#: Environment set before TensorFlow loads (unless already set).
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO, WARNING and ERROR logs
    "GRPC_VERBOSITY": "ERROR",
    "KMP_WARNINGS": "0",
}

_state = {"verbose": False, "done": False}


def set_verbose(verbose):
    """Record the `--verbose` choice of this process (before `quiet_import`)."""
    _state["verbose"] = bool(verbose)


def is_verbose():
    return _state["verbose"]


def quiet_import():
    """Import Keras (and its backend) without the start-up noise, once.

    A no-op with `--verbose`, or when Keras is already imported.
    """
    if _state["done"] or "keras" in sys.modules:
        _state["done"] = True
        return
    _state["done"] = True
    if _state["verbose"]:
        return
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (e.g. an embedded interpreter)
        _import_backend()
        return
    captured = tempfile.TemporaryFile()
    failed = True
    try:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        _import_backend()
        failed = False
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stream must not hide the import's
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if failed:
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            if text:
                sys.stderr.write(text)
        captured.close()
    _quiet_python_loggers()


def _import_backend():
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # Device discovery is where cuInit runs and logs on a machine
        # without a GPU: do it now, while the logs are captured.
        tf.config.list_physical_devices()


def _quiet_python_loggers():
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
