"""export(quantize="int8"): LiteRT and ONNX artifacts whose network is int8
(weights stored as int8, checked in the files) while decoding and NMS stay
float32; they run in their own runtimes with the float interface (uint8
input too) and detect what the float model detects; calibration sources and
every error path; `keras-ssd export --quantize int8`."""

import os

import keras
import numpy as np
import pytest

from keras_ssd.cli import main
from keras_ssd.export import OUTPUT_NAMES, export
from keras_ssd.quantize import (
    DEFAULT_CALIBRATION_PERCENTILE,
    DEFAULT_NUM_CALIBRATION,
    PERCENTILE_BINS,
    activation_ranges,
    calibration_batches,
    calibration_images,
    check_quantize,
    litert_interpreter,
)

SIZE = 160
DECODE = {"confidence_threshold": 0.8, "iou_threshold": 0.45, "top_k": 10}

tf_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export builds TensorFlow graphs; it runs under KERAS_BACKEND=tensorflow",
)


def make_images(n=4, seed=0):
    """Noise with coloured blocks and a gradient: inputs with detections."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype("uint8")
    for i in range(n):
        y, x = rng.integers(0, 80, 2)
        images[i, y:y + 60, x:x + 60] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images[-1] = np.stack([xx * 1.5, yy * 1.5, (xx + yy) * 0.7], -1).astype("uint8")
    return images


@pytest.fixture(scope="module")
def ssd(make_confident_tiny_ssd):
    return make_confident_tiny_ssd(seed=7)


@pytest.fixture(scope="module")
def calibration():
    return make_images(16, seed=1)


@pytest.fixture(scope="module")
def images():
    return make_images(4, seed=2)


@pytest.fixture(scope="module")
def expected(make_confident_tiny_ssd, images):
    return make_confident_tiny_ssd(seed=7, decode=DECODE).predict(images.astype("float32"))


def assert_float_interface(got, batch, top_k=DECODE["top_k"]):
    assert sorted(got) == sorted(OUTPUT_NAMES)
    assert got["boxes"].dtype == np.float32 and got["boxes"].shape == (batch, top_k, 4)
    assert got["scores"].dtype == np.float32 and got["scores"].shape == (batch, top_k)
    assert got["labels"].dtype == np.int32 and got["labels"].shape == (batch, top_k)
    count = got["num_detections"]
    assert count.dtype == np.int32 and count.shape == (batch,)


def matched_share(got, want, iou_min=0.7):
    """Share of `want`'s detections that `got` reproduces (same label, IoU >= iou_min)."""
    from keras_ssd.boxes import iou

    matched = total = 0
    for i in range(len(want["num_detections"])):
        n, m = int(want["num_detections"][i]), int(got["num_detections"][i])
        total += n
        if not n or not m:
            continue
        overlaps = np.asarray(iou(want["boxes"][i, :n], got["boxes"][i, :m]))
        same = want["labels"][i, :n, None] == got["labels"][i, None, :m]
        matched += int(((overlaps >= iou_min) & same).any(axis=1).sum())
    return matched / max(total, 1), total


# ------------------------------------------------------------------ LiteRT
@pytest.fixture(scope="module")
def litert_int8(ssd, calibration, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("int8") / "detector.tflite")
    export(ssd, path, format="litert", quantize="int8", calibration=calibration,
           num_calibration=8, input_dtype="uint8", batch_size=4, **DECODE)
    return path


def litert_ops(path):
    interpreter = litert_interpreter(model_path=path)
    return interpreter, interpreter._get_ops_details()  # noqa: SLF001 - inspection


@tf_only
def test_litert_int8_stores_int8_convolutions_and_keeps_the_decoder_float(litert_int8):
    interpreter, ops = litert_ops(litert_int8)
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(convs) == 21  # every convolution of SSDTiny (trunk and heads)
    for op in convs:
        activation, weight, bias = op["inputs"][:3]
        assert dtype[activation] == np.int8 and dtype[weight] == np.int8
        assert dtype[bias] == np.int32
    # One QUANTIZE after the input's cast, one DEQUANTIZE of the predictions;
    # the decoder (softmax, box exp, the NMS while-loop, top-k, the outputs)
    # has no int8 tensor at all.
    kinds = [op["op_name"] for op in ops]
    assert kinds.count("QUANTIZE") == 1 and kinds.count("DEQUANTIZE") == 1
    assert {"SOFTMAX", "EXP", "WHILE", "TOPK_V2"} <= set(kinds)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    for op in ops:
        tensors = [i for i in list(op["inputs"]) + list(op["outputs"]) if i >= 0]
        if op["op_name"] != "DEQUANTIZE" and any("export_detections" in names[i] or
                                                 "StatefulPartitionedCall" in names[i]
                                                 for i in op["outputs"]):
            assert all(dtype[i] != np.int8 for i in tensors), (op["op_name"], names[
                op["outputs"][0]])
        if any(dtype[i] == np.int8 for i in tensors) and op["op_name"] != "QUANTIZE":
            assert names[op["outputs"][0]].startswith(("ssd_tiny", "tfl.dequantize")), \
                names[op["outputs"][0]]
    with open(litert_int8, "rb") as f:
        assert b"Flex" not in f.read()


