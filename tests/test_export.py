"""keras_ssd.export: SavedModel, ONNX and LiteRT detectors (decode + NMS
inside) loaded with their own runtimes give the Keras inference model's
detections; bad arguments fail early with clear errors; `keras-ssd export`."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_ssd.nms
from keras_ssd.cli import main
from keras_ssd.export import (
    OUTPUT_NAMES,
    MissingExportDependency,
    check_model,
    export,
)
from keras_ssd.models import SSDTiny

SIZE = 160
#: Decoder settings of the tests: few, well separated candidates; NMS
#: suppresses some of them and top_k cuts one image.
DECODE = {"confidence_threshold": 0.8, "iou_threshold": 0.45, "top_k": 10}
#: Artifacts vs Keras: measured differences are ~1e-7.
ATOL = 1e-4

#: The artifacts are TensorFlow graphs: under another backend only the
#: backend error is checked.
tf_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export builds TensorFlow graphs; it runs under KERAS_BACKEND=tensorflow",
)


def make_images():
    """Noise, dark noise (no detections), noise with a red block, a gradient."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, SIZE, SIZE, 3)).astype("uint8")
    images[1] //= 4
    images[2, 40:120, 30:100] = (250, 20, 20)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images[3] = np.stack([xx * 1.5, yy * 1.5, (xx + yy) * 0.7], -1).astype("uint8")
    return images


@pytest.fixture(scope="module")
def ssd(make_confident_tiny_ssd):
    return make_confident_tiny_ssd(seed=1)


@pytest.fixture(scope="module")
def images():
    return make_images()


@pytest.fixture(scope="module")
def tuned_ssd(make_confident_tiny_ssd):
    """`ssd` whose source settings are `DECODE` (`postprocessing`, so saved
    with it): its `predict` and its artifacts decode with them."""
    return make_confident_tiny_ssd(seed=1, decode=DECODE)


@pytest.fixture(scope="module")
def expected(tuned_ssd, images):
    """The Keras model's own detections: `predict` with its decoder."""
    return tuned_ssd.predict(images.astype("float32"))


def assert_same_detections(got, want):
    got = {k: np.asarray(v) for k, v in got.items()}
    assert sorted(got) == sorted(OUTPUT_NAMES)
    assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
    assert got["labels"].dtype == np.int32 and got["num_detections"].dtype == np.int32
    np.testing.assert_array_equal(got["num_detections"], want["num_detections"])
    np.testing.assert_array_equal(got["labels"], want["labels"])
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=ATOL)
    np.testing.assert_allclose(got["scores"], want["scores"], atol=ATOL)


@tf_only
def test_crafted_model_gives_separated_detections_that_nms_and_top_k_cut(
        ssd, images, expected):
    """The comparisons below are only meaningful if there are detections,
    NMS and top_k change the result, and no two candidate scores (or a score
    and the threshold) are close enough for float rounding to reorder them."""
    predictions = np.asarray(ssd(images.astype("float32")))
    scores = np.asarray(ops.softmax(predictions[..., 4:], axis=-1))[..., 1:]
    threshold = DECODE["confidence_threshold"]
    candidates = (scores > threshold).sum(axis=(1, 2))
    count = expected["num_detections"]
    assert count.tolist()[1] == 0 and count.max() == DECODE["top_k"]
    assert count.sum() > 10
    assert (count <= candidates).all() and (count < candidates).any()  # NMS / top_k
    for image_scores in scores:
        near = np.sort(image_scores[image_scores > threshold - 1e-3])
        if near.size:
            assert np.diff(near).min(initial=1.0) > 1e-5
            assert np.abs(near - threshold).min() > 1e-5


@tf_only
def test_the_export_graph_is_the_network_and_its_decoders_settings(ssd, tuned_ssd):
    network, config, options = check_model(ssd)
    assert network is ssd and config is ssd.config
    assert options == ssd.prediction_decoder.options
    assert options["top_k"] == 200 and options["confidence_threshold"] == 0.01
    _, _, options = check_model(tuned_ssd)
    assert options == {**ssd.prediction_decoder.options, **DECODE}
    with pytest.raises(ValueError, match="export: Sequential .* is not a keras-ssd model"):
        check_model(keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)]))


