"""L2 normalisation with a learnable per-channel scale (ParseNet / SSD conv4_3)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_ssd")
class L2Normalization(keras.layers.Layer):
    """L2-normalise features along one axis, then multiply by a learnable scale.

    SSD applies this to VGG16's `conv4_3` output, whose activations are much
    larger than those of the deeper maps: each spatial position's feature
    vector is divided by its L2 norm and multiplied by a per-channel scale
    `gamma` initialised to 20 (Liu et al. 2016, after ParseNet).

    The norm is always computed in float32, even under a mixed-precision
    policy: the sum of squares of 512 float16 activations of a few hundred
    overflows float16.

    Args:
        scale_init: float, initial value of every channel's scale. Defaults
            to 20, the SSD value.
        axis: int, the axis to normalise along (the channel axis). Defaults
            to -1 (channels last).
        epsilon: float, lower bound on the squared norm, so all-zero vectors
            map to zero instead of NaN. Defaults to 1e-10.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor of rank >= 2.

    Returns:
        A tensor of the same shape: `gamma * x / max(||x||_2, sqrt(epsilon))`.

    Example:

    >>> layer = L2Normalization(scale_init=20.0)
    >>> y = layer(np.ones((1, 2, 2, 4), "float32"))
    >>> float(y[0, 0, 0, 0])  # 20 * 1 / sqrt(4)
    10.0
    """

    def __init__(self, scale_init=20.0, axis=-1, epsilon=1e-10, **kwargs):
        super().__init__(**kwargs)
        try:
            self.scale_init = float(scale_init)
            self.epsilon = float(epsilon)
        except (TypeError, ValueError):
            raise ValueError(
                "L2Normalization: scale_init and epsilon must be numbers, got "
                f"scale_init={scale_init!r}, epsilon={epsilon!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"L2Normalization: axis must be an int, got {axis!r}")
        if self.epsilon <= 0:
            raise ValueError(f"L2Normalization: epsilon must be > 0, got {epsilon!r}")
        self.axis = axis
        self.supports_masking = True

    def build(self, input_shape):
        rank = len(input_shape)
        axis = self.axis if self.axis >= 0 else rank + self.axis
        if not 0 < axis < rank:
            raise ValueError(
                f"L2Normalization: axis={self.axis} is not a feature axis of an "
                f"input of shape {tuple(input_shape)}"
            )
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                "L2Normalization: the size of the normalised axis must be known, "
                f"got input shape {tuple(input_shape)}"
            )
        self._axis = axis
        self._rank = rank
        self.gamma = self.add_weight(
            name="gamma",
            shape=(channels,),
            initializer=keras.initializers.Constant(self.scale_init),
            trainable=True,
        )

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        sq = ops.sum(ops.square(x), axis=self._axis, keepdims=True)
        x = x * ops.rsqrt(ops.maximum(sq, self.epsilon))
        shape = [1] * self._rank
        shape[self._axis] = -1
        gamma = ops.reshape(ops.cast(self.gamma, "float32"), shape)
        return ops.cast(x * gamma, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"scale_init": self.scale_init, "axis": self.axis, "epsilon": self.epsilon}
        )
        return config