@tf_only
def test_litert_int8_takes_uint8_images_and_detects_what_the_float_model_does(
        litert_int8, images, expected):
    interpreter = litert_interpreter(model_path=litert_int8)
    (inp,) = interpreter.get_input_details()
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [4, SIZE, SIZE, 3]
    got = interpreter.get_signature_runner()(images=images)
    got = {k: np.asarray(v) for k, v in got.items()}
    assert_float_interface(got, 4)
    assert expected["num_detections"].sum() >= 10
    share, total = matched_share(got, expected)
    assert share >= 0.8, f"{share:.2f} of {total} float detections kept"
    np.testing.assert_allclose(got["num_detections"], expected["num_detections"], atol=3)
    assert (got["labels"][got["scores"] == 0] == -1).all()  # padding rows


@tf_only
def test_litert_int8_is_under_a_third_of_the_float_file(ssd, litert_int8):
    float_bytes = sum(int(np.prod(w.shape)) * 4 for w in ssd.weights)
    assert os.path.getsize(litert_int8) < 0.4 * float_bytes


# -------------------------------------------------------------------- ONNX
@pytest.fixture(scope="module")
def onnx_int8(ssd, calibration, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="pip install 'keras-ssd[export]'")
    pytest.importorskip("tf2onnx", reason="pip install 'keras-ssd[export]'")
    path = str(tmp_path_factory.mktemp("int8") / "detector.onnx")
    export(ssd, path, format="onnx", quantize="int8", calibration=list(calibration),
           num_calibration=8, **DECODE)
    return path


@tf_only
def test_onnx_int8_is_qdq_with_int8_conv_weights_and_a_float_decoder(onnx_int8):
    import onnx

    model = onnx.load(onnx_int8)
    init = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 21
    for conv in convs:
        weight = producer[conv.input[1]]
        assert weight.op_type == "DequantizeLinear"
        assert init[weight.input[0]].data_type == onnx.TensorProto.INT8
        assert producer[conv.input[0]].op_type == "DequantizeLinear"  # int8 activations
    qdq = [n for n in model.graph.node
           if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and not [n.name for n in qdq if "export_detections" in n.name]
    for node in model.graph.node:
        if node.op_type in ("Softmax", "Exp", "Loop", "TopK"):
            assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear"
                       for i in node.input), node.name
    outputs = {o.name for o in model.graph.output}
    assert not [n.name for n in model.graph.node
                if set(n.output) & outputs and n.op_type == "DequantizeLinear"]
    loop = next(n for n in model.graph.node if n.op_type == "Loop")
    body = next(a.g for a in loop.attribute if a.name == "body")
    assert not [n for n in body.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


@tf_only
def test_onnx_int8_runs_with_a_dynamic_batch_and_detects_what_the_float_model_does(
        onnx_int8, images, expected):
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_int8, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(float)",
                                               ["batch", SIZE, SIZE, 3])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"images": images.astype("float32")})))
    assert_float_interface(got, 4)
    share, total = matched_share(got, expected)
    assert share >= 0.8, f"{share:.2f} of {total} float detections kept"
    one = dict(zip(names, session.run(names, {"images": images[1:2].astype("float32")})))
    assert_float_interface(one, 1)
    np.testing.assert_array_equal(one["labels"], got["labels"][1:2])


@tf_only
def test_keep_float_leaves_the_named_layer_float_in_litert(ssd, calibration, tmp_path):
    path = str(tmp_path / "d.tflite")
    export(ssd, path, format="litert", quantize="int8", calibration=calibration[:2],
           keep_float=["tiny_conv1"], **DECODE)
    interpreter, ops = litert_ops(path)
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    first = [op for op in convs if "tiny_conv1_" in names[op["outputs"][0]]]
    assert len(first) == 1 and dtype[first[0]["inputs"][1]] == np.float32
    assert sum(dtype[op["inputs"][1]] == np.int8 for op in convs) == 20


