"""int8 post-training quantization of exported detectors (`export(quantize="int8")`).

The network (convolutions, activations, pooling, the head reshapes and
concatenations) is quantized to int8 with statistics from a few hundred
representative images; box decoding, softmax, NMS and top-k stay in
float32 inside the same artifact, so the outputs keep their meaning, dtypes
and shapes (docs/deployment.md).

- LiteRT: the float `.tflite` is run on the calibration images with every
  intermediate tensor kept; the min/max of each float activation tensor of
  the network is written into the model as calibration statistics, and
  TensorFlow's MLIR quantizer turns every operator whose tensors all have
  statistics into its int8 kernel (per-channel int8 weights, int8
  activations, int32 biases). The decoder's tensors get none, so its
  operators stay float32. (TensorFlow's own `representative_dataset`
  calibrator runs the same quantizer but crashes on the decoder's nested
  NMS while-loops, which is why the statistics are gathered here.)
- ONNX: ONNX Runtime's static quantization (`quantize_static`, QDQ format,
  per-channel int8 weights, int8 activations, calibration through a
  `CalibrationDataReader`), with the decoder's nodes in `nodes_to_exclude`.

`calibration_method` picks how an activation's range is read from the
calibration images: `"minmax"` (the default) spans every value seen;
`"percentile"` drops the rarest values at both ends (a share of
`(100 - calibration_percentile) / 2` percent each, read off a 2048-bin
histogram, as ONNX Runtime's `CalibrationMethod.Percentile` does), so a few
outliers do not widen the int8 step of every other value; the clipped ones
saturate. The predictions that feed the decoder keep their min/max in both
formats (`activation_ranges`). What each method costs on a trained SSDLite
is measured in docs/deployment.md.

`keep_float` names network layers to leave in float32 as well (the layers a
per-layer sensitivity check found costly): LiteRT denylists their operators
in the quantizer, ONNX excludes their nodes; the tensors around them are
quantized and dequantized at the boundary.

Nothing here imports TensorFlow or onnxruntime at module level, so the CLI
can read the constants.
"""

import contextlib
import io
import logging
import numbers
import os
import re
import tempfile
import warnings

import numpy as np

#: Accepted `quantize` values of `export` (None: a float artifact).
QUANTIZE_MODES = ("int8",)
#: Formats whose artifacts can be quantized.
QUANTIZABLE_FORMATS = ("litert", "onnx")
#: Calibration images used when `num_calibration` is not given.
DEFAULT_NUM_CALIBRATION = 100
#: Accepted `calibration_method` values of `export`.
CALIBRATION_METHODS = ("minmax", "percentile")
#: The central share (percent) of each activation's calibration values that
#: `calibration_method="percentile"` keeps in range when no
#: `calibration_percentile` is given.
DEFAULT_CALIBRATION_PERCENTILE = 99.99
#: Histogram bins per activation for percentile ranges (ONNX Runtime's default).
PERCENTILE_BINS = 2048
#: Image files a calibration folder is searched for (recursively).
CALIBRATION_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff",
                          ".webp")
_WHERE = "export"


