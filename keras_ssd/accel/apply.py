"""`prepare_for_inference`: a model's speed-ups for the machine it runs on,
applied to a view of the model, never to the model itself.

A keras-ssd model is the network: plain Keras layers, the same wherever it is
saved, exported or trained. For inference this module builds a second
functional graph over the *same layer objects* (so the same weights: training
the model shows in the view), in which

- each eligible `Conv2D` is wrapped by a `WinogradView` running it as a
  Winograd F(m x m, 3 x 3) convolution where that measured faster: float32,
  TensorFlow backend, CPU, not training, tile per layer shape from
  `auto_tile`, which follows the machine: the measured table on the CPU
  kind it was measured on, a timing at first use (cached per machine)
  elsewhere, `KERAS_SSD_WINOGRAD` to force (`benchmarks/winograd.py`,
  `docs/performance.md`);
- `jit_compile` is the measured default for the backend and device
  (`keras_ssd.accel.runtime.default_jit_compile`).

Views are cached per model (weakly), so calling `prepare_for_inference`
again is cheap.
"""

import weakref

import keras

from keras_ssd.accel.runtime import resolve_jit_compile
from keras_ssd.accel.winograd import is_disabled
from keras_ssd.accel.winograd_conv import (
    WinogradConv2D,
    auto_tile,
    eligible,
    runs_on_this_machine,
    tile_source,
    winograd_call,
)
from keras_ssd.config import SSDConfig
from keras_ssd.models.decoding import DecodingPredictions
from keras_ssd.models.fast_predict import fast_path_applies, predict_arrays
from keras_ssd.models.walk import iter_layers

# model -> {(jit_compile, winograd, tile source): view}. Weak keys: a view refers to the
# model's layers, never to the model, so a model no longer used goes away
# with its views.
_VIEWS = weakref.WeakKeyDictionary()


def _tile(conv, input_shape):
    """The Winograd tile for `conv` on `input_shape` (0: direct)."""
    height, width, channels = tuple(input_shape)[1:]
    if height is None or width is None:
        return 0
    return auto_tile(height, width, channels, conv.filters)


class WinogradView(keras.layers.Layer):
    """Runs a model's own `Conv2D` (`conv`, weights shared) as Winograd
    F(tile x tile, 3 x 3) for inference; training calls run `conv` itself.

    Built by `prepare_for_inference` for the layers where the path measured
    faster; not meant to be saved (save the model you prepared instead).

    Args:
        conv: an eligible `keras.layers.Conv2D`, already built.
        tile: the output tile for the input shape it is built on, 2 or 4
            (`auto_tile`'s choice; other static shapes get theirs).
    """

    def __init__(self, conv, tile, **kwargs):
        kwargs.setdefault("name", conv.name)
        kwargs.setdefault("dtype", conv.dtype_policy)
        super().__init__(**kwargs)
        self.conv = conv
        self.tile = int(tile)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=None):
        # A shared convolution may meet another shape: the tile follows it.
        tile = self.tile if None in tuple(inputs.shape)[1:3] else _tile(self.conv, inputs.shape)
        if training or not tile or is_disabled() or not eligible(self.conv):
            return self.conv(inputs)
        return winograd_call(self.conv, inputs, tile)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, training=None):
        return self.conv.compute_output_spec(inputs)

    def get_config(self):
        raise TypeError(
            f"WinogradView {self.name!r} belongs to a model made by "
            "keras_ssd.accel.prepare_for_inference, which is for running, not saving: "
            "save the model you prepared (it holds the plain Conv2D layers)"
        )


def _graph_inputs(model):
    """`(input, output)` structures of a functional or built Sequential
    model; `None` for a subclassed model (no graph to rebuild)."""
    try:
        return model.input, model.output
    except (AttributeError, ValueError):
        return None


class _Runner:
    """What views add to `keras.Model`: `predict` on arrays without Keras'
    per-call set-up (as `SSD.predict`), and a clear error on saving."""

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        if fast_path_applies(self, x, steps, callbacks):
            return predict_arrays(self, x, batch_size=32 if batch_size is None else batch_size)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps,
                               callbacks=callbacks)

    def get_config(self):
        raise TypeError(
            f"{self.name!r} is a view made by keras_ssd.accel.prepare_for_inference, "
            "which is for running, not saving: save the model you prepared (it holds "
            "the plain layers)"
        )


class _GraphView(_Runner, keras.Model):
    """A functional view: `_GraphView(inputs, outputs, name=...)`."""


class _DecodingView(DecodingPredictions, _GraphView):
    """The functional view of a model whose `predict` decodes (an `SSD`):
    its `predict` decodes too, with the model's `prediction_decoder` at the
    time the view was made."""


class _CallView(_Runner, keras.Model):
    """A view calling `model` (a subclassed model without a graph): only the
    runtime defaults apply to it."""

    def __init__(self, model):
        super().__init__(name=model.name)
        self.model = model

    def call(self, inputs):
        return self.model(inputs)


