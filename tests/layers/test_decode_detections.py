"""DecodeDetections: decoding, thresholds, top-k, padding, serialisation."""

import keras
import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import decode, decode_ops
from keras_ssd.targets import TargetEncoder
from keras_ssd.layers.anchor_boxes import AnchorBoxes
from keras_ssd.layers.decode_detections import DecodeDetections


def background_predictions(config, batch=1, seed=0):
    """Random offsets, every prior confidently background."""
    rng = np.random.default_rng(seed)
    n, c = config.num_anchors, config.num_classes
    pred = np.zeros((batch, n, 4 + c + 1), np.float32)
    pred[..., :4] = rng.normal(0, 0.3, (batch, n, 4))
    pred[..., 4] = 30.0
    return pred


def set_probabilities(pred, b, prior, probs):
    """Logits of one prior so that softmax gives `probs` (background first)."""
    pred[b, prior, 4:] = np.log(np.asarray(probs, np.float64)).astype(np.float32)


def as_numpy(out):
    return {k: np.asarray(v) for k, v in out.items()}


def test_decode_ops_matches_numpy_decode_boxes(tiny_config):
    rng = np.random.default_rng(0)
    anchors = generate_anchors(tiny_config())
    offsets = rng.normal(0, 1, anchors.shape).astype(np.float32)
    got = np.asarray(decode_ops(offsets, anchors, [0.1, 0.1, 0.2, 0.2]))
    np.testing.assert_allclose(got, decode(offsets, anchors), atol=1e-6)


@pytest.mark.parametrize("use_xla", [None, False])
def test_decode_of_encoded_targets_recovers_boxes_and_labels(use_xla, tiny_config):
    config = tiny_config()
    anchors = generate_anchors(config)
    encoder = TargetEncoder(anchors, variances=config.variances)
    gt = np.array([[0.05, 0.1, 0.45, 0.5], [0.55, 0.5, 0.95, 0.9], [0.3, 0.2, 0.7, 0.85]],
                  np.float32)
    labels = np.array([2, 0, 1])
    target = encoder(gt, labels)
    pred = np.zeros((1, config.num_anchors, 4 + 3 + 1), np.float32)
    pred[0, :, :4] = target[:, :4]
    cls = target[:, 4].astype(int)
    pred[0, np.arange(config.num_anchors), 4 + cls] = 40.0  # huge logit, true class
    out = as_numpy(DecodeDetections(config, use_xla=use_xla)(pred))
    assert out["num_detections"].tolist() == [3]
    order = np.argsort(out["labels"][0, :3])
    assert out["labels"][0, :3][order].tolist() == [0, 1, 2]
    np.testing.assert_allclose(out["boxes"][0, :3][order], gt[[1, 2, 0]], atol=1e-5)
    np.testing.assert_allclose(out["scores"][0, :3], 1.0, atol=1e-6)


def test_output_shapes_dtypes_and_padding(tiny_config):
    config = tiny_config()
    pred = background_predictions(config, batch=2)
    set_probabilities(pred, 0, 5, [0.2, 0.7, 0.05, 0.05])
    layer = DecodeDetections(config, top_k=7)
    out = as_numpy(layer(pred))
    assert out["boxes"].shape == (2, 7, 4) and out["boxes"].dtype == np.float32
    assert out["scores"].shape == (2, 7) and out["scores"].dtype == np.float32
    assert out["labels"].shape == (2, 7) and out["labels"].dtype == np.int32
    assert out["num_detections"].shape == (2,) and out["num_detections"].dtype == np.int32
    assert out["num_detections"].tolist() == [3, 0]  # 0.7, 0.05, 0.05 > 0.01
    assert out["labels"][0].tolist() == [0, 1, 2, -1, -1, -1, -1]
    np.testing.assert_allclose(out["scores"][0, :3], [0.7, 0.05, 0.05], rtol=1e-5)
    assert (out["scores"][0, 3:] == 0).all() and (out["boxes"][0, 3:] == 0).all()
    assert (out["labels"][1] == -1).all() and (out["boxes"][1] == 0).all()
    expected_box = decode(pred[0, 5, :4], generate_anchors(config)[5])
    np.testing.assert_allclose(out["boxes"][0, 0], expected_box, atol=1e-6)
    assert layer.compute_output_shape((None, config.num_anchors, 8)) == {
        "boxes": (None, 7, 4), "scores": (None, 7), "labels": (None, 7),
        "num_detections": (None,),
    }