def check_quantize(quantize, fmt, calibration, num_calibration, keep_float=None,
                   calibration_method=None, calibration_percentile=None):
    """Validate the quantization arguments of `export` before any tracing.

    Args:
        quantize: `None` or `"int8"`.
        fmt: the canonical format name.
        calibration: the calibration source (see `calibration_images`).
        num_calibration: `None` or a positive int.
        keep_float: `None` or layer names (str or an iterable of str).
        calibration_method: `None` (`"minmax"`) or one of
            `CALIBRATION_METHODS`.
        calibration_percentile: `None` or, with `"percentile"`, the central
            share (percent, in (50, 100]) of each activation's values kept.

    Returns:
        `(mode, num_calibration, keep_float, method, percentile)`: `mode`
        None or "int8", the count to use, a tuple of layer names, the
        calibration method and its percentile (None for "minmax").

    Raises:
        ValueError: an unknown mode, a format that cannot be quantized, no
            calibration data, calibration options without `quantize`.
    """
    if quantize is None:
        given = [name for name, value in (
            ("calibration", calibration), ("num_calibration", num_calibration),
            ("keep_float", keep_float), ("calibration_method", calibration_method),
            ("calibration_percentile", calibration_percentile)) if value is not None]
        if given:
            raise ValueError(
                f"{_WHERE}: {' and '.join(given)} only "
                f"appl{'ies' if len(given) == 1 else 'y'} with quantize='int8'"
            )
        return None, None, (), None, None
    if not isinstance(quantize, str) or quantize.strip().lower() not in QUANTIZE_MODES:
        raise ValueError(
            f"{_WHERE}: quantize must be None or one of {', '.join(QUANTIZE_MODES)}, "
            f"got {quantize!r}"
        )
    mode = quantize.strip().lower()
    if fmt not in QUANTIZABLE_FORMATS:
        raise ValueError(
            f"{_WHERE}: format {fmt!r} cannot be quantized; quantize='{mode}' applies "
            f"to the formats {', '.join(QUANTIZABLE_FORMATS)}"
        )
    if calibration is None:
        raise ValueError(
            f"{_WHERE}: quantize='{mode}' needs calibration data: calibration= a folder "
            "of images, a dataset (e.g. VOCDataset), or an array or list of RGB images "
            f"(about {DEFAULT_NUM_CALIBRATION} images like those the detector will see)"
        )
    if num_calibration is None:
        num_calibration = DEFAULT_NUM_CALIBRATION
    elif isinstance(num_calibration, bool) or not isinstance(
            num_calibration, numbers.Integral) or num_calibration < 1:
        raise ValueError(
            f"{_WHERE}: num_calibration must be a positive int, got {num_calibration!r}"
        )
    if keep_float is None:
        keep_float = ()
    elif isinstance(keep_float, str):
        keep_float = (keep_float,)
    keep_float = tuple(keep_float)
    if not all(isinstance(name, str) and name for name in keep_float):
        raise ValueError(f"{_WHERE}: keep_float must be layer names, got {keep_float!r}")
    method, percentile = check_calibration_method(calibration_method,
                                                  calibration_percentile)
    return mode, int(num_calibration), keep_float, method, percentile


def check_calibration_method(method, percentile):
    """`(method, percentile)` checked: the method name (default "minmax") and,
    for "percentile", the share kept (default `DEFAULT_CALIBRATION_PERCENTILE`)."""
    if method is None:
        method = "minmax"
    if not isinstance(method, str) or method.strip().lower() not in CALIBRATION_METHODS:
        raise ValueError(f"{_WHERE}: calibration_method must be one of "
                         f"{', '.join(CALIBRATION_METHODS)}, got {method!r}")
    method = method.strip().lower()
    if method != "percentile":
        if percentile is not None:
            raise ValueError(f"{_WHERE}: calibration_percentile only applies with "
                             "calibration_method='percentile'")
        return method, None
    if percentile is None:
        return method, DEFAULT_CALIBRATION_PERCENTILE
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not (
            50.0 < float(percentile) <= 100.0):
        raise ValueError(f"{_WHERE}: calibration_percentile must be a number in (50, 100], "
                         f"the percent of each activation's values kept in range, got "
                         f"{percentile!r}")
    return method, float(percentile)


