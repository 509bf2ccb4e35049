"""Input preprocessing inside the model: the model takes RGB pixels 0..255."""

import numbers

import keras
from keras import ops

#: ImageNet channel means in BGR order, as Keras' "caffe" preprocessing uses.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
#: ImageNet channel mean / std in RGB order ("torch" preprocessing).
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "none", "custom")
#: `channel_order` values of the `"custom"` mode.
CHANNEL_ORDERS = ("rgb", "bgr")
_CUSTOM_KEYS = ("channel_order", "scale", "mean", "std")


def _three_floats(name, value, positive=False):
    try:
        values = [float(v) for v in value]
    except TypeError:
        values = [float(value)] * 3
    except ValueError:
        values = None
    if values is None or len(values) != 3 or any(v != v or abs(v) == float("inf")
                                                 for v in values):
        raise ValueError(
            f"ImagePreprocessing: {name} must be a number or 3 finite numbers, got {value!r}"
        )
    if positive and any(v <= 0 for v in values):
        raise ValueError(f"ImagePreprocessing: {name} must be positive, got {value!r}")
    return tuple(values)


def preprocessing_arguments(spec):
    """`ImagePreprocessing` keyword arguments from a preprocessing spec.

    Args:
        spec: a mode name (`"caffe"`, `"tf"`, `"torch"`, `"none"`) or a dict
            of `ImagePreprocessing` arguments (`mode` optional, `"custom"`
            when `channel_order`/`scale`/`mean`/`std` are given), as a preset
            or a converted checkpoint carries it.

    Returns:
        dict of keyword arguments for `ImagePreprocessing`.
    """
    if isinstance(spec, str):
        return {"mode": spec}
    if isinstance(spec, dict):
        spec = dict(spec)
        if "mode" not in spec:
            spec["mode"] = "custom" if any(k in spec for k in _CUSTOM_KEYS) else "caffe"
        unknown = sorted(set(spec) - {"mode", *_CUSTOM_KEYS})
        if unknown:
            raise ValueError(
                f"ImagePreprocessing: unknown preprocessing keys {unknown}; expected "
                f"mode, {', '.join(_CUSTOM_KEYS)}"
            )
        return spec
    raise ValueError(
        "preprocessing must be a mode name or a dict of ImagePreprocessing arguments, "
        f"got {spec!r}"
    )


@keras.saving.register_keras_serializable(package="keras_ssd")
class ImagePreprocessing(keras.layers.Layer):
    """Turn RGB pixel values in [0, 255] into what a backbone expects.

    Modes (the same names as `keras.applications.imagenet_utils`):

    - `"caffe"`: RGB -> BGR, then subtract the ImageNet BGR mean
      `(103.939, 116.779, 123.68)`; no scaling. Keras' VGG16 ImageNet weights
      (and the original Caffe SSD) expect this.
    - `"tf"`: scale to [-1, 1] (`x / 127.5 - 1`), as Keras' MobileNetV2
      weights expect.
    - `"torch"`: scale to [0, 1], subtract the ImageNet RGB mean and divide by
      its std.
    - `"none"`: identity.
    - `"custom"`: `(x[..., order] * scale - mean) / std`, with the channel
      order (`"rgb"` keeps the input's, `"bgr"` reverses it), the scale, and
      the per-channel mean and std (in the output channel order) given as
      arguments. torchvision's `ssd300_vgg16` is `channel_order="rgb",
      scale=1/255, mean=(0.48235, 0.45882, 0.40784), std=(1/255,) * 3`; the
      VOC ports of amdegroot/ssd.pytorch and lufficc/SSD are `"rgb"`, scale
      1, mean `(123, 117, 104)`, std 1.

    Args:
        mode: one of `"caffe"`, `"tf"`, `"torch"`, `"none"`, `"custom"`.
            Defaults to `"caffe"`.
        channel_order: `"custom"` only: `"rgb"` (default) or `"bgr"`.
        scale: `"custom"` only: a number multiplying the (reordered)
            pixels, default 1.
        mean: `"custom"` only: a number or 3 numbers subtracted after
            scaling, default 0.
        std: `"custom"` only: a positive number or 3, dividing at the end,
            default 1.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(..., 3)` RGB images, values in [0, 255] (any float or int
            dtype).

    Returns:
        A tensor of the same shape in the layer's compute dtype.

    Example:

    >>> y = ImagePreprocessing("caffe")(np.array([[[255.0, 0.0, 0.0]]]))  # red
    >>> np.round(np.asarray(y), 3).tolist()
    [[[-103.939, -116.779, 131.32]]]
    """

    def __init__(self, mode="caffe", channel_order=None, scale=None, mean=None, std=None,
                 **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"ImagePreprocessing: mode must be one of {MODES}, got {mode!r}"
            )
        self.mode = mode
        given = {k: v for k, v in zip(_CUSTOM_KEYS, (channel_order, scale, mean, std))
                 if v is not None}
        if mode != "custom":
            if given:
                raise ValueError(
                    f"ImagePreprocessing: {', '.join(given)} only apply to "
                    f"mode='custom', not mode={mode!r}"
                )
            self.channel_order = self.scale = self.mean = self.std = None
            return
        channel_order = "rgb" if channel_order is None else channel_order
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"ImagePreprocessing: channel_order must be one of {CHANNEL_ORDERS}, "
                f"got {channel_order!r}"
            )
        self.channel_order = channel_order
        scale = 1.0 if scale is None else scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (
            0 < float(scale) < float("inf")
        ):
            raise ValueError(
                f"ImagePreprocessing: scale must be one positive number, got {scale!r}"
            )
        self.scale = float(scale)
        self.mean = list(_three_floats("mean", 0.0 if mean is None else mean))
        self.std = list(_three_floats("std", 1.0 if std is None else std, positive=True))

    def build(self, input_shape):
        if input_shape[-1] != 3:
            raise ValueError(
                "ImagePreprocessing expects RGB images with 3 channels last, got "
                f"input shape {tuple(input_shape)}"
            )

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(CAFFE_BGR_MEAN, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_RGB_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_RGB_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "custom":
            if self.channel_order == "bgr":
                x = ops.flip(x, axis=-1)
            if self.scale != 1.0:
                x = x * ops.convert_to_tensor(self.scale, self.compute_dtype)
            x = x - ops.convert_to_tensor(self.mean, self.compute_dtype)
            if any(v != 1.0 for v in self.std):
                x = x / ops.convert_to_tensor(self.std, self.compute_dtype)
            return x
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        if self.mode == "custom":
            config.update({"channel_order": self.channel_order, "scale": self.scale,
                           "mean": list(self.mean), "std": list(self.std)})
        return config

    @property
    def spec(self):
        """The preprocessing as a spec (`preprocessing_arguments` reads it back):
        the mode name, or for `"custom"` a dict of its arguments."""
        if self.mode != "custom":
            return self.mode
        return {"mode": "custom", "channel_order": self.channel_order, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std)}


@keras.saving.register_keras_serializable(package="keras_ssd")
class CaffePreprocessing(ImagePreprocessing):
    """`ImagePreprocessing` defaulting to `mode="caffe"` (RGB -> BGR minus
    the ImageNet mean), the input convention of Keras' VGG16 ImageNet weights.

    Args:
        mode: see `ImagePreprocessing`. Defaults to `"caffe"`.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(..., 3)` RGB images with values in [0, 255].

    Returns:
        BGR images with the ImageNet BGR mean subtracted.

    Example:

    >>> CaffePreprocessing()(np.full((1, 1, 1, 3), 128.0)).shape
    (1, 1, 1, 3)
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(mode=mode, **kwargs)
