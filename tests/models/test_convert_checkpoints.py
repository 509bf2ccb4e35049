"""Converting SSD300 checkpoints without torch: each source's key layout
written to .pth files by the minimal writer of tests/test_pth.py, the
weights in keras-ssd's layouts, the priors of each source's own code
(numpy re-implementations written from torchvision's DefaultBoxGenerator and
amdegroot's / lufficc's PriorBox), and errors that name the bad key."""

import math

import numpy as np
import pytest

from benchmarks.torch_reference import lufficc_prior_box
from keras_ssd.anchors import generate_anchors
from keras_ssd.models.convert import (
    COCO_CATEGORY_IDS, COCO_CLASS_NAMES, SOURCES, VOC_CLASSES, ConversionError,
    coco_category_id, convert_checkpoint, convert_state_dict, sniff_source,
)

ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
MAPS = [38, 19, 10, 5, 3, 1]
STEPS = [8, 16, 32, 64, 100, 300]


def torchvision_default_boxes(scales=(0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), size=300):
    """torchvision's DefaultBoxGenerator(clip=True) as (cx, cy, w, h) / size,
    in its float32 arithmetic: per map, cells row-major, then the (w, h)
    pairs (s_k, s_k), (s'_k, s'_k), then per ratio (s_k*sqrt(r), s_k/sqrt(r))
    and its transpose; w and h (only) clamped to [0, 1]."""
    out = []
    for k, (f, step) in enumerate(zip(MAPS, STEPS)):
        pairs = [[scales[k]] * 2, [math.sqrt(scales[k] * scales[k + 1])] * 2]
        for r in ASPECT_RATIOS[k]:
            q = math.sqrt(r)
            pairs += [[scales[k] * q, scales[k] / q], [scales[k] / q, scales[k] * q]]
        pairs = np.clip(np.asarray(pairs, np.float32), 0, 1)
        shifts = ((np.arange(f) + 0.5) / (size / step)).astype(np.float32)
        sy, sx = np.meshgrid(shifts, shifts, indexing="ij")
        centres = np.stack([sx.reshape(-1), sy.reshape(-1)], 1)
        for cx, cy in centres:
            for w, h in pairs:
                out.append([cx, cy, w, h])
    return np.asarray(out, np.float32)


def caffe_port_prior_box():
    """amdegroot's / lufficc's PriorBox for SSD300 (the same function in both
    ports: lufficc's, from `benchmarks.torch_reference`), clamped to [0, 1]."""
    return lufficc_prior_box(300, MAPS, STEPS, [30, 60, 111, 162, 213, 264],
                             [60, 111, 162, 213, 264, 315], ASPECT_RATIOS)


def random_state_dict(source, num_outputs, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape, dtype=np.float32)
            for k, (_, _, _, shape) in SOURCES[source].expected_keys(num_outputs).items()}


# -------------------------------------------------------------- the priors
def test_torchvision_priors_are_its_default_box_generator():
    a = generate_anchors(SOURCES["torchvision"].geometry | {"num_classes": 90})
    ref = torchvision_default_boxes()
    assert a.shape == ref.shape == (8732, 4)
    assert np.abs(a - ref).max() < 1e-6
    assert ref[:, 2:].max() == 1.0  # the clamp matters (last maps' wide boxes)


@pytest.mark.parametrize("source", ["amdegroot", "lufficc"])
def test_voc_port_priors_are_their_prior_box(source):
    a = generate_anchors(SOURCES[source].geometry | {"num_classes": 20})
    ref = caffe_port_prior_box()
    assert np.abs(a - ref).max() < 1e-6
    # and not the unclipped Caffe priors
    assert np.abs(generate_anchors({**SOURCES[source].geometry, "clip": "none",
                                    "num_classes": 20}) - ref).max() > 1e-3