def test_symbolic_call_gives_dict_of_typed_keras_tensors(tiny_config):
    config = tiny_config()
    inputs = keras.Input((config.num_anchors, 8))
    out = DecodeDetections(config, top_k=5)(inputs)
    assert out["boxes"].shape == (None, 5, 4) and out["boxes"].dtype == "float32"
    assert out["labels"].dtype == "int32" and out["num_detections"].shape == (None,)


def test_confidence_threshold_is_exclusive_and_filters(tiny_config):
    config = tiny_config()
    pred = background_predictions(config)
    set_probabilities(pred, 0, 3, [0.1, 0.5, 0.25, 0.15])
    out = as_numpy(DecodeDetections(config, confidence_threshold=0.2, use_xla=False)(pred))
    assert out["num_detections"].tolist() == [2]
    assert out["labels"][0, :3].tolist() == [0, 1, -1]
    out = as_numpy(DecodeDetections(config, confidence_threshold=0.5, use_xla=False)(pred))
    assert out["num_detections"].tolist() == [0]  # 0.5 is not > 0.5 (float32 rounds below)


def test_top_k_keeps_the_best_over_classes_sorted(tiny_config):
    config = tiny_config()
    pred = background_predictions(config)
    # 12 far-apart priors (distinct cells of map 0, box 0) with distinct scores
    rng = np.random.default_rng(1)
    priors = np.arange(0, 16 * 4, 4)[:12]
    scores = np.linspace(0.3, 0.9, 12)
    for p, s, c in zip(priors, scores, rng.integers(0, 3, 12)):
        probs = np.full(4, (1 - s) / 3)
        probs[c + 1] = s
        set_probabilities(pred, 0, p, probs)
    pred[0, :, :4] = 0.0  # boxes = priors: same-cell priors overlap, cells don't much
    out = as_numpy(DecodeDetections(config, confidence_threshold=0.25, top_k=5,
                                    use_xla=False)(pred))
    assert out["num_detections"].tolist() == [5]
    np.testing.assert_allclose(out["scores"][0], scores[::-1][:5], rtol=1e-5)


def test_max_candidates_per_class_limits_nms_input(tiny_config):
    config = tiny_config(num_classes=1)
    pred = background_predictions(config)
    pred[0, :, :4] = 0.0
    cells = np.arange(0, 16 * 4, 4)  # box 0 of each cell of map 0: disjoint priors
    for i, p in enumerate(cells):
        set_probabilities(pred, 0, p, [0.5 - i * 0.01, 0.5 + i * 0.01])
    full = as_numpy(DecodeDetections(config, use_xla=False)(pred))
    few = as_numpy(DecodeDetections(config, max_candidates_per_class=4, use_xla=False)(pred))
    assert full["num_detections"].tolist() == [16]
    assert few["num_detections"].tolist() == [4]
    np.testing.assert_allclose(few["scores"][0, :4], full["scores"][0, :4])


def test_overlapping_same_class_boxes_are_suppressed_other_classes_kept(tiny_config):
    config = tiny_config()
    pred = background_predictions(config)
    pred[0, :, :4] = 0.0
    # priors 0 and 1 share a cell: (8x8) and (sqrt(8*16))^2 squares, IoU 0.5
    set_probabilities(pred, 0, 0, [0.1, 0.8, 0.05, 0.05])
    set_probabilities(pred, 0, 1, [0.1, 0.6, 0.25, 0.05])
    out = as_numpy(DecodeDetections(config, confidence_threshold=0.1, use_xla=False)(pred))
    assert out["labels"][0, :out["num_detections"][0]].tolist() == [0, 1]
    out = as_numpy(DecodeDetections(config, confidence_threshold=0.1, iou_threshold=0.6,
                                    use_xla=False)(pred))
    assert out["labels"][0, :out["num_detections"][0]].tolist() == [0, 0, 1]


