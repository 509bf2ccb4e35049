"""Export an SSD as a deployable artifact with decoding and NMS inside.

`export(model, path, format=...)` writes a TensorFlow SavedModel, an ONNX
file or a LiteRT (TFLite) flatbuffer that maps a batch of RGB images at the
model's input size straight to the final detections: box decoding, softmax,
per-class greedy NMS and top-k all run inside the artifact, so serving needs
no Python and no keras-ssd.

Every artifact has one input and four outputs:

- input `images`: `(B, H, W, 3)` RGB, `float32` (values 0..255) or `uint8`
  (`input_dtype`); `H x W` is the model's input size (`config.image_shape`,
  not necessarily square);
- `boxes`: `(B, top_k, 4)` float32 normalised `(xmin, ymin, xmax, ymax)`
  (multiply by `W, H`, or by an original image's width/height, for pixels;
  a model with `config.letterbox` expects letterboxed images and its boxes
  map back with `keras_ssd.data.source_boxes`);
- `scores`: `(B, top_k)` float32 class probability;
- `labels`: `(B, top_k)` int32 0-based class, -1 on padding rows;
- `num_detections`: `(B,)` int32 number of real detections (rows
  `0..num_detections-1`).

These are the outputs of `model.predict` under the same names
(docs/outputs.md), computed by the same `DecodeDetections` graph through its portable
`keras.ops` path (the XLA fast path is never exported).

The conversion runs on the TensorFlow backend. ONNX needs the `export` extra
(`pip install "keras-ssd[export]"`: tf2onnx, onnx, onnxruntime); LiteRT uses
TensorFlow's own `tf.lite.TFLiteConverter` and only builtin LiteRT ops, so the
`.tflite` file runs on the plain LiteRT runtime (`ai_edge_litert` or
`tf.lite.Interpreter`), no Flex delegate.

`quantize="int8"` (LiteRT and ONNX) quantizes the network to int8 from
calibration images while decoding and NMS stay float32 in the artifact, with
the same interface (`keras_ssd.quantize`, docs/deployment.md).
"""

import numbers
import os
import shutil
import tempfile

#: Accepted `format` values (aliases map onto these).
FORMATS = ("tf_saved_model", "onnx", "litert")
_FORMAT_ALIASES = {
    "tf_saved_model": "tf_saved_model",
    "saved_model": "tf_saved_model",
    "savedmodel": "tf_saved_model",
    "onnx": "onnx",
    "litert": "litert",
    "tflite": "litert",
}
#: Accepted `input_dtype` values.
INPUT_DTYPES = ("float32", "uint8")
#: Output names of every artifact, in this order: the decoder's.
OUTPUT_NAMES = ("boxes", "scores", "labels", "num_detections")
#: ONNX opset used when `opset` is not given.
DEFAULT_ONNX_OPSET = 17
EXPORT_EXTRA = 'pip install "keras-ssd[export]"'


class MissingExportDependency(ImportError):
    """An optional export dependency is not installed (message names the extra)."""


def _require_module(name, fmt):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise MissingExportDependency(
            f"export(format={fmt!r}) needs the `{name}` package, which is not "
            f"installed ({e}). Install the export extra: {EXPORT_EXTRA}"
        ) from None


#: What `export` says when TensorFlow is not installed (a JAX-only install).
TENSORFLOW_MISSING = (
    "export needs TensorFlow, which is not installed: every artifact is built from a "
    "TensorFlow graph. Install it (pip install tensorflow) and run the export with "
    "KERAS_BACKEND=tensorflow; training, evaluation and prediction run without it."
)