@tf_only
def test_keep_float_leaves_the_named_layer_float_in_onnx(ssd, calibration, tmp_path):
    import onnx

    pytest.importorskip("onnxruntime")
    path = str(tmp_path / "d.onnx")
    export(ssd, path, format="onnx", quantize="int8", calibration=calibration[:2],
           keep_float="tiny_conv1", **DECODE)
    model = onnx.load(path)
    init = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    float_convs = [n for n in convs if n.input[1] in init]  # a float weight, no DQ
    assert len(convs) == 21 and len(float_convs) == 1
    assert "/tiny_conv1_1/" in float_convs[0].input[1]
    assert producer[float_convs[0].input[0]].op_type != "DequantizeLinear"
    assert all(producer[n.input[1]].op_type == "DequantizeLinear"
               for n in convs if n not in float_convs)


# ------------------------------------------------------------- calibration
def test_calibration_images_from_a_dataset_are_resized_and_evenly_spread(toy_dataset):
    dataset = toy_dataset()  # 5 images of different sizes, image i filled with i + 1
    images = calibration_images(dataset, (SIZE, SIZE), num_calibration=3)
    assert [im.shape for im in images] == [(SIZE, SIZE, 3)] * 3
    assert all(im.dtype == np.uint8 for im in images)
    assert [int(im[0, 0, 0]) for im in images] == [1, 3, 5]


def test_calibration_images_from_arrays_lists_and_batch_iterators():
    array = np.stack([np.full((40, 30, 3), v, np.uint8) for v in range(10)])
    images = calibration_images(array, (20, 24), num_calibration=4)
    assert [im.shape for im in images] == [(20, 24, 3)] * 4
    assert [int(im[0, 0, 0]) for im in images] == [0, 3, 6, 9]
    floats = calibration_images([array[2].astype("float32")], (40, 30), 5)
    assert len(floats) == 1 and floats[0].dtype == np.uint8 and floats[0][0, 0, 0] == 2

    def batches():  # a Keras pipeline's (x, y) batches: x is taken
        for i in range(0, 10, 4):
            yield array[i:i + 4].astype("float32"), np.zeros(4)

    images = calibration_images(batches(), (40, 30), num_calibration=6)
    assert [int(im[0, 0, 0]) for im in images] == [0, 1, 2, 3, 4, 5]
    stacked = calibration_batches(images[:5], 2, "uint8")
    assert [b.shape for b in stacked] == [(2, 40, 30, 3)] * 3
    assert stacked[-1][1, 0, 0, 0] == 0  # the last batch is filled from the start


def test_calibration_folder_is_searched_recursively_and_skips_bad_files(
        synthetic_voc, tmp_path):
    images = calibration_images(synthetic_voc, (SIZE, SIZE), num_calibration=5)
    assert len(images) == 5 and images[0].shape == (SIZE, SIZE, 3)
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    from PIL import Image

    Image.fromarray(np.full((50, 70, 3), 200, np.uint8)).save(folder / "sub" / "ok.png")
    with pytest.warns(UserWarning, match="skipped 1 unreadable calibration image"):
        images = calibration_images(str(folder), (32, 32))
    assert len(images) == 1 and images[0].shape == (32, 32, 3)


def test_calibration_folder_without_readable_images_names_the_folder(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=f"calibration folder {folder} has no readable "
                                         "images: no image files"):
        calibration_images(str(folder), (SIZE, SIZE))
    (folder / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"has no readable images: 1 image file\(s\), "
                                         "none readable"):
        calibration_images(str(folder), (SIZE, SIZE))
    with pytest.raises(ValueError, match="calibration folder .*missing does not exist"):
        calibration_images(str(tmp_path / "missing"), (SIZE, SIZE))


@pytest.mark.parametrize("source, message", [
    ([], "holds no images"),
    (np.zeros((0, 8, 8, 3), np.uint8), "holds no images"),
    (iter([]), "holds no images"),
    ([np.zeros((8, 8, 2, 2))], "calibration image 0"),
    (42, "calibration must be a folder, a dataset, images or an iterable"),
])
def test_calibration_sources_without_images_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        calibration_images(source, (8, 8))


