"""`SSD`: a serializable Keras functional model carrying its `SSDConfig`."""

import keras
from keras import ops

from keras_ssd.config import SSDConfig
from keras_ssd.layers.decode_detections import DecodeDetections, check_decode_options
from keras_ssd.losses import SSDLoss, replicas_in_sync
from keras_ssd.layers.preprocessing import ImagePreprocessing, preprocessing_arguments
from keras_ssd import presets
from keras_ssd.models.backbones import get_backbone
from keras_ssd.models.blocks import NORMALIZATIONS, kernel_regularizer
from keras_ssd.models.compile_config import (
    compile_config_for_this_backend, portable_compile_config,
)
from keras_ssd.models.decoding import DecodingPredictions
from keras_ssd.models.fast_predict import fast_path_applies, predict_arrays
from keras_ssd.models.heads import build_heads, check_feature_maps
from keras_ssd.models.weights_files import check_weights_path


def check_postprocessing(postprocessing):
    """`postprocessing` as a dict of decode options (`DECODE_OPTIONS`) or None."""
    if postprocessing is None:
        return None
    return check_decode_options(postprocessing, "SSD: postprocessing")


#: `SSD.architecture` of a model built on a backbone given to it.
CUSTOM_ARCHITECTURE = "backbone"


def _check_backbone(backbone, backbone_weights, normalization):
    """`backbone` if it is a built `keras.Model` with one image input and
    several named feature-map outputs; `ValueError` otherwise."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            f"SSD: backbone must be a keras.Model, got {type(backbone).__name__}")
    if backbone_weights is not None:
        raise ValueError("SSD: backbone_weights is for the registry's architectures; load "
                         "the weights into the backbone given instead")
    if normalization not in (None, "none"):
        raise ValueError("SSD: normalization applies to the registry's architectures; "
                         "put it in the backbone given instead")
    if len(backbone.inputs) != 1 or len(backbone.inputs[0].shape) != 4:
        raise ValueError(f"SSD: the backbone {backbone.name!r} must take one image input "
                         "(B, H, W, 3)")
    if len(backbone.outputs) < 1 or any(len(t.shape) != 4 for t in backbone.outputs):
        raise ValueError(f"SSD: the backbone {backbone.name!r} must output feature maps "
                         "(B, H, W, C)")
    return backbone


def _backbone_features(backbone):
    """`build_features` of a backbone model: `[(name, map)]` in its output
    order, named by its output dict's keys (else its output layers)."""

    def build(x, normalization=None, regularizer=None):
        fixed = tuple(backbone.inputs[0].shape[1:3])
        if any(d is not None and d != size for d, size in zip(fixed, x.shape[1:3])):
            raise ValueError(
                f"SSD: the backbone {backbone.name!r} takes {fixed[0]}x{fixed[1]} images, "
                f"the model's input is {x.shape[1]}x{x.shape[2]} (build the backbone for "
                "that size, or for any size: keras.Input((None, None, 3)))")
        maps = backbone(x)
        if isinstance(maps, dict):
            names = list(backbone.output.keys()) if isinstance(backbone.output, dict) \
                else list(maps)
            return [(str(name), maps[name]) for name in names]
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        names = [t._keras_history.operation.name for t in backbone.outputs]
        return list(zip(names, maps))

    return build


