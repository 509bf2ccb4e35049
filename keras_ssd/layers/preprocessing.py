"""Input preprocessing inside the model: the model takes RGB pixels 0..255."""

import keras
from keras import ops

#: ImageNet channel means in BGR order, as Keras' "caffe" preprocessing uses.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
#: ImageNet channel mean / std in RGB order ("torch" preprocessing).
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)

MODES = ("caffe", "tf", "torch", "none")


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

    Args:
        mode: one of `"caffe"`, `"tf"`, `"torch"`, `"none"`. Defaults to
            `"caffe"`.
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

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(
                f"ImagePreprocessing: mode must be one of {MODES}, got {mode!r}"
            )
        self.mode = mode

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
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


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
