"""What `keras-ssd export` stores inside an artifact so that it can be used
without its `.keras` source: input size, letterbox flag, class names.

The metadata is one JSON object (`build_metadata`) kept under the key
`keras_ssd`:

- ONNX: a `metadata_props` entry of the model (`onnx.ModelProto`), which
  onnxruntime exposes as `get_modelmeta().custom_metadata_map`;
- LiteRT (.tflite): a named entry of the flatbuffer's `metadata` list (the
  place the TFLite schema has for it; interpreters ignore it);
- SavedModel: `assets.extra/keras_ssd.json` inside the folder (TensorFlow
  Serving's folder for files a SavedModel carries but does not load).

`read_metadata(path)` reads it back and raises one `ValueError` naming the
file when an artifact has none (exported before keras-ssd wrote it, or by
another tool). Imports onnx / TensorFlow's flatbuffer tools only inside
the function that needs them.
"""

import json
import os

#: The key (and SavedModel file stem) of the metadata.
METADATA_KEY = "keras_ssd"
#: Version of the metadata's layout.
METADATA_VERSION = 1
_SAVED_MODEL_FILE = os.path.join("assets.extra", f"{METADATA_KEY}.json")


def build_metadata(config, height, width, input_dtype, quantize=None, options=None):
    """The metadata of an artifact exported from a model with `config`.

    Args:
        config: the model's `SSDConfig`.
        height, width: the artifact's input size.
        input_dtype: `"float32"` or `"uint8"`.
        quantize: None or `"int8"`.
        options: the decoder options inside the artifact.

    Returns:
        JSON-ready dict: `metadata_version`, `keras_ssd_version`,
        `image_size` `[height, width]`, `letterbox`, `class_names` (the
        classes the artifact's labels index), `category_ids` (or None),
        `input_dtype`, `quantize`, `decode_options`.
    """
    from keras_ssd.version import __version__

    names = list(getattr(config, "detection_names", None) or config.names)
    ids = getattr(config, "detection_category_ids", None)
    return {
        "metadata_version": METADATA_VERSION,
        "keras_ssd_version": __version__,
        "image_size": [int(height), int(width)],
        "letterbox": bool(getattr(config, "letterbox", False)),
        "class_names": [str(n) for n in names],
        "category_ids": (None if ids is None
                         else [None if i is None else int(i) for i in ids]),
        "input_dtype": str(input_dtype),
        "quantize": quantize,
        "decode_options": {k: (v if isinstance(v, (int, float, bool, str)) or v is None
                               else str(v)) for k, v in (options or {}).items()},
    }


def is_artifact_path(path):
    """True for a SavedModel folder or a `.onnx` / `.tflite` file name."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "saved_model.pb"))
    return path.lower().endswith((".onnx", ".tflite"))


def artifact_format(path):
    """`"tf_saved_model"`, `"onnx"` or `"litert"` from the path's shape."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "tf_saved_model"
    lower = path.lower()
    if lower.endswith(".onnx"):
        return "onnx"
    if lower.endswith(".tflite"):
        return "litert"
    raise ValueError(f"{path}: not an exported artifact (expected a SavedModel folder, "
                     "a .onnx or a .tflite file)")


def write_metadata(path, metadata, fmt=None):
    """Store `metadata` (a JSON-ready dict) inside the artifact at `path`."""
    fmt = fmt or artifact_format(path)
    text = json.dumps(metadata, sort_keys=True)
    if fmt == "tf_saved_model":
        target = os.path.join(path, _SAVED_MODEL_FILE)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    elif fmt == "onnx":
        import onnx

        model = onnx.load(path)
        for prop in list(model.metadata_props):
            if prop.key == METADATA_KEY:
                model.metadata_props.remove(prop)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
        _replace(path, lambda tmp: onnx.save(model, tmp))
    elif fmt == "litert":
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(path)
        buffer = schema.BufferT()
        buffer.data = list(text.encode("utf-8"))
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata = [m for m in (model.metadata or [])
                          if _name(m.name) != METADATA_KEY] + [entry]
        _replace(path, lambda tmp: flatbuffer_utils.write_model(model, tmp))
    else:
        raise ValueError(f"write_metadata: unknown format {fmt!r}")


def _name(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _replace(path, write):
    tmp = f"{path}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_metadata(path):
    """The keras-ssd metadata of an exported artifact.

    Raises:
        ValueError: naming `path`: not an artifact, unreadable, or without
            keras-ssd metadata.
    """
    path = os.fspath(path)
    fmt = artifact_format(path)
    text = None
    try:
        if fmt == "tf_saved_model":
            target = os.path.join(path, _SAVED_MODEL_FILE)
            if os.path.isfile(target):
                with open(target, encoding="utf-8") as f:
                    text = f.read()
        elif fmt == "onnx":
            import onnx

            model = onnx.load(path, load_external_data=False)
            text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY),
                        None)
        else:
            from tensorflow.lite.tools import flatbuffer_utils

            model = flatbuffer_utils.read_model(path)
            for entry in model.metadata or []:
                if _name(entry.name) == METADATA_KEY:
                    data = model.buffers[entry.buffer].data
                    text = bytes(bytearray(data)).decode("utf-8")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the artifact ({e})") from None
    except Exception as e:  # noqa: BLE001 - protobuf / flatbuffer decode errors
        raise ValueError(f"{path}: not a readable {fmt} artifact ({type(e).__name__})") \
            from None
    if text is None:
        raise ValueError(f"{path} has no keras-ssd metadata (input size, letterbox, class "
                         "names): it was exported before keras-ssd stored them, or by "
                         "another tool; export it again with `keras-ssd export`")
    try:
        metadata = json.loads(text)
    except ValueError:
        raise ValueError(f"{path}: its keras-ssd metadata is not valid JSON") from None
    missing = [k for k in ("image_size", "letterbox", "class_names")
               if not isinstance(metadata, dict) or k not in metadata]
    if missing:
        raise ValueError(f"{path}: its keras-ssd metadata lacks {', '.join(missing)}")
    return metadata