def test_source_facts():
    tv, am, lu = SOURCES["torchvision"], SOURCES["amdegroot"], SOURCES["lufficc"]
    assert tv.geometry["min_sizes"] == [21, 45, 99, 153, 207, 261]
    assert tv.geometry["max_sizes"] == [45, 99, 153, 207, 261, 315]
    assert (tv.geometry["clip"], am.geometry["clip"], lu.geometry["clip"]) == (
        "wh", "cxcywh", "cxcywh")
    assert tv.postprocessing["max_log_scale"] == pytest.approx(math.log(1000 / 16))
    assert tv.postprocessing["clip_boxes"] and not am.postprocessing["clip_boxes"]
    assert (tv.postprocessing["top_k"], lu.postprocessing["top_k"]) == (200, 100)
    assert am.postprocessing_for(3)["top_k"] == 600  # 200 per class, no image limit
    assert len(COCO_CLASS_NAMES) == 90 and COCO_CLASS_NAMES[0] == "person"
    assert COCO_CLASS_NAMES[11] == "N/A-12" and coco_category_id(12) == 13  # stop sign
    assert COCO_CATEGORY_IDS[-1] == 90 and COCO_CLASS_NAMES[-1] == "toothbrush"
    with pytest.raises(ValueError, match="unused 'N/A' output"):
        coco_category_id(11)
    assert list(am.class_names) == list(VOC_CLASSES) and VOC_CLASSES[-1] == "tvmonitor"


# ------------------------------------------------------ .pth -> SSD model
CASES = [  # source, logits, how the file is written
    ("torchvision", 91, "zip"),
    ("amdegroot", 21, "legacy"),
    ("lufficc", 21, "model-dict"),
]


@pytest.mark.parametrize("source, num_outputs, layout", CASES)
def test_a_checkpoint_file_converts_weight_for_weight(tmp_path, save_pth, source,
                                                      num_outputs, layout):
    state = random_state_dict(source, num_outputs)
    path = tmp_path / f"{source}.pth"
    if layout == "model-dict":
        save_pth(path, {"model": state, "iteration": 120000,
                        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}})
    else:
        save_pth(path, state, legacy=layout == "legacy")
    model = convert_checkpoint(path)  # source sniffed from the keys
    spec = SOURCES[source]
    assert model.num_classes == num_outputs - 1
    assert model.class_names == list(spec.class_names)
    assert model.config.clip == spec.geometry["clip"]
    assert model.preprocessing == spec.preprocessing
    assert model.postprocessing == spec.postprocessing
    for key, (layer, kind, index, _) in spec.expected_keys(num_outputs).items():
        got = model.get_layer(layer).get_weights()[index]
        want = state[key].transpose(2, 3, 1, 0) if state[key].ndim == 4 else state[key]
        assert np.array_equal(got, want), key
    if source == "torchvision":
        assert model.count_params() == 35_641_826


def test_the_first_prior_of_a_head_is_its_first_channels():
    """Channel a * K + k of a head is prior a, value k (torch's view(N, A, K, H, W)):
    a bias on channel 4 + 2 moves prior 1's y offset."""
    state = {k: np.zeros(v[3], np.float32)
             for k, v in SOURCES["amdegroot"].expected_keys(21).items()}
    state["loc.0.bias"][1 * 4 + 2] = 1.0       # prior 1 of each conv4_3 cell, its w offset
    state["conf.0.bias"][3 * 21 + 7] = 5.0     # prior 3 of each cell, class 7
    model = convert_state_dict(state, "amdegroot")
    out = np.asarray(model(np.zeros((1, 300, 300, 3), np.float32)))[0]
    n = 38 * 38 * 4
    loc = out[:n, :4].reshape(38, 38, 4, 4)
    assert np.all(loc[:, :, 1, 2] == 1.0) and np.count_nonzero(loc) == 38 * 38
    conf = out[:n, 4:].reshape(38, 38, 4, 21)
    assert np.all(conf[:, :, 3, 7] == 5.0) and np.count_nonzero(conf) == 38 * 38