@pytest.mark.parametrize("kwargs, message", [
    ({"quantize": "int8", "fmt": "tf_saved_model", "calibration": "x"},
     "format 'tf_saved_model' cannot be quantized; quantize='int8' applies to the "
     "formats litert, onnx"),
    ({"quantize": "int8", "fmt": "litert", "calibration": None},
     "quantize='int8' needs calibration data"),
    ({"quantize": "int4", "fmt": "litert", "calibration": "x"},
     "quantize must be None or one of int8"),
    ({"quantize": None, "fmt": "litert", "calibration": "x"},
     "calibration only applies with quantize='int8'"),
    ({"quantize": "int8", "fmt": "onnx", "calibration": "x", "num_calibration": 0},
     "num_calibration must be a positive int"),
    ({"quantize": "int8", "fmt": "onnx", "calibration": "x", "keep_float": [3]},
     "keep_float must be layer names"),
    ({"quantize": "int8", "fmt": "onnx", "calibration": "x", "calibration_method": "kl"},
     "calibration_method must be one of minmax, percentile, got 'kl'"),
    ({"quantize": "int8", "fmt": "onnx", "calibration": "x",
      "calibration_percentile": 99.9},
     "calibration_percentile only applies with calibration_method='percentile'"),
    ({"quantize": "int8", "fmt": "litert", "calibration": "x",
      "calibration_method": "percentile", "calibration_percentile": 40},
     "calibration_percentile must be a number in (50, 100]"),
    ({"quantize": "int8", "fmt": "litert", "calibration": "x",
      "calibration_method": "percentile", "calibration_percentile": "99"},
     "calibration_percentile must be a number in (50, 100]"),
    ({"quantize": None, "fmt": "litert", "calibration": None,
      "calibration_method": "percentile"},
     "calibration_method only applies with quantize='int8'"),
])
def test_check_quantize_refuses_bad_arguments(kwargs, message):
    kwargs = {"num_calibration": None, **kwargs}
    with pytest.raises(ValueError) as info:
        check_quantize(**kwargs)
    assert message in str(info.value)


def test_check_quantize_defaults():
    assert check_quantize(None, "onnx", None, None) == (None, None, (), None, None)
    assert check_quantize("INT8", "litert", "d", None, "conv1") == (
        "int8", DEFAULT_NUM_CALIBRATION, ("conv1",), "minmax", None)
    assert check_quantize("int8", "onnx", "d", 5, None, " Percentile ")[3:] == (
        "percentile", DEFAULT_CALIBRATION_PERCENTILE)
    assert check_quantize("int8", "onnx", "d", 5, None, "percentile", 100)[3:] == (
        "percentile", 100.0)


# ------------------------------------------------------------------ ranges
def test_percentile_ranges_cut_the_rarest_values_at_each_end_and_stay_inside_minmax():
    rng = np.random.default_rng(0)
    batches = [[rng.normal(size=20000).astype("float32"),
                rng.uniform(0, 6, size=5000).astype("float32"),
                np.full(7, 2.5, "float32")] for _ in range(4)]
    batches[1][0][3] = 100.0  # one outlier among 80,000 values
    batches[2][1][0] = -50.0
    calls = []

    def activations():
        calls.append(1)
        return iter(batches)

    low, high = activation_ranges(activations)
    assert len(calls) == 1
    np.testing.assert_array_equal(high, [100.0, np.max([b[1] for b in batches]), 2.5])
    np.testing.assert_array_equal(low, [np.min([b[0] for b in batches]), -50.0, 2.5])

    calls.clear()
    p_low, p_high = activation_ranges(activations, "percentile", 99.9)
    assert len(calls) == 2  # extremes, then the histogram
    for j in range(2):
        values = np.concatenate([b[j] for b in batches])
        want = np.percentile(values, [0.05, 99.95])
        step = (high[j] - low[j]) / PERCENTILE_BINS
        # the cut is taken at a bin edge that keeps the central share in range
        assert want[0] - step <= p_low[j] <= want[0] + 1e-6
        assert want[1] - 1e-6 <= p_high[j] <= want[1] + step
        assert low[j] <= p_low[j] and p_high[j] <= high[j]
    assert 3.0 < p_high[0] < 3.6 and -3.6 < p_low[0] < -3.0  # the outlier is clipped
    assert p_low[1] > -0.1  # the one -50 among 20,000 is clipped too (to a bin edge)
    assert (p_low[2], p_high[2]) == (2.5, 2.5)  # a constant keeps its value
    kept = activation_ranges(activations, "percentile", 99.9, exact=[True, False, False])
    assert (kept[0][0], kept[1][0]) == (low[0], high[0])  # exact: min/max kept
    assert (kept[0][1], kept[1][1]) == (p_low[1], p_high[1])
    same = activation_ranges(activations, "percentile", 100.0)
    np.testing.assert_array_equal(same[0], low)
    np.testing.assert_array_equal(same[1], high)


