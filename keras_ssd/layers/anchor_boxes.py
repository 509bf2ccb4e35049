"""`AnchorBoxes`: the SSD anchors (priors) of a configuration as a model
tensor."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_ssd.anchors import feature_map_anchors, generate_anchors
from keras_ssd.config import SSDConfig


def _as_config(config):
    try:
        return SSDConfig.from_dict(config)
    except (TypeError, ValueError) as e:  # a dict with bad field types
        raise ValueError(f"AnchorBoxes: invalid SSD config: {e}") from e


@keras.saving.register_keras_serializable(package="keras_ssd")
class AnchorBoxes(keras.layers.Layer):
    """Emits the anchors (priors) of an `SSDConfig`, repeated over the batch.

    The anchors come from `keras_ssd.anchors` (the single place the formula
    lives), so a model, its target encoder and its decoder always agree. The
    layer has no weights; the anchors are rebuilt from the configuration
    when a saved model is loaded.

    Args:
        config: `SSDConfig` (or its dict form).
        feature_map_index: optional int. When given, the layer takes that
            feature map `(B, H, W, C)` and emits only its `H * W * k` anchors;
            `(H, W)` must equal `config.feature_map_shapes[index]`. When
            `None`, the layer takes the model's predictions `(B, N, ...)` and
            emits all `N == config.num_anchors` anchors.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: the feature map or the predictions tensor; only its batch
            size and shape are used.

    Returns:
        float32 tensor `(B, num_anchors, 4)` of normalised `(cx, cy, w, h)`
        anchors, ordered map, row, column, box (the order the heads emit).

    Example:

    >>> config = SSDConfig.ssd300(num_classes=20)
    >>> AnchorBoxes(config)(np.zeros((2, 8732, 25), "float32")).shape
    (2, 8732, 4)
    """

    def __init__(self, config, feature_map_index=None, **kwargs):
        super().__init__(**kwargs)
        self.config = _as_config(config)
        num_maps = len(self.config.feature_map_sizes)
        if feature_map_index is not None:
            if (
                isinstance(feature_map_index, bool)
                or not isinstance(feature_map_index, (int, np.integer))
                or not 0 <= int(feature_map_index) < num_maps
            ):
                raise ValueError(
                    f"AnchorBoxes: feature_map_index must be an int in [0, {num_maps}), "
                    f"got {feature_map_index!r}"
                )
            feature_map_index = int(feature_map_index)
            self._anchors = feature_map_anchors(self.config, feature_map_index)
        else:
            self._anchors = generate_anchors(self.config)
        self.feature_map_index = feature_map_index

    @property
    def num_anchors(self):
        """Number of anchors the layer emits per image."""
        return int(self._anchors.shape[0])

    @property
    def num_priors(self):
        """Deprecated name of `num_anchors`."""
        warnings.warn(
            "AnchorBoxes.num_priors is deprecated; use AnchorBoxes.num_anchors",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.num_anchors

    def _check_shape(self, shape):
        shape = tuple(shape)
        if self.feature_map_index is None:
            if len(shape) < 2:
                raise ValueError(
                    "AnchorBoxes: expected predictions of shape (batch, num_anchors, "
                    f"...), got {shape}"
                )
            n = shape[1]
            if n is not None and int(n) != self.num_anchors:
                raise ValueError(
                    f"AnchorBoxes: predictions have {n} priors but the SSD config has "
                    f"{self.num_anchors} (feature maps {self.config.feature_map_sizes}, "
                    f"boxes per cell {self.config.boxes_per_cell})"
                )
        else:
            fh, fw = self.config.feature_map_shapes[self.feature_map_index]
            if len(shape) != 4:
                raise ValueError(
                    f"AnchorBoxes(feature_map_index={self.feature_map_index}): expected a "
                    f"feature map of shape (batch, height, width, channels), got {shape}"
                )
            for name, size, f in (("height", shape[1], fh), ("width", shape[2], fw)):
                if size is not None and int(size) != f:
                    raise ValueError(
                        f"AnchorBoxes(feature_map_index={self.feature_map_index}): "
                        f"feature map {name} is {size} but the SSD config says {f} "
                        f"(feature_map_sizes={self.config.feature_map_sizes}); the "
                        "backbone and the config disagree"
                    )

    def build(self, input_shape):
        self._check_shape(input_shape)

    def call(self, inputs):
        self._check_shape(inputs.shape)
        batch = ops.shape(inputs)[0]
        anchors = ops.convert_to_tensor(self._anchors, dtype="float32")
        return ops.broadcast_to(anchors[None], (batch, self.num_anchors, 4))

    def compute_output_shape(self, input_shape):
        self._check_shape(input_shape)
        return (input_shape[0], self.num_anchors, 4)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        base = super().get_config()
        base.update(
            {
                "config": self.config.to_dict(),
                "feature_map_index": self.feature_map_index,
            }
        )
        return base