def test_explicit_anchors_are_used(tiny_config):
    config = tiny_config()
    pred = background_predictions(config, batch=2)
    set_probabilities(pred, 0, 9, [0.1, 0.9, 0.0 + 1e-9, 0.1 - 1e-9])
    layer = DecodeDetections(config, use_xla=False)
    default = as_numpy(layer(pred))
    anchors = AnchorBoxes(config)(pred)
    same = as_numpy(layer(pred, anchors))
    for key in default:
        np.testing.assert_array_equal(default[key], same[key])
    shifted = generate_anchors(config) + np.array([0.1, 0, 0, 0], np.float32)
    moved = as_numpy(layer(pred, shifted))
    np.testing.assert_allclose(moved["boxes"][0, 0], default["boxes"][0, 0] + [0.1, 0, 0.1, 0],
                               atol=1e-6)


def test_clip_boxes_clips_to_unit_square(tiny_config):
    config = tiny_config()
    pred = background_predictions(config)
    pred[0, 0, :4] = [-3.0, -3.0, 2.0, 2.0]  # far outside the top-left corner
    set_probabilities(pred, 0, 0, [0.1, 0.9, 0.0 + 1e-9, 0.1 - 1e-9])
    raw = as_numpy(DecodeDetections(config, use_xla=False)(pred))["boxes"][0, 0]
    clipped = as_numpy(DecodeDetections(config, clip_boxes=True, use_xla=False)(pred))
    assert raw.min() < 0
    np.testing.assert_allclose(clipped["boxes"][0, 0], np.clip(raw, 0, 1), atol=1e-7)


def test_xla_and_plain_paths_agree_on_random_heads(tiny_config):
    config = tiny_config()
    rng = np.random.default_rng(5)
    pred = rng.normal(0, 1.5, (3, config.num_anchors, 8)).astype(np.float32)
    a = as_numpy(DecodeDetections(config, use_xla=True, top_k=50)(pred))
    b = as_numpy(DecodeDetections(config, use_xla=False, top_k=50)(pred))
    # XLA's exp and fused multiply-adds may move the decoded values by an
    # ulp; the detections themselves (which boxes, which classes, in which
    # order) are the same.
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_array_equal(a["num_detections"], b["num_detections"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-6, atol=0)
    assert (a["num_detections"] > 10).all()


def test_get_config_round_trip_preserves_behaviour(tiny_config, config_round_trip):
    config = tiny_config()
    layer = DecodeDetections(config, confidence_threshold=0.2, iou_threshold=0.3,
                             max_candidates_per_class=50, top_k=9, clip_boxes=True,
                             use_xla=False, name="dets")
    cfg = layer.get_config()
    assert cfg["config"] == config.to_dict()
    assert (cfg["confidence_threshold"], cfg["iou_threshold"], cfg["top_k"]) == (0.2, 0.3, 9)
    pred = np.random.default_rng(2).normal(0, 1.5, (2, config.num_anchors, 8)).astype("f4")
    assert config_round_trip(layer, pred).config == config


def test_float32_output_under_mixed_precision_policy(tiny_config):
    config = tiny_config()
    pred = np.random.default_rng(3).normal(0, 1.5, (1, config.num_anchors, 8))
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        layer = DecodeDetections(config, use_xla=False)
        out = layer(keras.ops.cast(pred, "bfloat16"))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.compute_dtype == "float32"
    assert keras.backend.standardize_dtype(out["boxes"].dtype) == "float32"
    assert keras.backend.standardize_dtype(out["scores"].dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"confidence_threshold": 1.0}, "confidence_threshold"),
        ({"confidence_threshold": -0.1}, "confidence_threshold"),
        ({"iou_threshold": 1.5}, "iou_threshold"),
        ({"iou_threshold": "0.5"}, "iou_threshold"),
        ({"top_k": 0}, "top_k"),
        ({"max_candidates_per_class": 2.5}, "max_candidates_per_class"),
        ({"clip_boxes": "yes"}, "clip_boxes"),
        ({"use_xla": 1}, "use_xla"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match, tiny_config):
    with pytest.raises(ValueError, match=match):
        DecodeDetections(tiny_config(), **kwargs)


def test_bad_config_raises_value_error():
    with pytest.raises(ValueError, match="config"):
        DecodeDetections({"image_size": 32})


@pytest.mark.parametrize(
    "shape, match",
    [((1, 87, 8), "87 priors"), ((1, 88, 9), "9 values per prior"), ((88, 8), "shape")],
)
def test_predictions_of_wrong_shape_raise_value_error(shape, match, tiny_config):
    layer = DecodeDetections(tiny_config(), use_xla=False)
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape, np.float32))