def tensorflow_installed():
    """Whether `tensorflow` can be found, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # a finder that refuses it, a broken entry
        return False


def normalize_format(format):
    """The canonical format name for `format` (case-insensitive, aliases
    `saved_model` and `tflite` accepted); `ValueError` otherwise."""
    key = str(format).strip().lower().replace("-", "_") if isinstance(format, str) else None
    if key not in _FORMAT_ALIASES:
        raise ValueError(
            f"export: unknown format {format!r}; choose one of {', '.join(FORMATS)}"
        )
    return _FORMAT_ALIASES[key]


def default_extension(format):
    """The file name ending `export` expects for a format ("" for a folder)."""
    return {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}[
        normalize_format(format)
    ]


# ---------------------------------------------------------------- the model
def check_model(model):
    """`(model, config, decode_options)` of a keras-ssd model: the network
    (its call gives the raw heads), its `SSDConfig` and the options of its
    `prediction_decoder`; `ValueError` prefixed `export:` for anything else."""
    from keras_ssd.inference.predict import check_model as check

    try:
        config = check(model, "export")
    except ValueError as e:
        raise ValueError(str(e)) from None
    return model, config, model.prediction_decoder.options


def _image_size(predictor, config):
    if not getattr(predictor, "inputs", None):  # a subclassed model: the config's size
        return tuple(config.image_shape)
    shape = tuple(predictor.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(
            f"export: the model must take RGB images (B, H, W, 3), its input is "
            f"(B, {', '.join(str(d) for d in shape)})"
        )
    height, width = (d if d is not None else size
                     for d, size in zip(shape[:2], config.image_shape))
    return int(height), int(width)


def _check_batch_size(batch_size, fmt):
    if batch_size is None:
        return 1 if fmt == "litert" else None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
            or batch_size < 1:
        raise ValueError(
            f"export: batch_size must be a positive int or None, got {batch_size!r}"
        )
    return int(batch_size)


def _check_path(path, fmt):
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"export: path must be a file or folder path, got {path!r}")
    path = os.fspath(path)
    if fmt == "tf_saved_model":
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(
                f"export: {path} exists and is a file; a SavedModel is a folder"
            )
        if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(
                os.path.join(path, "saved_model.pb")):
            raise ValueError(
                f"export: folder {path} is not empty and holds no SavedModel; "
                "give a new or empty folder (an existing SavedModel is replaced)"
            )
    else:
        ext = default_extension(fmt)
        if os.path.isdir(path):
            raise ValueError(
                f"export: {path} is a folder; format {fmt!r} writes one file "
                f"(e.g. {os.path.join(path, 'model' + ext)})"
            )
        if not path.lower().endswith(ext):
            raise ValueError(
                f"export: format {fmt!r} writes a {ext} file; path {path!r} does not "
                f"end with {ext}"
            )
    return path


# -------------------------------------------------------------- the graph
def _serving_function(predictor, decoder):
    import tensorflow as tf

    def serve(images):
        inputs = predictor(tf.cast(images, tf.float32), training=False)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        detections = decoder(*inputs)
        return {name: detections[name] for name in OUTPUT_NAMES}

    return serve


def _write_saved_model(predictor, serve, spec, path):
    """A SavedModel whose `serving_default` signature is `serve`.

    A plain `tf.Module` tracking the model's variables once (Keras'
    `ExportArchive` stores every variable twice, doubling the folder).
    """
    import tensorflow as tf

    module = tf.Module()
    module.detector_variables = [v.value for v in predictor.weights]
    module.serve = tf.function(serve, input_signature=[spec])
    tf.saved_model.save(
        module, path, signatures={"serving_default": module.serve.get_concrete_function()}
    )


def _name_batch_dims(onnx_model):
    """Give the dynamic batch dimension of inputs and outputs the name "batch"."""
    for value in list(onnx_model.graph.input) + list(onnx_model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"


def _write_onnx(serve, spec, path, opset):
    import tensorflow as tf

    tf2onnx = _require_module("tf2onnx", "onnx")
    onnx = _require_module("onnx", "onnx")
    function = tf.function(serve, input_signature=[spec])
    onnx_model, _ = tf2onnx.convert.from_function(
        function, input_signature=[spec], opset=opset
    )
    _name_batch_dims(onnx_model)
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, path)


def _write_litert(predictor, serve, spec, path):
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="keras_ssd_litert_") as tmp:
        saved = os.path.join(tmp, "saved_model")
        _write_saved_model(predictor, serve, spec, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = converter.convert()
        except Exception as e:  # noqa: BLE001 - converter errors are long MLIR dumps
            lines = [l for l in str(e).splitlines() if "error:" in l]
            reason = lines[0].split("error:", 1)[1].strip() if lines else type(e).__name__
            raise ValueError(
                "export(format='litert'): the detection graph does not convert to "
                f"builtin LiteRT operators: {reason[:300]}"
            ) from e
    with open(path, "wb") as f:
        f.write(flatbuffer)


# --------------------------------------------------------------- public API
def _check_opset(opset, fmt):
    if opset is None:
        return
    if fmt != "onnx":
        raise ValueError(f"export: opset only applies to format='onnx', not {fmt!r}")
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) \
            or not 13 <= opset <= 21:
        raise ValueError(f"export: opset must be an int in [13, 21], got {opset!r}")


def _require_export_tools(fmt, quantize):
    """The TensorFlow backend, and for ONNX its converter (and runtime, to
    quantize): a clear error before any tracing."""
    import keras

    if keras.backend.backend() != "tensorflow":
        if not tensorflow_installed():
            raise MissingExportDependency(f"export: {TENSORFLOW_MISSING}")
        raise ValueError(
            "export: the artifact is built from a TensorFlow graph, so export needs "
            f"the TensorFlow backend (active: {keras.backend.backend()!r}). Save the "
            "model as .keras, then run the export with KERAS_BACKEND=tensorflow "
            "(for example `KERAS_BACKEND=tensorflow keras-ssd export ...`)."
        )
    if fmt == "onnx":
        _require_module("tf2onnx", fmt)
        _require_module("onnx", fmt)
        if quantize is not None:
            _require_module("onnxruntime", fmt)


def export(model, path, format="tf_saved_model", *, input_dtype="float32",
           batch_size=None, opset=None, verbose=False, quantize=None, calibration=None,
           num_calibration=None, keep_float=None, calibration_method=None,
           calibration_percentile=None, **decode_options):
    """Write `model` as a deployable detector with decoding and NMS inside.

    Args:
        model: a keras-ssd model (`SSD300`, `SSDTiny`, ..., or one loaded
            from `.keras`); its `prediction_decoder`'s settings are the
            defaults of the decode options.
        path: where to write: a folder for `"tf_saved_model"`, a `.onnx` file
            for `"onnx"`, a `.tflite` file for `"litert"`. Parent folders are
            created; an existing artifact is replaced.
        format: `"tf_saved_model"` (alias `"saved_model"`), `"onnx"` or
            `"litert"` (alias `"tflite"`).
        input_dtype: `"float32"` (RGB values 0..255) or `"uint8"`: the dtype
            of the artifact's `images` input.
        batch_size: fixed batch size, or `None`: a dynamic batch for
            SavedModel and ONNX, 1 for LiteRT (LiteRT graphs have fixed
            shapes).
        opset: ONNX opset (default 17); only for `format="onnx"`.
        verbose: print where the artifact was written.
        quantize: `None` (float32) or `"int8"`: post-training quantization of
            the network for `"litert"` and `"onnx"` (per-channel int8
            weights, int8 activations; decoding and NMS stay float32 inside
            the artifact, the interface is unchanged). See
            `keras_ssd.quantize` and docs/deployment.md.
        calibration: with `quantize`: representative images for the
            activation ranges: a folder of images, a dataset (e.g.
            `VOCDataset`), an array `(N, H, W, 3)`, a list of images or
            paths, or an iterable of images or batches
            (`keras_ssd.quantize.calibration_images`).
        num_calibration: with `quantize`: the most calibration images used
            (default 100, an evenly spread subset of a larger source).
        keep_float: with `quantize`: Keras layer names whose operators stay
            float32 (layers a sensitivity check found costly).
        calibration_method: with `quantize`: `"minmax"` (default: each
            activation's range spans every calibration value) or
            `"percentile"` (the rarest values at each end are clipped, so
            outliers do not coarsen the int8 steps; docs/deployment.md
            says which models gain).
        calibration_percentile: with `calibration_method="percentile"`: the
            central percent of each activation's values kept in range
            (default `keras_ssd.quantize.DEFAULT_CALIBRATION_PERCENTILE`).
        **decode_options: options of `DecodeDetections`
            (`keras_ssd.layers.decode_detections.DECODE_OPTIONS`); default
            to the model's `prediction_decoder` (0.01, 0.45, 400, 200 unless
            set otherwise).

    Returns:
        The path written (str).

    Raises:
        ValueError: bad arguments, a model that is not a keras-ssd model, a
            non-TensorFlow backend, or a graph the target cannot represent.
        MissingExportDependency: (an `ImportError`) `format="onnx"` without
            the `export` extra installed, or TensorFlow not installed at all
            (a JAX-only install).

    Example:

    >>> export(model, "ssd_tiny.onnx", format="onnx", confidence_threshold=0.3)
    'ssd_tiny.onnx'
    >>> import onnxruntime as ort
    >>> session = ort.InferenceSession("ssd_tiny.onnx")
    >>> boxes, scores, labels, num_detections = session.run(
    ...     ["boxes", "scores", "labels", "num_detections"], {"images": images})
    """
    from keras_ssd.layers.decode_detections import check_decode_options
    from keras_ssd.quantize import check_quantize

    fmt = normalize_format(format)
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(
            f"export: input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}"
        )
    batch = _check_batch_size(batch_size, fmt)
    path = _check_path(path, fmt)
    _check_opset(opset, fmt)
    decode_options = check_decode_options(decode_options, "export")
    quantize, num_calibration, keep_float, method, percentile = check_quantize(
        quantize, fmt, calibration, num_calibration, keep_float, calibration_method,
        calibration_percentile)
    _require_export_tools(fmt, quantize)
    import tensorflow as tf

    from keras_ssd.layers.decode_detections import DecodeDetections

    predictor, config, options = check_model(model)
    options.update(decode_options)
    # LiteRT's builtin operators have no float64 kernels: its decoder takes
    # the NMS overlap decisions in float32 (as keras_ssd.nms does on JAX
    # without x64).
    decoder = DecodeDetections(config, use_xla=False, name="export_detections",
                               overlap_dtype="float32" if fmt == "litert" else None,
                               **options)
    height, width = _image_size(predictor, config)
    spec = tf.TensorSpec((batch, height, width, 3), getattr(tf, input_dtype),
                         name="images")
    if quantize is not None:  # read the images before any tracing
        from keras_ssd import quantize as quantization

        images = quantization.calibration_images(calibration, (height, width),
                                                 num_calibration)
    serve = _serving_function(predictor, decoder)

    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # Models hold plain convolutions (speed-ups are applied only to the views
    # of keras_ssd.accel.prepare_for_inference), so the artifacts trace them.
    # quantize: the float artifact goes to a temporary file, then the int8 one to path.
    tmp, target = (None, path) if quantize is None else \
        quantization.temporary_float_path(fmt)
    try:
        if fmt == "tf_saved_model":
            _write_saved_model(predictor, serve, spec, target)
        elif fmt == "onnx":
            _write_onnx(serve, spec, target,
                        DEFAULT_ONNX_OPSET if opset is None else int(opset))
        else:
            _write_litert(predictor, serve, spec, target)
        if quantize is not None:
            quantization.quantize_file(fmt, target, path, images, input_dtype, batch,
                                       decoder.name, keep_float, method, percentile)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    from keras_ssd.artifact_metadata import build_metadata, write_metadata

    # input size, letterbox and class names travel inside the artifact
    # (keras_ssd.artifact_metadata), so it can be used without the .keras file
    options = {k: getattr(decoder, k) for k in ("confidence_threshold", "iou_threshold",
                                                "max_candidates_per_class", "top_k",
                                                "clip_boxes")}
    write_metadata(path, build_metadata(config, height, width, input_dtype, quantize,
                                        options), fmt)
    if verbose:
        print(f"exported {fmt}{' int8' if quantize else ''} detector ({input_dtype} images "
              f"{batch or 'B'}x{height}x{width}x3 -> {', '.join(OUTPUT_NAMES)}) to {path}")
    return path