def test_artifacts_and_the_decoder_share_one_vocabulary(ssd):
    from keras_ssd.inference import OUTPUT_KEYS
    from keras_ssd.layers.decode_detections import DecodeDetections

    assert OUTPUT_NAMES == OUTPUT_KEYS == ("boxes", "scores", "labels", "num_detections")
    out = DecodeDetections(ssd.config)(np.zeros((1, 2390, 8), "float32"))
    assert tuple(out) == OUTPUT_KEYS


@tf_only
def test_saved_model_decodes_with_the_models_settings_and_uint8_images(
        tuned_ssd, images, expected, tmp_path):
    path = str(tmp_path / "detector")
    assert export(tuned_ssd, path, input_dtype="uint8") == path
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, SIZE, SIZE, 3]
    assert_same_detections(serve(images=tf.constant(images)), expected)
    # Dynamic batch: one image gives that image's row.
    one = serve(images=tf.constant(images[2:3]))
    assert_same_detections(one, {k: v[2:3] for k, v in expected.items()})


@tf_only
def test_onnx_of_a_training_model_matches_keras(ssd, images, expected, tmp_path):
    ort = pytest.importorskip(
        "onnxruntime",
        reason="ONNX export needs the export extra: pip install 'keras-ssd[export]'",
    )
    pytest.importorskip("tf2onnx", reason="pip install 'keras-ssd[export]'")
    path = str(tmp_path / "detector.onnx")
    export(ssd, path, format="onnx", **DECODE)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(float)",
                                               ["batch", SIZE, SIZE, 3])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"images": images.astype("float32")})))
    assert_same_detections(got, expected)
    got = dict(zip(names, session.run(names, {"images": images[3:].astype("float32")})))
    assert_same_detections(got, {k: v[3:] for k, v in expected.items()})
    # the keras-ssd metadata, as onnxruntime users see it and as keras-ssd reads it
    import json

    from keras_ssd.artifact_metadata import read_metadata

    stored = json.loads(session.get_modelmeta().custom_metadata_map["keras_ssd"])
    assert stored == read_metadata(path)
    assert stored["class_names"] == list(ssd.config.names)
    assert stored["image_size"] == [SIZE, SIZE] and stored["letterbox"] is False


def _litert_interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


@tf_only
def test_litert_matches_keras_using_builtin_ops_only(ssd, images, expected, tmp_path):
    path = str(tmp_path / "detector.tflite")
    export(ssd, path, format="litert", batch_size=len(images), **DECODE)
    # The float64 NMS overlap test is traced in float32 for LiteRT only.
    assert keras_ssd.nms._decision_dtype() == "float64"
    with open(path, "rb") as f:
        assert b"Flex" not in f.read()  # no TensorFlow (Flex delegate) ops
    interpreter = _litert_interpreter(path)
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.float32 and list(inp["shape"]) == [len(images), SIZE, SIZE, 3]
    runner = interpreter.get_signature_runner()
    assert_same_detections(runner(images=images.astype("float32")), expected)
    from keras_ssd.artifact_metadata import read_metadata

    meta = read_metadata(path)  # in the flatbuffer's metadata list, beside a working model
    assert meta["class_names"] == list(ssd.config.names)
    assert meta["image_size"] == [SIZE, SIZE]


# ----------------------------------------------------------- bad arguments
@tf_only
@pytest.mark.parametrize(
    "path, kwargs, message",
    [
        ("m.onnx", {"format": "pb"}, "unknown format 'pb'"),
        ("sm", {"input_dtype": "float16"}, "input_dtype must be one of"),
        ("sm", {"nms_threshold": 0.5}, "export: unknown decode option(s) nms_threshold"),
        ("sm", {"confidence_threshold": 2.0}, "confidence_threshold must lie in"),
        ("m.tflite", {"format": "onnx"}, "does not end with .onnx"),
        ("m.onnx", {"format": "litert"}, "does not end with .tflite"),
        ("sm", {"opset": 17}, "opset only applies to format='onnx'"),
        ("m.onnx", {"format": "onnx", "opset": 5}, "opset must be an int in [13, 21]"),
        ("sm", {"batch_size": 0}, "batch_size must be a positive int"),
    ],
)
def test_bad_arguments_raise_value_errors(ssd, tmp_path, path, kwargs, message):
    with pytest.raises(ValueError) as info:
        export(ssd, str(tmp_path / path), **kwargs)
    assert message in str(info.value)
    assert os.listdir(tmp_path) == []


