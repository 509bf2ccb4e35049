"""XLA clusters inside plain TensorFlow graphs: the package's CPU fast paths.

Keras' `jit_compile` is all or nothing per train/predict function, and on
CPU whole-model XLA is slower than TensorFlow's oneDNN kernels (see
`keras_ssd.accel.runtime`). Some pieces, though, are many small element-wise and
control-flow ops that XLA fuses well (the NMS loop, the box decoding, the
Winograd transforms); `xla_compiled` compiles just those pieces.
"""

import keras

_XLA_FUNCTIONS = {}


def xla_compiled(key, fn):
    """`fn` compiled as one XLA cluster on the TensorFlow backend.

    On the TensorFlow backend returns `tf.function(fn, jit_compile=True)`,
    cached under `key` (hashable, identifying `fn` and any options it closes
    over); on other backends returns `fn` unchanged (JAX compiles whole
    functions itself). The computation is the same `keras.ops` graph; XLA
    only fuses it.
    """
    if keras.backend.backend() != "tensorflow":
        return fn
    compiled = _XLA_FUNCTIONS.get(key)
    if compiled is None:
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=True)
        _XLA_FUNCTIONS[key] = compiled
    return compiled