def test_anchors_of_wrong_shape_raise_value_error(tiny_config):
    layer = DecodeDetections(tiny_config(), use_xla=False)
    with pytest.raises(ValueError, match="anchors"):
        layer(np.zeros((1, 88, 8), np.float32), np.zeros((1, 88, 3), np.float32))


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function shapes")
def test_compiled_pieces_returning_unknown_shapes_still_decode(monkeypatch, tiny_config):
    # tf.function may answer a call with a more general trace, whose outputs
    # have unknown dimensions; the layer must not depend on them being static.
    import tensorflow as tf

    from keras_ssd import nms
    from keras_ssd.layers import decode_detections as dd

    def shape_erasing(key, fn):
        def call(*args):
            outputs = fn(*args)
            erased = [tf.compat.v1.placeholder_with_default(t, [None] * len(t.shape))
                      for t in tf.nest.flatten(outputs)]
            assert all(None in t.shape for t in erased)
            return tf.nest.pack_sequence_as(outputs, erased)
        return call

    config = tiny_config()
    pred = np.random.default_rng(8).normal(0, 1.5, (2, config.num_anchors, 8)).astype(np.float32)
    expected = as_numpy(DecodeDetections(config, use_xla=False, top_k=20)(pred))
    monkeypatch.setattr(dd, "xla_compiled", shape_erasing)
    monkeypatch.setattr(nms, "xla_compiled", shape_erasing)
    layer = DecodeDetections(config, use_xla=True, top_k=20)
    got = as_numpy(tf.function(lambda p: layer(p))(tf.constant(pred)))
    np.testing.assert_array_equal(got["labels"], expected["labels"])
    np.testing.assert_allclose(got["boxes"], expected["boxes"], atol=1e-6)


# ------------------------------------------------------- overlap_dtype
def test_overlap_dtype_round_trips_through_get_config(tiny_config, config_round_trip):
    config = tiny_config()
    assert DecodeDetections(config).get_config()["overlap_dtype"] is None
    layer = DecodeDetections(config, overlap_dtype="float32", use_xla=False, top_k=30)
    assert layer.get_config()["overlap_dtype"] == "float32"
    pred = np.random.default_rng(9).normal(0, 1.5, (2, config.num_anchors, 8)).astype("f4")
    assert config_round_trip(layer, pred).overlap_dtype == "float32"


@pytest.mark.parametrize("value", ["float16", "double", 32, True, np.dtype("float32")])
def test_bad_overlap_dtype_raises_value_error(value, tiny_config):
    with pytest.raises(ValueError, match="DecodeDetections: overlap_dtype"):
        DecodeDetections(tiny_config(), overlap_dtype=value)


@pytest.mark.parametrize("value", [None, "float32", "float64"])
def test_overlap_dtype_reaches_the_nms(monkeypatch, value, tiny_config):
    from keras_ssd import nms

    seen = []
    greedy = nms.greedy_nms

    def spy(*args, **kwargs):
        seen.append(kwargs.get("overlap_dtype"))
        return greedy(*args, **kwargs)

    monkeypatch.setattr(nms, "greedy_nms", spy)
    config = tiny_config()
    pred = np.random.default_rng(4).normal(0, 1.5, (1, config.num_anchors, 8)).astype("f4")
    DecodeDetections(config, overlap_dtype=value, use_xla=False)(pred)
    assert seen == [value or nms._decision_dtype()]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow graphs")
def test_float32_overlap_dtype_traces_no_float64_op(tiny_config):
    # What LiteRT needs (export builds its decoder this way): no float64
    # tensor anywhere in the graph, while loop bodies included.
    import tensorflow as tf

    config = tiny_config()
    spec = tf.TensorSpec((1, config.num_anchors, 8), tf.float32)

    def graph_text(layer):
        fn = tf.function(lambda p: layer(p)).get_concrete_function(spec)
        return str(fn.graph.as_graph_def())

    assert "DT_DOUBLE" in graph_text(DecodeDetections(config, use_xla=False))
    assert "DT_DOUBLE" not in graph_text(
        DecodeDetections(config, use_xla=False, overlap_dtype="float32"))