# ------------------------------------------------------------ calibration
def _spread(n, k):
    """`k` indices spread evenly over `range(n)` (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def calibration_files(folder):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files.extend(os.path.join(root, n) for n in sorted(names)
                     if n.lower().endswith(CALIBRATION_EXTENSIONS))
    return files


def _from_folder(folder, size, num):
    from keras_ssd.data.augment import resize_image
    from keras_ssd.data.images import load_image

    if not os.path.exists(folder):
        raise ValueError(f"{_WHERE}: calibration folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise ValueError(
            f"{_WHERE}: calibration {folder} is not a folder; give a folder of images"
        )
    files = calibration_files(folder)
    images, bad = [], []
    # Try the evenly spread picks first, then the rest, until `num` load.
    order = _spread(len(files), num)
    order += [i for i in range(len(files)) if i not in set(order)]
    for i in order:
        if len(images) == num:
            break
        try:
            images.append(resize_image(load_image(files[i]), size))
        except (ValueError, OSError) as e:
            bad.append(f"{files[i]}: {e}")
    if not images:
        found = (f"{len(files)} image file(s), none readable (first: {bad[0]})" if bad
                 else f"no image files ({', '.join(CALIBRATION_EXTENSIONS)})")
        raise ValueError(f"{_WHERE}: calibration folder {folder} has no readable "
                         f"images: {found}")
    if bad:
        warnings.warn(f"{_WHERE}: skipped {len(bad)} unreadable calibration image(s) "
                      f"in {folder}, e.g. {bad[0]}", stacklevel=3)
    return images


def _as_image(item, size, where):
    from keras_ssd.data.augment import resize_image
    from keras_ssd.data.images import load_image

    try:
        image = load_image(item)
    except ValueError as e:
        raise ValueError(f"{_WHERE}: calibration {where}: {e}") from None
    if image.shape[:2] != tuple(size):
        image = resize_image(image, size)
    return image


def _batched_items(item):
    """One image, or the images of a batch `(B, H, W, C)`."""
    if isinstance(item, (str, os.PathLike)):
        return [item]
    try:
        from PIL import Image

        if isinstance(item, Image.Image):
            return [item]
    except ImportError:  # pragma: no cover - pillow is a dependency
        pass
    array = np.asarray(item)
    return list(array) if array.ndim == 4 else [array]


def calibration_images(calibration, size, num_calibration=DEFAULT_NUM_CALIBRATION):
    """Up to `num_calibration` RGB uint8 images at the model's input size.

    Args:
        calibration: one of
            - a folder (searched recursively for `CALIBRATION_EXTENSIONS`
              files; unreadable files are skipped with a warning);
            - a detection dataset (`len`, `ds[i]`, `load_image`, e.g.
              `VOCDataset`): its images rendered as evaluation renders them;
            - an array `(N, H, W, 3)` or `(H, W, 3)` (uint8, or floats in
              0..255), or a list/tuple of arrays, PIL images or image paths;
            - any other iterable (a generator, a `tf.data.Dataset`, a
              `keras.utils.PyDataset`) of images or batches; `(x, y)` items
              give their `x`.
            Images of another size are resized (bilinear, aspect not kept,
            as training does).
        size: `(height, width)` of the model input.
        num_calibration: the most images taken; a folder, dataset or list
            longer than that gives an evenly spread subset.

    Returns:
        list of `(height, width, 3)` uint8 arrays (at least one).

    Raises:
        ValueError: a missing folder, a folder or source with no readable
            images, an item that is no image.
    """
    size = tuple(int(v) for v in size)
    num = int(num_calibration)
    if isinstance(calibration, (str, os.PathLike)):
        return _from_folder(os.fspath(calibration), size, num)
    if all(hasattr(calibration, a) for a in ("__len__", "__getitem__", "load_image")):
        from keras_ssd.data.sequence import load_resized

        if len(calibration) == 0:
            raise ValueError(f"{_WHERE}: the calibration dataset has no images")
        return [load_resized(calibration, i, size)[0]
                for i in _spread(len(calibration), num)]
    if isinstance(calibration, np.ndarray) or hasattr(calibration, "numpy") and hasattr(
            calibration, "shape"):
        items = _batched_items(calibration)
        return [_as_image(items[i], size, f"image {i}") for i in _spread(len(items), num)] \
            or _no_images(calibration)
    if isinstance(calibration, (list, tuple)):
        items = [x for item in calibration for x in _batched_items(item)]
        return [_as_image(items[i], size, f"image {i}") for i in _spread(len(items), num)] \
            or _no_images(calibration)
    try:
        iterator = iter(calibration)
    except TypeError:
        raise ValueError(
            f"{_WHERE}: calibration must be a folder, a dataset, images or an iterable "
            f"of images, got {type(calibration).__name__}"
        ) from None
    images = []
    for item in iterator:
        if isinstance(item, tuple) and item:  # (x, y) batches of a Keras pipeline
            item = item[0]
        for x in _batched_items(item):
            images.append(_as_image(x, size, f"image {len(images)}"))
            if len(images) == num:
                return images
    return images or _no_images(calibration)


def _no_images(calibration):
    raise ValueError(f"{_WHERE}: the calibration data ({type(calibration).__name__}) "
                     "holds no images")


def calibration_batches(images, batch, dtype):
    """`images` as input batches of `batch` images (`None`: 1) in `dtype`;
    a last partial batch is filled with images from the start."""
    batch = batch or 1
    count = -(-len(images) // batch) * batch
    stack = np.stack([images[i % len(images)] for i in range(count)]).astype(dtype)
    return [stack[i:i + batch] for i in range(0, count, batch)]


# ------------------------------------------------------------ layer names
def _layer_pattern(names):
    """A regex matching a TF name scope of one of the Keras layers `names`
    (`.../conv1/...`, `.../conv1_1/...`: TensorFlow numbers re-entered scopes)."""
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(^|/)({alternatives})(_\d+)?(/|$)")


def _is_decoder(name, scope):
    return any(part.startswith(scope) or f"/{scope}" in part
               for part in name.split(";"))


# ------------------------------------------------------------ ranges
def activation_ranges(activations, method="minmax", percentile=None, exact=None):
    """The calibration range `(low, high)` of each activation tensor.

    Args:
        activations: a callable returning a fresh iterable, one item per
            calibration batch: the list of that batch's activation arrays
            (the same tensors in the same order every time). "percentile"
            calls it twice: once for each tensor's extremes, once for a
            histogram spanning them.
        method: "minmax" (the extremes) or "percentile".
        percentile: with "percentile", the central percent of each tensor's
            values kept: `(100 - percentile) / 2` percent of the values are
            cut at each end, to the histogram bin that holds the cut.
        exact: with "percentile", a boolean per tensor: True keeps that
            tensor's min/max. The predictions must keep them: a detection
            is a rare, extreme class logit, exactly what a percentile cuts.

    Returns:
        Two float64 arrays, one entry per tensor; a percentile range always
        lies inside the min/max range.
    """
    low = high = None
    for values in activations():
        if low is None:
            low = np.full(len(values), np.inf)
            high = np.full(len(values), -np.inf)
        for j, value in enumerate(values):
            low[j] = min(low[j], float(np.min(value)))
            high[j] = max(high[j], float(np.max(value)))
    if low is None:
        raise ValueError(f"{_WHERE}: no calibration batches")
    if method == "minmax" or percentile is None or percentile >= 100.0:
        return low, high
    counts = np.zeros((len(low), PERCENTILE_BINS), np.int64)
    spread = high > low
    if exact is not None:
        spread &= ~np.asarray(exact, bool)
    for values in activations():
        for j, value in enumerate(values):
            if spread[j]:
                counts[j] += np.histogram(value, bins=PERCENTILE_BINS,
                                          range=(low[j], high[j]))[0]
    cut = (100.0 - percentile) / 200.0
    clipped_low, clipped_high = low.copy(), high.copy()
    for j in np.flatnonzero(spread):
        cdf = np.cumsum(counts[j]) / counts[j].sum()
        edges = np.linspace(low[j], high[j], PERCENTILE_BINS + 1)
        # the lower edge of the bin where `cut` of the values is reached, and
        # the upper edge of the bin where `1 - cut` is: the kept share stays in
        first = int(np.searchsorted(cdf, cut, side="right"))
        last = int(np.searchsorted(cdf, 1.0 - cut, side="left"))
        clipped_low[j] = max(low[j], edges[min(first, PERCENTILE_BINS - 1)])
        clipped_high[j] = min(high[j], edges[min(last, PERCENTILE_BINS - 1) + 1])
    return clipped_low, clipped_high


# ------------------------------------------------------------------ LiteRT
@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 for a while: the quantizer's C++ code prints
    a status line there (its errors still arrive as exceptions)."""
    import sys

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no real stderr (embedded interpreters): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _quiet_tflite():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        warnings.filterwarnings("ignore", category=UserWarning,
                                module="tensorflow.lite.*")
        yield


