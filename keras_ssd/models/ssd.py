"""`SSD`: a serializable Keras functional model carrying its `SSDConfig`."""

import keras

from keras_ssd.config import SSDConfig
from keras_ssd.layers.preprocessing import ImagePreprocessing, preprocessing_arguments
from keras_ssd import presets
from keras_ssd.models.backbones import get_backbone
from keras_ssd.models.blocks import NORMALIZATIONS, kernel_regularizer
from keras_ssd.models.fast_predict import fast_path_applies, predict_arrays
from keras_ssd.models.heads import build_heads, check_feature_maps
from keras_ssd.models.weights_files import check_weights_path


#: The `DecodeDetections` options a model's `postprocessing` may set.
POSTPROCESSING_KEYS = ("confidence_threshold", "iou_threshold", "max_candidates_per_class",
                       "top_k", "clip_boxes", "max_log_scale")


def check_postprocessing(postprocessing):
    """`postprocessing` as a dict of `DecodeDetections` options (or None);
    `ValueError` naming any key outside `POSTPROCESSING_KEYS`."""
    if postprocessing is None:
        return None
    if not isinstance(postprocessing, dict):
        raise ValueError(
            f"SSD: postprocessing must be None or a dict, got {postprocessing!r}")
    unknown = sorted(set(postprocessing) - set(POSTPROCESSING_KEYS))
    if unknown:
        raise ValueError(
            f"SSD: unknown postprocessing keys {unknown}; expected some of "
            f"{list(POSTPROCESSING_KEYS)}")
    return dict(postprocessing)