@tf_only
def test_bad_paths_and_models_raise_value_errors(ssd, tmp_path):
    folder = tmp_path / "folder.tflite"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        export(ssd, str(folder), format="litert")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no SavedModel"):
        export(ssd, str(busy))
    assert os.listdir(busy) == ["notes.txt"]
    plain = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not a keras-ssd model"):
        export(plain, str(tmp_path / "sm"))


@tf_only
def test_missing_export_extra_names_the_pip_extra(ssd, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import raises ImportError
    with pytest.raises(MissingExportDependency) as info:
        export(ssd, str(tmp_path / "m.onnx"), format="onnx")
    assert isinstance(info.value, ImportError)
    message = str(info.value)
    assert "tf2onnx" in message and 'pip install "keras-ssd[export]"' in message
    assert not (tmp_path / "m.onnx").exists()


def test_other_backends_are_told_to_export_under_tensorflow(ssd, tmp_path, monkeypatch):
    if keras.backend.backend() == "tensorflow":
        monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        export(ssd, str(tmp_path / "sm"))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------- CLI
@tf_only
def test_cli_exports_a_saved_model_with_its_decoder_settings(
        tuned_ssd, images, expected, tmp_path, capsys):
    model_file = str(tmp_path / "detector.keras")
    tuned_ssd.save(model_file)
    out = str(tmp_path / "exported")
    status = main(["export", "--model-file", model_file, "--format", "saved_model",
                   "--out", out, "--input-dtype", "uint8"])
    assert status == 0
    assert f"wrote tf_saved_model detector to {out}" in capsys.readouterr().out
    serve = tf.saved_model.load(out).signatures["serving_default"]
    assert_same_detections(serve(images=tf.constant(images)), expected)


@tf_only
@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--model-file", "{tmp}/missing.keras", "--out", "{tmp}/sm"], 2,
         "--model-file: file not found"),
        (["--model-file", "{model}", "--format", "onnx", "--out", "{tmp}/m.txt"], 2,
         "--out: format 'onnx' writes a .onnx file"),
        (["--model-file", "{model}", "--format", "litert", "--out", "{tmp}/m.tflite",
          "--opset", "17"], 2, "--opset only applies to --format onnx"),
        (["--model-file", "{notzip}", "--out", "{tmp}/sm"], 1,
         "is not a keras-ssd model (not a .keras archive)"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, args, status, message):
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip: checked later
    notzip = tmp_path / "notes.keras"
    notzip.write_text("not a model")
    args = [a.format(tmp=tmp_path, model=model, notzip=notzip) for a in args]
    assert main(["export"] + args) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("keras-ssd export: error: ")
    assert message in err[-1]


def test_cli_rejects_an_unknown_format(capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "--model-file", "m.keras", "--out", "x", "--format", "pb"])
    assert info.value.code == 2
    assert "expected one of tf_saved_model, onnx, litert" in capsys.readouterr().err


@tf_only
def test_a_training_model_exports_with_its_sources_postprocessing(tmp_path, monkeypatch):
    """A converted checkpoint's model (`SSD.postprocessing`) decodes in the
    artifact as its source did; arguments still override."""
    import keras_ssd.layers.decode_detections as decode_module

    seen = []

    class Stop(Exception):
        pass

    class Spy(decode_module.DecodeDetections):
        def __init__(self, config, **kwargs):
            seen.append(kwargs)
            raise Stop

    monkeypatch.setattr(decode_module, "DecodeDetections", Spy)
    source = {"confidence_threshold": 0.001, "iou_threshold": 0.55,
              "max_candidates_per_class": 300, "top_k": 300, "clip_boxes": True,
              "max_log_scale": 4.135}
    model = SSDTiny(num_classes=2, postprocessing=source)
    for kwargs in ({}, {"top_k": 7}):
        with pytest.raises(Stop):
            export(model, str(tmp_path / "x"), **kwargs)
    assert {k: seen[0][k] for k in source} == source
    assert seen[1]["top_k"] == 7 and seen[1]["iou_threshold"] == 0.55