def litert_interpreter(model_path=None, model_content=None, **kwargs):
    """A LiteRT interpreter: `ai_edge_litert`'s when installed, else
    `tf.lite.Interpreter` (its deprecation warning silenced)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with _quiet_tflite():
        return Interpreter(model_path=model_path, model_content=model_content, **kwargs)


#: Operators that move or join values without computing new ones: the head
#: outputs reach the decoder through them (reshapes, then one concatenation).
_LITERT_MOVES = ("RESHAPE", "CONCATENATION", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE")
_ONNX_MOVES = ("Reshape", "Concat", "Squeeze", "Unsqueeze", "Transpose", "Identity",
               "Flatten")


def _prediction_tensors(graph, model, op_names, decoder_tensors):
    """The LiteRT tensors that carry the heads' predictions into the decoder:
    the decoder's network inputs and, back through `_LITERT_MOVES`, the head
    convolutions' outputs."""
    producer = {o: op for op in graph.operators for o in op.outputs}
    frontier = {i for op in graph.operators
                if any(o in decoder_tensors for o in op.outputs)
                for i in op.inputs if i >= 0 and i not in decoder_tensors}
    found = set()
    while frontier:
        index = frontier.pop()
        if index in found or index not in producer:
            continue
        found.add(index)
        op = producer[index]
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind in _LITERT_MOVES:  # the data, not a reshape's shape input
            data = op.inputs if kind == "CONCATENATION" else op.inputs[:1]
            frontier.update(i for i in data if i >= 0)
    return found