def test_activation_ranges_without_batches_is_an_error():
    with pytest.raises(ValueError, match="no calibration batches"):
        activation_ranges(lambda: iter([]))


def litert_activation_scales(path):
    """name -> scale of every int8 tensor of a LiteRT file that is no weight."""
    interpreter = litert_interpreter(model_path=path)
    interpreter.allocate_tensors()
    weights = {op["inputs"][1] for op in interpreter._get_ops_details()  # noqa: SLF001
               if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    return {t["name"]: float(t["quantization_parameters"]["scales"][0])
            for t in interpreter.get_tensor_details()
            if t["dtype"] == np.int8 and t["index"] not in weights
            and len(t["quantization_parameters"]["scales"]) == 1}


@tf_only
def test_litert_percentile_calibration_narrows_the_body_and_keeps_the_predictions_exact(
        ssd, calibration, litert_int8, images, expected, tmp_path):
    path = str(tmp_path / "pct.tflite")
    export(ssd, path, format="litert", quantize="int8", calibration=calibration,
           num_calibration=8, input_dtype="uint8", batch_size=4,
           calibration_method="percentile", calibration_percentile=99.0, **DECODE)
    minmax, pct = litert_activation_scales(litert_int8), litert_activation_scales(path)
    common = sorted(set(minmax) & set(pct))
    assert len(common) >= 20
    ratio = {n: pct[n] / minmax[n] for n in common}
    assert all(r <= 1 + 1e-5 for r in ratio.values())  # never wider than min/max
    # the predictions (head outputs, their reshapes and concatenations) keep
    # min/max: a confident detection is a rare extreme logit
    predictions = [n for n in common if "mbox" in n]
    assert len(predictions) == 23  # 5 maps x 2 heads x (conv, reshape) + 3 concats
    assert all(abs(ratio[n] - 1) < 1e-5 for n in predictions)
    body = [n for n in common if "/Relu" in n]
    assert len(body) >= 9 and all(ratio[n] < 0.999 for n in body)  # 1% cut: narrower
    assert np.median([ratio[n] for n in body]) < 0.9
    got = litert_interpreter(model_path=path).get_signature_runner()(images=images)
    share, total = matched_share({k: np.asarray(v) for k, v in got.items()}, expected)
    assert share >= 0.5, f"{share:.2f} of {total} float detections kept"


def onnx_activation_scales(path):
    """tensor -> scale of every activation QuantizeLinear of a QDQ ONNX file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.input[0]: float(init[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in init}


@tf_only
def test_onnx_percentile_calibration_narrows_the_body_and_keeps_the_predictions_exact(ssd, calibration, onnx_int8,
                                                             images, expected, tmp_path):
    import onnxruntime as ort

    path = str(tmp_path / "pct.onnx")
    export(ssd, path, format="onnx", quantize="int8", calibration=list(calibration),
           num_calibration=8, calibration_method="percentile",
           calibration_percentile=99.0, **DECODE)
    minmax, pct = onnx_activation_scales(onnx_int8), onnx_activation_scales(path)
    common = sorted(set(minmax) & set(pct))
    assert len(common) >= 20
    ratio = {n: pct[n] / minmax[n] for n in common}
    assert all(r <= 1 + 1e-5 for r in ratio.values())
    # the head convolutions' outputs (tf2onnx transposes them, then reshapes)
    # and the concatenations keep min/max
    predictions = [n for n in common if "mbox" in n or n.startswith("Transpose__")]
    assert len(predictions) >= 13 and all(abs(ratio[n] - 1) < 1e-5 for n in predictions)
    body = [n for n in common if "/Relu" in n]
    assert len(body) >= 9 and np.median([ratio[n] for n in body]) < 0.9
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, {"images": images.astype("float32")})))
    share, total = matched_share(got, expected)
    assert share >= 0.5, f"{share:.2f} of {total} float detections kept"


@tf_only
@pytest.mark.parametrize("kwargs, message", [
    ({"format": "tf_saved_model", "quantize": "int8", "calibration": "x"},
     "cannot be quantized; quantize='int8' applies to the formats litert, onnx"),
    ({"format": "litert", "quantize": "int8"}, "needs calibration data"),
    ({"format": "onnx", "calibration": "x", "num_calibration": 5},
     "calibration and num_calibration only apply with quantize='int8'"),
])
def test_export_refuses_bad_quantize_arguments_before_writing(ssd, tmp_path, kwargs,
                                                              message):
    ext = {"tf_saved_model": "", "litert": ".tflite", "onnx": ".onnx"}[kwargs["format"]]
    with pytest.raises(ValueError, match=message):
        export(ssd, str(tmp_path / f"d{ext}"), **kwargs)
    assert os.listdir(tmp_path) == []


@tf_only
def test_export_with_an_unreadable_calibration_folder_writes_nothing(ssd, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=f"calibration folder {folder} has no readable"):
        export(ssd, str(tmp_path / "d.tflite"), format="litert", quantize="int8",
               calibration=str(folder))
    assert sorted(os.listdir(tmp_path)) == ["calib"]


# --------------------------------------------------------------------- CLI
@tf_only
def test_cli_quantizes_with_a_calibration_folder(ssd, synthetic_voc, images, expected,
                                                 tmp_path, capsys):
    model_file = str(tmp_path / "detector.keras")
    model = type(ssd).from_config({**ssd.get_config(), "postprocessing": DECODE})
    model.set_weights(ssd.get_weights())
    model.save(model_file)
    out = str(tmp_path / "d.tflite")
    status = main(["export", "--model-file", model_file, "--format", "litert",
                   "--out", out, "--batch-size", "4", "--quantize", "int8",
                   "--calibration-data", synthetic_voc, "--num-calibration", "6"])
    assert status == 0
    assert f"wrote litert int8 detector to {out}" in capsys.readouterr().out
    interpreter, ops = litert_ops(out)
    dtype = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert convs and all(dtype[op["inputs"][1]] == np.int8 for op in convs)
    got = interpreter.get_signature_runner()(images=images.astype("float32"))
    assert_float_interface({k: np.asarray(v) for k, v in got.items()}, 4)


@tf_only
@pytest.mark.parametrize("args, status, message", [
    (["--format", "saved_model", "--out", "{tmp}/sm", "--quantize", "int8",
      "--calibration-data", "{images}"], 2,
     "--quantize int8: --format tf_saved_model cannot be quantized; use --format litert "
     "or onnx"),
    (["--format", "litert", "--out", "{tmp}/d.tflite", "--quantize", "int8"], 2,
     "--quantize int8 needs --calibration-data DIR"),
    (["--format", "litert", "--out", "{tmp}/d.tflite", "--calibration-data", "{images}"],
     2, "--calibration-data only applies with --quantize int8"),
    (["--format", "onnx", "--out", "{tmp}/d.onnx", "--quantize", "int8",
      "--calibration-data", "{tmp}/nowhere"], 2, "--calibration-data: folder not found"),
    (["--format", "onnx", "--out", "{tmp}/d.onnx", "--quantize", "int8",
      "--calibration-data", "{empty}"], 2, "--calibration-data: no images (.jpg"),
    (["--format", "litert", "--out", "{tmp}/d.tflite", "--quantize", "int8",
      "--calibration-data", "{broken}"], 1, "has no readable images"),
    (["--format", "litert", "--out", "{tmp}/d.tflite", "--calibration-method",
      "percentile"], 2, "--calibration-method only applies with --quantize int8"),
    (["--format", "onnx", "--out", "{tmp}/d.onnx", "--quantize", "int8",
      "--calibration-data", "{broken}", "--calibration-percentile", "99.9"], 2,
     "--calibration-percentile only applies with --calibration-method percentile"),
    (["--format", "onnx", "--out", "{tmp}/d.onnx", "--quantize", "int8",
      "--calibration-data", "{broken}", "--calibration-method", "percentile",
      "--calibration-percentile", "101"], 2,
     "--calibration-percentile must be a number in (50, 100]"),
])
def test_cli_quantize_errors_are_one_line(ssd, tmp_path, capsys, args, status, message):
    model = tmp_path / "model.keras"
    ssd.save(str(model))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.jpg").write_bytes(b"not a jpeg")
    args = [a.format(tmp=tmp_path, images=broken, empty=empty, broken=broken)
            for a in args]
    assert main(["export", "--model-file", str(model)] + args) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("keras-ssd export: error: ")
    assert message in err[-1]
    if status == 1:
        assert str(broken) in err[-1]
    assert not (tmp_path / "d.tflite").exists() and not (tmp_path / "d.onnx").exists()