@keras.saving.register_keras_serializable(package="keras_ssd")
class SSD(DecodingPredictions, keras.Model):
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
            `"ssd512"`, `"mobilenet_v2"`, `"ssdlite320"`, `"ssdlite320_mobilenet_v2"`,
            `"tiny"`; the 0.1 spellings such as
            `"ssd300_vgg16"` are read as aliases): the short path to the
            registry's backbones. Ignored when `backbone` is given.
        backbone: optional `keras.Model` taking images `(B, H, W, 3)` and
            returning the feature maps the heads go on, as a dict `{name:
            map}` (or a list, named by their layers), in the config's order:
            for example a Keras Applications network's inner layers. Its
            maps must match `config.feature_map_sizes` (or pass
            `image_size=` to take them from the network). It becomes part
            of the model (saved with it, `model.backbone`); the input goes
            through `preprocessing` (default `"none"`) first. Example:
            `SSD(config, backbone=keras.Model(net.input, {"p3": ..., "p4":
            ...}))`.
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
        postprocessing: `None` or a dict of `DecodeDetections` options
            (`keras_ssd.layers.decode_detections.DECODE_OPTIONS`) that the
            model's source used; stored with the model
            (`model.postprocessing`), they set up its default
            `prediction_decoder`.
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
        Called (`model(images)`, what training, the loss and export use):
        float32 tensor `(B, config.num_anchors, 4 + num_classes + 1)`, the
        encoded box offsets `(cx, cy, w, h)` then the class logits, index 0
        = background. Through `predict` / `predict_on_batch` (keras-hub's
        pattern): the detections of `prediction_decoder`, a dict of
        `boxes` `(B, top_k, 4)` normalised xyxy, `scores`, `labels` (-1 on
        padding), `num_detections`, plus `category_ids` for a model whose
        classes have COCO ids (docs/outputs.md).

    Example:

    >>> model = SSD(SSDConfig.tiny(num_classes=3), architecture="tiny")
    >>> model.output_shape
    (None, 2390, 8)
    >>> model.class_names
    ['class_0', 'class_1', 'class_2']
    >>> model.predict(images)["boxes"].shape
    (batch, 200, 4)
    >>> model.prediction_decoder = model.prediction_decoder.replace(top_k=50)
    """

    def __init__(self, config, architecture="ssd300", normalization=None,
                 weight_decay=0.0, backbone_weights=None, preprocessing=None,
                 postprocessing=None, image_size=None, letterbox=None, frozen_layers=None,
                 backbone=None, **kwargs):
        config = SSDConfig.from_dict(config.to_dict() if isinstance(config, SSDConfig)
                                     else config)
        if keras.config.image_data_format() != "channels_last":
            raise ValueError(
                "keras_ssd models need keras.config.image_data_format() == "
                f"'channels_last', got {keras.config.image_data_format()!r}"
            )
        if backbone is not None:
            backbone = _check_backbone(backbone, backbone_weights, normalization)
            architecture, normalization = CUSTOM_ARCHITECTURE, "none"
            build = _backbone_features(backbone)
            default_preprocessing = "none"
            load_weights = None
            head_builder = build_heads
        else:
            preset = presets.find(architecture)
            if preset is None:
                raise ValueError(
                    f"unknown SSD architecture {architecture!r}; choose one of "
                    f"{', '.join(presets.names())}"
                )
            architecture = preset.name
            network = get_backbone(preset.backbone)
            normalization = preset.normalization if normalization is None else normalization
            build, default_preprocessing = network.build_features, preset.preprocessing
            load_weights = network.load_weights
            # A variant may bring its own heads (SSDLite's depthwise heads).
            head_builder = network.build_heads or build_heads
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"SSD: normalization must be one of {NORMALIZATIONS} or None, "
                f"got {normalization!r}"
            )
        regularizer = kernel_regularizer(weight_decay)
        if backbone_weights is not None:
            if load_weights is None:
                raise ValueError(
                    f"SSD architecture {architecture!r} has no pretrained backbone; "
                    f"backbone_weights must be None, got {backbone_weights!r}"
                )
            if not (isinstance(backbone_weights, str) and backbone_weights == "imagenet"):
                check_weights_path(backbone_weights, f"{architecture} backbone")

        if preprocessing is None:
            preprocessing = default_preprocessing
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
            sources = build(x, normalization=normalization, regularizer=regularizer)
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
        outputs = head_builder(sources, config, regularizer)

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
        # The backbone given (a nested layer, saved with the model's weights).
        self.backbone = backbone
        if backbone_weights is not None:
            load_weights(self, backbone_weights)

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

    def compile(self, *args, **kwargs):
        """`keras.Model.compile`; with an `SSDLoss`, `fit` and `evaluate`
        also log its parts, `conf_loss` and `loc_loss` (`compute_loss`)."""
        super().compile(*args, **kwargs)
        if self.__dict__.get("_loss_parts") is None:
            # Past Keras' attribute tracking: listed by `metrics` only while
            # an SSDLoss is compiled, never saved.
            object.__setattr__(self, "_loss_parts", (keras.metrics.Mean(name="conf_loss"),
                                                     keras.metrics.Mean(name="loc_loss")))

    def compile_from_config(self, config):
        # keras.Model's (which skips a model whose `compile` is its own), on
        # a config fit for this backend: files saved under torch before
        # `get_compile_config` named a private optimizer class, and a file's
        # jit_compile=True would mean torch.compile under torch.
        config = compile_config_for_this_backend(config)
        self.compile(**keras.saving.deserialize_keras_object(config))
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def _reports_loss_parts(self):
        return (getattr(self, "compiled", False) and isinstance(self.loss, SSDLoss)
                and self.loss.reduction in ("sum",) + SSDLoss.MEAN_REDUCTIONS
                and self.__dict__.get("_loss_parts") is not None)

    @property
    def metrics(self):
        metrics = super().metrics
        if self._reports_loss_parts():
            metrics = metrics[:1] + list(self._loss_parts) + metrics[1:]
        return metrics

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss plus the model's weight penalty, as Keras
        computes it; with an `SSDLoss` (and no sample weights), from
        `SSDLoss.loss_and_parts`, one hard negative mining giving the loss
        and its parts, which update the `conf_loss` and `loc_loss` metrics
        (`conf_loss + loc_loss (+ the weight penalty) == loss`)."""
        if not self._reports_loss_parts() or sample_weight is not None or y is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        loss, conf, loc = self.loss.loss_and_parts(y, y_pred)
        # Weighted by the batch size and scaled under tf.distribute as Keras
        # weighs and scales its tracked loss.
        scale = float(replicas_in_sync())
        size = ops.cast(ops.shape(y_pred)[0], "float32")
        for tracker, value in zip(self._loss_parts, (conf, loc)):
            tracker.update_state(value * scale, sample_weight=size)
        penalties = [self._aggregate_additional_loss(p) for p in self.losses]
        return ops.sum([loss, *penalties]) if penalties else loss

    @property
    def prediction_decoder(self):
        """The `DecodeDetections` layer that `predict` runs on the raw heads.

        By default `DecodeDetections(config, **postprocessing)` (Caffe's
        0.01 / 0.45 / 400 / 200, or a converted checkpoint's own settings).
        Set another one (for example `decoder.replace(top_k=50)`) to change
        what `predict` returns; it must be built for this model's config.
        Not saved with the model: `postprocessing` is.
        """
        decoder = self.__dict__.get("_prediction_decoder")
        if decoder is None:
            decoder = DecodeDetections(self._ssd_config, name="prediction_decoder",
                                       **(self.postprocessing or {}))
            object.__setattr__(self, "_prediction_decoder", decoder)
        return decoder

    @prediction_decoder.setter
    def prediction_decoder(self, decoder):
        if not isinstance(decoder, DecodeDetections):
            raise ValueError(
                f"SSD: prediction_decoder must be a DecodeDetections layer, got "
                f"{type(decoder).__name__}")
        if decoder.config.num_anchors != self._ssd_config.num_anchors or \
                decoder.config.num_classes != self._ssd_config.num_classes:
            raise ValueError(
                f"SSD: the prediction_decoder is built for {decoder.config.num_anchors} "
                f"priors and {decoder.config.num_classes} classes, the model has "
                f"{self._ssd_config.num_anchors} and {self._ssd_config.num_classes}")
        # Set past Keras' attribute tracking: the decoder holds no weights
        # and is not part of the saved model.
        object.__setattr__(self, "_prediction_decoder", decoder)
        self.predict_function = None

    def __setattr__(self, name, value):
        # `prediction_decoder` goes straight to its property setter. Keras'
        # `Layer.__setattr__` would first track the decoder as a sublayer
        # (in `layers`, on every backend), and under the torch backend
        # `torch.nn.Module.__setattr__` then files it in `_modules` without
        # calling the setter, so the getter kept returning the old decoder.
        if name == "prediction_decoder":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """`keras.Model.predict`: the detections of `prediction_decoder`.

        For in-memory arrays (no `steps`, no callbacks, no distribution
        strategy) this runs the same compiled predict step through
        `keras_ssd.models.fast_predict.predict_arrays`, sparing the data
        pipeline Keras builds on every call; no progress bar is shown then.
        Datasets, generators and everything else go to `keras.Model.predict`.

        Returns:
            dict of numpy arrays (see the class docstring).
        """
        if fast_path_applies(self, x, steps, callbacks):
            return predict_arrays(self, x, batch_size=32 if batch_size is None else batch_size)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                               callbacks=callbacks)

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
            **({"backbone": keras.saving.serialize_keras_object(self.backbone)}
               if self.backbone is not None else {}),
        }

    @classmethod
    def from_config(cls, config):
        if isinstance(config.get("backbone"), dict):
            config = {**config,
                      "backbone": keras.saving.deserialize_keras_object(config["backbone"])}
        # A saved model carries its weights: `backbone_weights` in a config
        # (a hand-edited or hostile file) must not download or read anything.
        config = {**config, "backbone_weights": None}
        return cls(**config)

    def get_compile_config(self):
        # Under torch the optimizer is a private backend class; store the
        # public one so the file loads under TensorFlow and JAX too.
        return portable_compile_config(super().get_compile_config())