# ------------------------------------------------------------------ errors
def test_a_missing_key_is_named():
    state = random_state_dict("lufficc", 21)
    del state["backbone.extras.3.weight"]
    with pytest.raises(ConversionError, match=r"missing keys: 'backbone.extras.3.weight'"):
        convert_state_dict(state, "lufficc")


def test_an_extra_key_is_named():
    state = random_state_dict("torchvision", 91)
    state["backbone.extra.5.0.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(ConversionError, match=r"unexpected keys: 'backbone.extra.5.0.weight'"):
        convert_state_dict(state, "torchvision")


def test_a_mis_shaped_key_is_named_with_both_shapes():
    state = random_state_dict("amdegroot", 21)
    state["vgg.31.weight"] = np.zeros((1024, 512, 1, 1), np.float32)
    with pytest.raises(ConversionError, match=r"'vgg.31.weight' \(keras-ssd layer fc6\) has "
                                              r"shape \(1024, 512, 1, 1\), expected "
                                              r"\(1024, 512, 3, 3\)"):
        convert_state_dict(state, "amdegroot")


def test_class_heads_that_disagree_are_refused():
    state = random_state_dict("amdegroot", 21)
    state["conf.1.bias"] = np.zeros((6 * 5,), np.float32)
    with pytest.raises(ConversionError,
                       match=r"'conf.1.bias' \(keras-ssd layer fc7_mbox_conf\) has shape \(30,\)"):
        convert_state_dict(state, "amdegroot")
    with pytest.raises(ConversionError, match="num_classes=5 disagrees"):
        convert_state_dict(random_state_dict("amdegroot", 21), "amdegroot", num_classes=5)


def test_other_class_counts_convert_with_generic_names():
    model = convert_state_dict(random_state_dict("torchvision", 4), "torchvision")
    assert model.class_names == ["class_0", "class_1", "class_2"]
    assert model.output_shape == (None, 8732, 8)


def test_sniffing_the_source():
    assert sniff_source(random_state_dict("torchvision", 91)) == "torchvision"
    assert sniff_source({"module." + k: v for k, v in
                         random_state_dict("amdegroot", 21).items()}) == "amdegroot"
    with pytest.raises(ConversionError, match="cannot tell which SSD"):
        sniff_source({"conv1.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="unknown checkpoint source 'caffe'"):
        convert_state_dict({}, "caffe")


def test_a_file_with_the_wrong_layout_names_the_file(tmp_path, save_pth):
    path = save_pth(tmp_path / "odd.pth", {"fc.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ConversionError, match=r"odd.pth: cannot tell which SSD"):
        convert_checkpoint(path)


def _refuse(*args, **kwargs):
    raise AssertionError("the restricted reader, not torch, must read the file")


@pytest.mark.backend
def test_checkpoints_convert_with_the_restricted_reader_on_the_active_backend(
        tmp_path, save_pth, monkeypatch):
    # Under KERAS_BACKEND=torch, torch is imported; the default reader must
    # still be keras_ssd.pth's, never torch.load.
    import sys

    import keras

    from keras_ssd import pth

    monkeypatch.setattr(pth, "_load_with_torch", _refuse)
    if "torch" in sys.modules:
        monkeypatch.setattr(sys.modules["torch"], "load", _refuse)
    state = random_state_dict("amdegroot", 21)
    path = tmp_path / "amdegroot.pth"
    save_pth(path, state, legacy=True)
    model = convert_checkpoint(path)
    key = "vgg.0.weight"
    layer, _, index, _ = SOURCES["amdegroot"].expected_keys(21)[key]
    np.testing.assert_array_equal(model.get_layer(layer).get_weights()[index],
                                  state[key].transpose(2, 3, 1, 0))
    x = np.random.default_rng(0).uniform(0, 255, (1, 300, 300, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (1, 8732, 4 + 21) and np.isfinite(out).all()
