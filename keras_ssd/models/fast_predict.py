"""`predict_arrays`: `model.predict` for in-memory arrays without Keras'
per-call set-up. `SSD.predict` (and the views of
`keras_ssd.accel.prepare_for_inference`) take it for arrays; it is also
`keras_ssd.accel.runtime.predict_arrays`, for any built Keras model."""

import keras
import numpy as np


def fast_path_applies(model, x, steps=None, callbacks=None):
    """True when `model.predict(x, steps=steps, callbacks=callbacks)` can run
    as `predict_arrays`: `x` is one in-memory array or tensor, no `steps`, no
    callbacks, and no distribution strategy or Keras distribution in force."""
    return (steps is None and not callbacks
            and (isinstance(x, np.ndarray) or keras.ops.is_tensor(x))
            and getattr(model, "_distribute_strategy", None) is None
            and keras.distribution.distribution() is None)


def predict_arrays(model, x, batch_size=32):
    """`model.predict` for in-memory arrays without its per-call overhead.

    Keras' `predict` builds a data adapter, a `tf.data` pipeline and
    callbacks on every call, a cost that is a sizeable share of a batch-1
    forward pass on a CPU. This runs the same compiled predict step
    (`predict_on_batch`, honouring `model.jit_compile`) over slices of `x`
    and concatenates the results.

    Args:
        model: a built `keras.Model`.
        x: array (or a list/dict of arrays) with a leading batch axis.
        batch_size: int >= 1, images per step.

    Returns:
        The outputs, as `model.predict` returns them (numpy arrays, same
        nesting).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError("predict_arrays: x holds no arrays")
    n = int(leaves[0].shape[0])
    if any(int(leaf.shape[0]) != n for leaf in leaves):
        raise ValueError(
            "predict_arrays: all inputs must have the same batch size, got "
            f"{[int(leaf.shape[0]) for leaf in leaves]}"
        )
    outputs = []
    for start in range(0, n, batch_size):
        chunk = keras.tree.map_structure(lambda a: a[start:start + batch_size], x)
        outputs.append(model.predict_on_batch(chunk))
    if not outputs:
        raise ValueError("predict_arrays: x has an empty batch axis")
    if len(outputs) == 1:
        return keras.tree.map_structure(np.asarray, outputs[0])
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts, axis=0), *outputs)