def quantize_litert(flatbuffer, batches, decoder_scope, keep_float=(), method="minmax",
                    percentile=None):
    """int8-quantize the network of a float LiteRT detector.

    Args:
        flatbuffer: the float `.tflite` model (bytes).
        batches: calibration input batches (arrays of the input's shape and
            dtype).
        decoder_scope: the name scope of the decoder (its tensors stay float).
        keep_float: Keras layer names whose tensors stay float as well.
        method: "minmax" or "percentile" (`activation_ranges`).
        percentile: with "percentile", the central percent of values kept.

    Returns:
        The quantized model (bytes).
    """
    from tensorflow.lite.python import convert as tflite_convert
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    op_names = {code: name for name, code in vars(schema.BuiltinOperator).items()
                if not name.startswith("_")}

    def name_of(index):
        name = graph.tensors[index].name
        return name.decode() if isinstance(name, bytes) else str(name)

    keep = _layer_pattern(keep_float)
    float32 = schema.TensorType.FLOAT32
    tensors = [i for i in graph.inputs if graph.tensors[i].type == float32]
    network_types, decoder_types, denylisted = set(), set(), set()
    decoder_tensors = set()
    for op in graph.operators:  # in execution order
        code = model.operatorCodes[op.opcodeIndex]
        op_type = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        outputs = [name_of(i) for i in op.outputs]
        # The decoder: its scope, and everything computed from it (the
        # artifact's outputs are named StatefulPartitionedCall:N).
        if not outputs or any(i in decoder_tensors for i in op.inputs) or any(
                _is_decoder(name, decoder_scope) for name in outputs):
            decoder_types.add(op_type)
            decoder_tensors.update(op.outputs)
            denylisted.update(outputs)
            continue
        network_types.add(op_type)
        tensors += [i for i in op.outputs if graph.tensors[i].type == float32]
        # A kept layer's operators are denylisted by their output tensor's
        # name; its tensors keep their statistics, so its neighbours quantize.
        if keep is not None and any(keep.search(part) for name in outputs
                                    for part in name.split(";")):
            denylisted.update(outputs)
    if not tensors or "CONV_2D" not in network_types and "DEPTHWISE_CONV_2D" not in \
            network_types:
        raise ValueError(f"{_WHERE}: found no network convolutions to quantize in the "
                         "LiteRT graph")
    # The decoder's tensors get no statistics and its operators are denylisted;
    # operator kinds only the decoder uses are denylisted as kinds as well, since
    # the quantizer otherwise carries fixed-range int8 (softmax's 1/256 steps)
    # on through slices, top-k and selects.
    denylisted_ops = sorted(decoder_types - network_types)
    exact = None
    if method == "percentile":
        exact = np.isin(tensors, sorted(_prediction_tensors(graph, model, op_names,
                                                            decoder_tensors)))

    interpreter = litert_interpreter(model_content=bytes(flatbuffer),
                                     experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()

    def activations():
        for batch in batches:
            interpreter.set_tensor(inp["index"], batch)
            interpreter.invoke()
            yield [interpreter.get_tensor(i) for i in tensors]

    low, high = activation_ranges(activations, method, percentile, exact)
    for j, i in enumerate(tensors):
        stats = schema.QuantizationParametersT()
        stats.min, stats.max = [float(low[j])], [float(high[j])]
        graph.tensors[i].quantization = stats
    calibrated = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    try:
        with _quiet_native_stderr():
            return bytes(tflite_convert.mlir_quantize(
                calibrated, disable_per_channel=False, fully_quantize=False,
                denylisted_ops=denylisted_ops or None,
                denylisted_nodes=sorted(denylisted) or None))
    except Exception as e:  # noqa: BLE001 - converter errors are long MLIR dumps
        lines = [l for l in str(e).splitlines() if "error:" in l]
        reason = lines[0].split("error:", 1)[1].strip() if lines else type(e).__name__
        raise ValueError(f"{_WHERE}(format='litert', quantize='int8'): the quantizer "
                         f"failed: {reason[:300]}") from e


# -------------------------------------------------------------------- ONNX
def _onnx_nodes(onnx_model, decoder_scope):
    """`(node, names, in_decoder)` for every node of the main graph, in order
    (topologically sorted, an ONNX rule): `names` are its name, outputs and
    weight inputs (tf2onnx renames convolutions, Conv__12; their weights keep
    the layer's scope); the decoder is its scope and every node computed
    from its outputs."""
    weights = {t.name for t in onnx_model.graph.initializer}
    decoder_tensors = set()
    for node in onnx_model.graph.node:
        names = [node.name] + list(node.output) + [i for i in node.input if i in weights]
        decoder = any(i in decoder_tensors for i in node.input) or any(
            _is_decoder(n, decoder_scope) for n in names)
        if decoder:
            decoder_tensors.update(node.output)
        yield node, names, decoder


def onnx_network_nodes(onnx_model, decoder_scope, keep_float=()):
    """`(quantizable, excluded)` node names of the main graph: the decoder's
    nodes (its scope and every node computed from its outputs) and those of
    `keep_float` layers are excluded."""
    keep = _layer_pattern(keep_float)
    quantizable, excluded = [], []
    for node, names, decoder in _onnx_nodes(onnx_model, decoder_scope):
        kept = keep is not None and any(keep.search(n) for n in names)
        (excluded if decoder or kept else quantizable).append(node.name)
    return quantizable, excluded


def onnx_prediction_tensors(onnx_model, decoder_scope):
    """The ONNX tensors that carry the heads' predictions into the decoder
    (its inputs from the network and, back through `_ONNX_MOVES`, the head
    convolutions' outputs), in graph order."""
    producer, decoder_nodes = {}, []
    for node, _, decoder in _onnx_nodes(onnx_model, decoder_scope):
        if decoder:
            decoder_nodes.append(node)
        else:
            producer.update((o, node) for o in node.output)
    frontier = [i for node in decoder_nodes for i in node.input if i in producer]
    found = []
    while frontier:
        name = frontier.pop()
        if name in found:
            continue
        found.append(name)
        node = producer[name]
        if node.op_type in _ONNX_MOVES:  # the data, not a Reshape's shape input
            data = node.input if node.op_type == "Concat" else node.input[:1]
            frontier.extend(i for i in data if i in producer)
    order = {o: k for k, node in enumerate(onnx_model.graph.node) for o in node.output}
    return sorted(found, key=order.get)


def _onnx_exact_ranges(float_path, batches, names):
    """`{tensor: (min, max)}` of the float ONNX model's tensors `names` over
    the calibration batches (the tensors are made extra graph outputs)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(float_path)
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n)
                              for n in names if n not in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def activations():
        for batch in batches:
            yield session.run(list(names), {input_name: batch})

    low, high = activation_ranges(activations)
    return {n: (float(low[k]), float(high[k])) for k, n in enumerate(names)}


def quantize_onnx(float_path, path, batches, decoder_scope, keep_float=(),
                  method="minmax", percentile=None):
    """int8-quantize (QDQ) the network of the float ONNX detector at
    `float_path` into `path`, calibrated on `batches` ("minmax", or
    "percentile" through ONNX Runtime's histogram calibrator)."""
    import onnx
    from onnxruntime import quantization as ortq

    class Reader(ortq.CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"images": batch}

    quantizable, excluded = onnx_network_nodes(onnx.load(float_path), decoder_scope,
                                               keep_float)
    if not quantizable:
        raise ValueError(f"{_WHERE}: found no network nodes to quantize in the ONNX graph")
    if method == "percentile":
        # the predictions keep their full range (see activation_ranges)
        exact = _onnx_exact_ranges(float_path, batches, onnx_prediction_tensors(
            onnx.load(float_path), decoder_scope))
        calibrate = dict(calibrate_method=ortq.CalibrationMethod.Percentile,
                         extra_options={"CalibPercentile": float(percentile),
                                        "CalibNumBins": PERCENTILE_BINS,
                                        "CalibTensorRangeSymmetric": False,
                                        "TensorQuantOverrides": {
                                            n: [{"rmin": np.float32(lo),
                                                 "rmax": np.float32(hi)}]
                                            for n, (lo, hi) in exact.items()}})
    else:
        calibrate = dict(calibrate_method=ortq.CalibrationMethod.MinMax)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "consider pre-processing before quantization"
    try:
        # the histogram calibrator prints its progress to stdout
        with contextlib.redirect_stdout(io.StringIO()):
            ortq.quantize_static(
                float_path, path, Reader(),
                quant_format=ortq.QuantFormat.QDQ,
                activation_type=ortq.QuantType.QInt8,
                weight_type=ortq.QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=excluded,
                # 7-bit weights: on x86 CPUs without VNNI (AVX2-only, AVX-512
                # without VNNI) ONNX Runtime's int8 kernels add pairs of int8
                # products in int16 and saturate with full-range weights; the
                # artifact must run on whatever CPU it is deployed to.
                reduce_range=True,
                **calibrate,
            )
    finally:
        root.setLevel(level)


def quantize_file(fmt, float_path, path, images, input_dtype, batch, decoder_scope,
                  keep_float=(), method="minmax", percentile=None):
    """Quantize the float artifact at `float_path` (format `fmt`) into `path`."""
    batches = calibration_batches(images, batch, input_dtype)
    if fmt == "litert":
        with open(float_path, "rb") as f:
            flatbuffer = f.read()
        quantized = quantize_litert(flatbuffer, batches, decoder_scope, keep_float,
                                    method, percentile)
        with open(path, "wb") as f:
            f.write(quantized)
    elif fmt == "onnx":
        quantize_onnx(float_path, path, batches, decoder_scope, keep_float, method,
                      percentile)
    else:  # check_quantize refuses these first
        raise ValueError(f"{_WHERE}: format {fmt!r} cannot be quantized")
    return path


def temporary_float_path(fmt):
    """A temporary folder and a float artifact path inside it."""
    folder = tempfile.mkdtemp(prefix="keras_ssd_int8_")
    ext = {"litert": ".tflite", "onnx": ".onnx"}[fmt]
    return folder, os.path.join(folder, "float" + ext)