def _view(model, use_winograd, decoder=None):
    """`model` rebuilt over its own layers, eligible convolutions wrapped;
    decoding in `predict` with `decoder` when one is given."""
    graph = _graph_inputs(model)
    if graph is None:
        return _CallView(model)
    wrapped = {}

    def clone_function(layer):
        if isinstance(layer, keras.Model) and _graph_inputs(layer) is not None:
            return _view(layer, use_winograd)  # nested models, recursively
        return layer  # the same layer object: its weights, its state

    def call_function(layer, *args, **kwargs):
        if (use_winograd and type(layer) is keras.layers.Conv2D and eligible(layer)
                and runs_on_this_machine(layer.compute_dtype) and args
                and len(args[0].shape) == 4):
            view = wrapped.get(id(layer))
            if view is None:
                tile = _tile(layer, args[0].shape)
                if tile:
                    view = wrapped[id(layer)] = WinogradView(layer, tile)
            if view is not None:
                return view(*args, **kwargs)
        return layer(*args, **kwargs)

    source = keras.Model(*graph, name=model.name)
    clone = keras.models.clone_model(source, clone_function=clone_function,
                                     call_function=call_function)
    if decoder is None:
        view = _GraphView(clone.input, clone.output, name=model.name)
    else:
        view = _DecodingView(clone.input, clone.output, name=model.name)
        object.__setattr__(view, "prediction_decoder", decoder)
    config = getattr(model, "config", None)
    if isinstance(config, SSDConfig):
        view.config = config
        view.class_names = list(config.detection_names)
    return view


def winograd_applies():
    """True when `prepare_for_inference` would run eligible float32
    convolutions as Winograd here (TensorFlow backend on a CPU)."""
    return runs_on_this_machine("float32")


def prepare_for_inference(model, jit_compile=None, winograd=True, decode=True):
    """The model to run for inference: a view of `model` with the measured
    speed-ups of the machine it runs on.

    The view is a functional `keras.Model` over `model`'s own layers (the
    same weights, no copies: training or loading weights into `model` shows
    in the view) with the measured `jit_compile` default, in which, when
    `winograd` is true and the path measured faster here (float32, TensorFlow
    backend, CPU), each 3x3 stride-1 "same" `Conv2D` whose shape
    `auto_tile` picks a tile for on this machine (the measured table, or a
    timing at first use cached per machine; `KERAS_SSD_WINOGRAD=off`
    for none) runs as a Winograd convolution
    (`WinogradView`). Its outputs equal `model`'s up to float rounding
    (about 2e-5 of the largest output).

    `model` itself is never changed (its layers, `jit_compile` and compiled
    functions stay); save, export or train `model`, run the view. Views are
    cached per model (weakly): calling this again is cheap. Nested models
    (an inference model around an `SSD`) are rebuilt the same way; a
    subclassed model without a functional graph gets a view that calls it
    with the runtime defaults only.

    Args:
        model: a built `keras.Model`.
        jit_compile: `None` for `keras_ssd.accel.runtime.default_jit_compile()`,
            else `True`, `False` or `"auto"` (Keras' own choice).
        winograd: bool, apply the Winograd path where it measured faster
            (`False`: the runtime defaults only, e.g. to compare).
        decode: bool: for a model whose `predict` decodes (an `SSD`), the
            view's does too (`True`), or returns the raw heads (`False`:
            the network alone, e.g. to time it).

    Returns:
        `keras.Model`, for `predict_on_batch` / `predict` / `__call__`
        (`predict` on arrays skips Keras' per-call set-up, as `SSD.predict`
        does). When `model` is an `SSD` it carries `config` and
        `class_names`, and its `predict` decodes with the model's
        `prediction_decoder` as `SSD.predict` does. It cannot be saved
        (`TypeError`): save `model`.

    Raises:
        TypeError: `model` is not a `keras.Model`, or `winograd` not a bool.

    Example:

    >>> fast = keras_ssd.accel.prepare_for_inference(model)
    >>> detections = fast.predict_on_batch(images)  # as model.predict_on_batch
    >>> raw = fast(images)                          # as model(images)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "prepare_for_inference expects a keras.Model, got "
            f"{type(model).__name__}"
        )
    for name, value in (("winograd", winograd), ("decode", decode)):
        if not isinstance(value, bool):
            raise TypeError(f"prepare_for_inference: {name} must be True or False, "
                            f"got {value!r}")
    jit = resolve_jit_compile(jit_compile)
    use_winograd = winograd and winograd_applies()
    # The tile rule (machine kind, KERAS_SSD_WINOGRAD) is part of the key, and
    # so is the decoder of a model whose `predict` decodes (it can be replaced).
    decoder = (model.prediction_decoder
               if decode and isinstance(model, DecodingPredictions) else None)
    key = (jit, use_winograd, tile_source() if use_winograd else None, decoder)
    views = _VIEWS.get(model)
    if views is None:
        views = _VIEWS[model] = {}
    view = views.get(key)
    if view is None:
        view = _view(model, use_winograd, decoder)
        if jit != "auto":
            view.jit_compile = jit
        views[key] = view
    return view


def winograd_tiles(model):
    """`{convolution name: tile}` of the convolutions of `model` (e.g. a
    view from `prepare_for_inference`) that run as Winograd, nested models
    included: its `WinogradView` layers and the `WinogradConv2D` layers
    whose path is active here."""
    tiles = {}
    for layer in iter_layers(model):
        if isinstance(layer, WinogradView):
            tiles[layer.conv.name] = layer.tile
        elif isinstance(layer, WinogradConv2D) and layer.active_tile:
            tiles[layer.name] = layer.active_tile
    return tiles