@keras.saving.register_keras_serializable(package="keras_ssd")
class SSD(keras.Model):
    """Single Shot MultiBox Detector (Liu et al. 2016) as a Keras model.

    A functional model (built in `__init__`, like keras-hub backbones) whose
    config is its constructor arguments, so `keras.saving.load_model` returns
    an `SSD` with its `config` (priors) and `class_names` and no extra
    arguments. Usually built through `SSD300`, `SSD512`, `SSDTiny`,
    `SSDMobileNetV2`, `SSDLite320` or `build_model`.

    The model takes RGB images of `config.image_shape` (height, width; any
    aspect ratio) with values in [0, 255] and preprocesses them itself (an `ImagePreprocessing` layer). Each feature map `i` gets a 3x3 conv with `k_i * 4` box offsets
    and one with `k_i * (num_classes + 1)` class logits, reshaped and
    concatenated in the order of `keras_ssd.anchors.generate_anchors(config)`
    (map, row, column, box).

    Args:
        config: `SSDConfig` (or its dict): priors, `num_classes` and
            `class_names`. Its `feature_map_sizes` must match what the
            architecture produces at `config.image_size`, else `ValueError`.
        architecture: variant name from `keras_ssd.presets` (`"ssd300"`,
            `"ssd512"`, `"mobilenet_v2"`, `"ssdlite320"`, `"tiny"`; the 0.1 spellings such as
            `"ssd300_vgg16"` are read as aliases).
        normalization: `"l2"` (L2Normalization, scale 20), `"batchnorm"` or
            `"none"` on the first (shallow) source map; `None` picks the
            architecture's default (`"l2"` for VGG16, `"none"` otherwise).
        weight_decay: float >= 0, SGD-style weight decay on convolution
            kernels (not biases, batch-norm or L2Normalization parameters).
            Implemented as `keras.regularizers.L2(weight_decay / 2)`: Keras'
            `L2(l)` adds `l * sum(w ** 2)` to the loss, gradient `2 * l * w`,
            so `l = wd / 2` gives the Caffe/PyTorch decay `wd * w`.
        preprocessing: what the `ImagePreprocessing` layer does to the RGB
            0..255 input: `None` (default) takes the architecture's preset
            (`"caffe"` for VGG16, `"tf"` for MobileNetV2), a mode name, or a
            dict of `ImagePreprocessing` arguments such as `{"mode":
            "custom", "channel_order": "rgb", "mean": [123, 117, 104]}`
            (converted checkpoints carry their source's).
        postprocessing: `None` or a dict of `DecodeDetections` defaults
            (`confidence_threshold`, `iou_threshold`,
            `max_candidates_per_class`, `top_k`, `clip_boxes`,
            `max_log_scale`) that the model's source used; stored with the
            model (`model.postprocessing`) for the inference helpers.
        image_size: optional int or `(height, width)`: build the network at
            this input size instead of `config.image_size`. The feature map
            shapes are read from the network and the config adapted
            (`SSDConfig.with_image_size`: prior sizes kept in pixels); the
            model's `config` is the adapted one.
        letterbox: optional bool, sets `config.letterbox`: the model's
            images are letterboxed (aspect kept, mean padding) instead of
            stretched, in training, evaluation and prediction.
        frozen_layers: optional list of layer names made untrainable (e.g.
            `keras_ssd.models.pretrained.FREEZE_MODES["conv1-conv2"]`);
            stored with the model, so a saved and resumed run keeps them
            frozen. `model.frozen_layers` lists them.
        backbone_weights: `None` (random init), `"imagenet"` (download the
            Keras application's ImageNet weights) or a path to a `.h5` /
            `.weights.h5` file (VGG16: a full `keras.applications.VGG16`
            with top, its fc1/fc2 decimated into fc6/fc7; MobileNetV2: with or
            without top). Not stored in the model config: a saved model
            restores its own weights.
        **kwargs: `name`, `trainable`.

    Call arguments:
        inputs: float tensor `(B, image_height, image_width, 3)`, RGB 0..255.

    Returns:
        float32 tensor `(B, config.num_anchors, 4 + num_classes + 1)`: the
        encoded box offsets `(cx, cy, w, h)` then the class logits, index 0
        = background.

    Example:

    >>> model = SSD(SSDConfig.tiny(num_classes=3), architecture="tiny")
    >>> model.output_shape
    (None, 2390, 8)
    >>> model.class_names
    ['class_0', 'class_1', 'class_2']
    """

    def __init__(self, config, architecture="ssd300", normalization=None,
                 weight_decay=0.0, backbone_weights=None, preprocessing=None,
                 postprocessing=None, image_size=None, letterbox=None, frozen_layers=None,
                 **kwargs):
        config = SSDConfig.from_dict(config.to_dict() if isinstance(config, SSDConfig)
                                     else config)
        if keras.config.image_data_format() != "channels_last":
            raise ValueError(
                "keras_ssd models need keras.config.image_data_format() == "
                f"'channels_last', got {keras.config.image_data_format()!r}"
            )
        preset = presets.find(architecture)
        if preset is None:
            raise ValueError(
                f"unknown SSD architecture {architecture!r}; choose one of "
                f"{', '.join(presets.names())}"
            )
        architecture = preset.name
        backbone = get_backbone(preset.backbone)
        if normalization is None:
            normalization = preset.normalization
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"SSD: normalization must be one of {NORMALIZATIONS} or None, "
                f"got {normalization!r}"
            )
        regularizer = kernel_regularizer(weight_decay)
        if backbone_weights is not None:
            if backbone.load_weights is None:
                raise ValueError(
                    f"SSD architecture {architecture!r} has no pretrained backbone; "
                    f"backbone_weights must be None, got {backbone_weights!r}"
                )
            if not (isinstance(backbone_weights, str) and backbone_weights == "imagenet"):
                check_weights_path(backbone_weights, f"{architecture} backbone")

        if preprocessing is None:
            preprocessing = preset.preprocessing
        preprocessing_layer = ImagePreprocessing(
            **preprocessing_arguments(preprocessing), name="preprocessing")
        postprocessing = check_postprocessing(postprocessing)

        if letterbox is not None:
            config = config.replace(letterbox=letterbox)
        if image_size is None:
            height, width = config.image_shape
        else:  # validated as SSDConfig.image_size is
            height, width = config.replace(image_size=image_size).image_shape
        inputs = keras.Input(shape=(height, width, 3), name="image")
        x = preprocessing_layer(inputs)
        try:
            sources = backbone.build_features(x, normalization=normalization,
                                              regularizer=regularizer)
        except ValueError as e:
            if "zero or negative" not in str(e):
                raise
            raise ValueError(
                f"SSD: the input {height}x{width} is too small for the {architecture!r} "
                f"network (a feature map would be empty): {e}") from None
        if image_size is not None:
            # The maps the network makes at this size decide the geometry.
            config = config.with_image_size(
                (height, width), [tuple(int(d) for d in t.shape[1:3]) for _, t in sources])
        check_feature_maps(sources, config, architecture)
        outputs = (backbone.build_heads or build_heads)(sources, config, regularizer)

        kwargs.setdefault("name", architecture)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self._ssd_config = config
        self.architecture = architecture
        self.normalization = normalization
        self.weight_decay = float(weight_decay)
        self.preprocessing = preprocessing_layer.spec
        self.postprocessing = postprocessing
        # Not part of the config (a saved model carries its weights): read by
        # `train_detector` to pick the from-scratch or the pretrained recipe.
        self.pretrained_backbone = backbone_weights is not None
        self.source_names = [name for name, _ in sources]
        self.frozen_layers = ()
        self.freeze(frozen_layers or ())
        if backbone_weights is not None:
            backbone.load_weights(self, backbone_weights)

    def freeze(self, layer_names):
        """Make the named layers untrainable (they stay so in saved copies).

        Args:
            layer_names: names of layers of this model.

        Returns:
            `self.frozen_layers`, all the frozen layer names so far.

        Raises:
            ValueError: naming the layers the model does not have.
        """
        names = [str(n) for n in layer_names]
        have = {layer.name for layer in self.layers}
        missing = [n for n in names if n not in have]
        if missing:
            raise ValueError(
                f"SSD {self.name!r} ({self.architecture}) has no layer(s) "
                f"{', '.join(missing)} to freeze")
        for name in names:
            self.get_layer(name).trainable = False
        self.frozen_layers = tuple(self.frozen_layers) + tuple(
            n for n in names if n not in self.frozen_layers)
        return self.frozen_layers

    def at_image_size(self, image_size, letterbox=None):
        """This model at another input size, with the same weights.

        The network is fully convolutional, so its weights serve at any
        size: a model trained at 300 x 300 can run at `(300, 540)`. The
        priors follow the new feature maps (`SSDConfig.with_image_size`).
        Frozen layers stay frozen.

        Args:
            image_size: int or `(height, width)`.
            letterbox: optional bool: also set `config.letterbox`.

        Returns:
            A new `SSD` (this one unchanged), or this model when nothing
            changes.
        """
        config = self._ssd_config
        same_size = config.replace(image_size=image_size).image_shape == config.image_shape
        if same_size and (letterbox is None or bool(letterbox) == config.letterbox):
            return self
        kwargs = self.get_config()
        if letterbox is not None:
            kwargs["config"] = config.replace(letterbox=bool(letterbox)).to_dict()
        if not same_size:
            kwargs["image_size"] = image_size
        model = type(self).from_config(kwargs)
        model.set_weights(self.get_weights())
        for new, old in zip(model.layers, self.layers):
            new.trainable = old.trainable
        return model

    @property
    def config(self):
        """The `SSDConfig` (priors, classes) this model was built for."""
        return self._ssd_config

    @property
    def class_names(self):
        """The names of the classes it detects (without background), `class_0`,
        ... if unnamed: `config.detection_names` (a class-subset model's
        subset)."""
        return self._ssd_config.detection_names

    @property
    def num_classes(self):
        """The number of classes it detects (`config.num_detection_classes`;
        the network predicts `config.num_classes`)."""
        return self._ssd_config.num_detection_classes

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`, without its per-call set-up for arrays.

        For in-memory arrays (no `steps`, no callbacks, no distribution
        strategy) this runs the same compiled predict step through
        `keras_ssd.models.fast_predict.predict_arrays` (also
        `keras_ssd.accel.runtime.predict_arrays`), sparing the ~50-100 ms that
        `predict` spends building a data pipeline on every call (a sixth of
        an SSD300 forward pass on a CPU); no progress bar is shown then.
        Datasets, generators and everything else go to `keras.Model.predict`.
        """
        if fast_path_applies(self, x, steps, callbacks):
            return predict_arrays(self, x, batch_size=32 if batch_size is None else batch_size)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                               callbacks=callbacks)

    def load_own_variables(self, store):
        # keras-ssd 0.1 made the 3x3 stride-1 convolutions WinogradConv2D
        # layers, and Keras names stored weights after the layer classes:
        # such a file needs its weights renamed, which keras_ssd.load_model
        # and keras_ssd.accel.legacy_files.load_weights do. Say so instead of
        # failing on mismatched shapes.
        has_path = getattr(store, "has_path", None)
        if (getattr(store, "_h5_entry_path", None) == "" and callable(has_path)
                and has_path("layers/winograd_conv2d")):
            raise ValueError(
                f"{self.name!r} was saved by keras-ssd 0.1 (its convolutions were "
                "WinogradConv2D layers, stored under other names): load a .keras file "
                "with keras_ssd.load_model(path), a .weights.h5 file with "
                "keras_ssd.accel.legacy_files.load_weights(model, path); both read it "
                "as plain Conv2D layers"
            )
        super().load_own_variables(store)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "config": self._ssd_config.to_dict(),
            "architecture": self.architecture,
            "normalization": self.normalization,
            "weight_decay": self.weight_decay,
            "backbone_weights": None,
            "preprocessing": self.preprocessing,
            "postprocessing": None if self.postprocessing is None else dict(self.postprocessing),
            **({"frozen_layers": list(self.frozen_layers)} if self.frozen_layers else {}),
        }

    @classmethod
    def from_config(cls, config):
        # A saved model carries its weights: `backbone_weights` in a config
        # (a hand-edited or hostile file) must not download or read anything.
        config = {**config, "backbone_weights": None}
        return cls(**config)
