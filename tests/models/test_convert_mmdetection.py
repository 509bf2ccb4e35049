"""mmdetection's VGG16 SSDs without torch: files in its layout
(`{"meta": plain values, "state_dict": ...}`, written by the minimal writer
of tests/test_pth.py) convert weight for weight, the class heads turned
background-first; the priors are mmdetection's `SSDAnchorGenerator`'s and
the decoding is its dense head's post-processing (both re-implemented here
in numpy from its code); sniffing, bad keys and a `meta` that names code.
The equality with a torch network in mmdetection's layout is
tests/models/test_convert_mmdetection_equality.py."""

import math

import numpy as np
import pytest

from keras_ssd import pth
from keras_ssd.anchors import generate_anchors
from keras_ssd.models.convert import (
    SOURCES, ConversionError, convert_checkpoint, convert_state_dict, sniff_source,
    source_config,
)

from benchmarks.torch_reference import (
    match_detections, per_class_nms, softmax)

#: (source, input size, basesize_ratio_range, strides, ratios, maps) as
#: mmdetection's configs set them (configs/_base_/models/ssd300.py,
#: configs/ssd/ssd512_coco.py, configs/pascal_voc/ssd*_voc0712.py).
R300 = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
R512 = [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
CONFIGS = {
    "mmdet_ssd300_coco": (300, (0.15, 0.9), [8, 16, 32, 64, 100, 300], R300,
                          [38, 19, 10, 5, 3, 1]),
    "mmdet_ssd300_voc": (300, (0.2, 0.9), [8, 16, 32, 64, 100, 300], R300,
                         [38, 19, 10, 5, 3, 1]),
    "mmdet_ssd512_coco": (512, (0.1, 0.9), [8, 16, 32, 64, 128, 256, 512], R512,
                          [64, 32, 16, 8, 4, 2, 1]),
    "mmdet_ssd512_voc": (512, (0.15, 0.9), [8, 16, 32, 64, 128, 256, 512], R512,
                         [64, 32, 16, 8, 4, 2, 1]),
}


def mmdet_anchors(size, ratio_range, strides, ratios, maps):
    """mmdetection's `SSDAnchorGenerator(scale_major=False)`: xyxy pixel
    priors of every level (level, row, column, base anchor), and the
    priors per level."""
    levels = len(strides)
    low, high = int(ratio_range[0] * 100), int(ratio_range[1] * 100)
    step = int(np.floor(high - low) / (levels - 2))
    mins, maxs = [], []
    for r in range(low, high + 1, step):
        mins.append(int(size * r / 100))
        maxs.append(int(size * (r + step) / 100))
    first = {(300, 0.15): (7, 15), (300, 0.2): (10, 20), (512, 0.1): (4, 10),
             (512, 0.15): (7, 15)}[(size, ratio_range[0])]
    mins.insert(0, int(size * first[0] / 100))
    maxs.insert(0, int(size * first[1] / 100))
    out, counts = [], []
    for k, (stride, f) in enumerate(zip(strides, maps)):
        scales = np.array([1.0, np.sqrt(maxs[k] / mins[k])], np.float32)
        anchor_ratio = [1.0]
        for r in ratios[k]:
            anchor_ratio += [1 / r, r]
        h_ratios = np.sqrt(np.array(anchor_ratio, np.float32))
        w_ratios = 1 / h_ratios
        # AnchorGenerator.gen_single_level_base_anchors, scale_major=False
        ws = (mins[k] * scales[:, None] * w_ratios[None, :]).reshape(-1)
        hs = (mins[k] * scales[:, None] * h_ratios[None, :]).reshape(-1)
        c = stride / 2.0
        base = np.stack([c - 0.5 * ws, c - 0.5 * hs, c + 0.5 * ws, c + 0.5 * hs], -1)
        indices = list(range(len(anchor_ratio)))
        indices.insert(1, len(indices))
        base = base[indices]
        shift = np.arange(f, dtype=np.float32) * stride
        xx, yy = np.tile(shift, f), np.repeat(shift, f)  # _meshgrid, row major
        shifts = np.stack([xx, yy, xx, yy], -1)
        out.append((base[None] + shifts[:, None]).reshape(-1, 4))
        counts.append(f * f * len(base))
    return np.concatenate(out).astype(np.float64), counts


def mmdet_postprocess(loc, conf, anchors, counts, size, score_thr=0.02, nms_pre=1000,
                      iou_thr=0.45, max_per_img=200, cut=True):
    """mmdetection's `BaseDenseHead._predict_by_feat_single` and
    `_bbox_post_process` for an SSD: per level, softmax without the
    background (the LAST logit), `filter_scores_and_topk` (pairs above
    `score_thr`, the best `nms_pre`); `DeltaXYWHBBoxCoder.decode` (stds 0.1,
    0.1, 0.2, 0.2, log-scales clamped at +-log(1000 / 16), boxes clamped to
    the image); boxes of zero width or height dropped (`min_bbox_size=0`);
    `batched_nms` (per class, suppress IoU > thr); the best `max_per_img`.
    `cut=False` skips the `nms_pre` cut (to show that it acts).

    Returns `(boxes px, scores, labels)` and the score gap at the last kept
    detection (None when nothing was cut)."""
    prior_idx, labels, scores = [], [], []
    start = 0
    for n in counts:
        s = softmax(conf[start:start + n])[:, :-1]
        rows, cols = np.nonzero(s > score_thr)
        values = s[rows, cols]
        order = np.argsort(-values, kind="stable")
        if cut:
            order = order[:nms_pre]
        prior_idx.append(rows[order] + start)
        labels.append(cols[order])
        scores.append(values[order])
        start += n
    prior_idx, labels = np.concatenate(prior_idx), np.concatenate(labels)
    scores = np.concatenate(scores)
    a, d = anchors[prior_idx], loc[prior_idx] * np.array([0.1, 0.1, 0.2, 0.2])
    clamp = abs(math.log(16 / 1000))
    dw, dh = np.clip(d[:, 2], -clamp, clamp), np.clip(d[:, 3], -clamp, clamp)
    px, py = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    pw, ph = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    gw, gh = pw * np.exp(dw), ph * np.exp(dh)
    gx, gy = px + pw * d[:, 0], py + ph * d[:, 1]
    boxes = np.clip(np.stack([gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2], -1),
                    0, size)
    ok = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    kept, gap = per_class_nms(boxes, scores, labels, iou_thr, max_per_img)
    return (boxes[kept], scores[kept], labels[kept]), gap


def ours_to_xyxy_px(priors, size):
    cx, cy, w, h = (priors[:, i].astype(np.float64) for i in range(4))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * size


def random_state_dict(source, num_outputs=None, seed=0):
    spec = SOURCES[source]
    num_outputs = num_outputs or spec.published_outputs
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(shape, dtype=np.float32)
            for _, _, tensors in spec.table(num_outputs) for key, shape in tensors}


META = {"mmdet_version": "2.14.0", "config": "model = dict(type='SingleStageDetector')",
        "CLASSES": ("aeroplane", "bicycle"), "epoch": 24, "iter": 110000,
        "hook_msgs": {"last_ckpt": "work_dirs/epoch_24.pth", "best_score": 0.776},
        "seed": None, "time": "Tue Aug  3 01:54:28 2021", "exp_name": "ssd300_voc0712.py",
        "stages": [1, 2.5, [True, False]]}


@pytest.mark.parametrize("source", sorted(CONFIGS))
def test_priors_are_mmdetections_ssd_anchor_generator(source):
    size, ratio_range, strides, ratios, maps = CONFIGS[source]
    theirs, counts = mmdet_anchors(size, ratio_range, strides, ratios, maps)
    config = source_config(source)
    ours = ours_to_xyxy_px(generate_anchors(config), size)
    assert ours.shape == theirs.shape == (sum(counts), 4)
    assert config.clip == "none"
    if "coco" in source:  # mmdetection's 80 COCO classes, with their category ids
        assert config.num_classes == 80 and config.class_names[:2] == ["person", "bicycle"]
        assert config.class_names[-1] == "toothbrush" and "N/A" not in config.class_names
        assert list(config.category_ids[:12]) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
        assert config.category_ids[-1] == 90
    assert float(np.abs(ours - theirs).max()) < 1e-4  # float32 pixels


def test_a_voc_ssd300_file_with_meta_converts_weight_for_weight(tmp_path, save_pth):
    state = random_state_dict("mmdet_ssd300_voc")
    path = save_pth(tmp_path / "ssd300_voc0712.pth", {"meta": META, "state_dict": state})
    assert pth.load_pth(path)["meta"] == META  # plain values, read as they are
    model = convert_checkpoint(path)  # sniffed: 21 logits with neck.l2_norm
    assert model.architecture == "ssd300" and model.num_classes == 20
    assert model.class_names[14] == "person" and model.normalization == "l2"
    assert list(model.preprocessing["mean"]) == [123.675, 116.28, 103.53]
    assert model.postprocessing == SOURCES["mmdet_ssd300_voc"].postprocessing
    spec = SOURCES["mmdet_ssd300_voc"]
    for layer, kind, tensors in spec.table(21):
        got = model.get_layer(layer).get_weights()
        if layer.endswith("_mbox_conf"):
            kernel, bias = state[tensors[0][0]], state[tensors[1][0]]
            boxes = bias.shape[0] // 21
            for a in range(boxes):  # background: mmdetection's last logit
                assert np.array_equal(got[1][a * 21], bias[a * 21 + 20])
                assert np.array_equal(got[1][a * 21 + 1:a * 21 + 21],
                                      bias[a * 21:a * 21 + 20])
                assert np.array_equal(got[0][..., a * 21],
                                      kernel[a * 21 + 20].transpose(1, 2, 0))
            continue
        for g, (key, _) in zip(got, tensors):
            want = state[key].transpose(2, 3, 1, 0) if state[key].ndim == 4 else state[key]
            assert np.array_equal(g, want), key


def test_sniffing_tells_size_and_data_from_keys_and_class_count():
    assert sniff_source(random_state_dict("mmdet_ssd300_coco")) == "mmdet_ssd300_coco"
    assert sniff_source(random_state_dict("mmdet_ssd512_coco")) == "mmdet_ssd512_coco"
    assert sniff_source(random_state_dict("mmdet_ssd300_voc")) == "mmdet_ssd300_voc"
    assert sniff_source(random_state_dict("mmdet_ssd512_voc")) == "mmdet_ssd512_voc"
    own = random_state_dict("mmdet_ssd300_coco", num_outputs=6)  # 5 classes of one's own
    with pytest.raises(ConversionError, match="published class count.*pass source="):
        sniff_source(own)
    model = convert_state_dict(own, "mmdet_ssd300_voc")  # its priors picked by the caller
    assert model.num_classes == 5 and model.config.min_sizes[0] == 30.0


def test_a_missing_or_mis_shaped_key_is_named():
    state = random_state_dict("mmdet_ssd512_coco")
    del state["neck.extra_layers.4.1.conv.bias"]
    with pytest.raises(ConversionError, match=r"missing keys: "
                                              r"'neck.extra_layers.4.1.conv.bias'"):
        convert_state_dict(state, "mmdet_ssd512_coco")
    state = random_state_dict("mmdet_ssd300_coco")
    state["bbox_head.reg_convs.2.0.weight"] = np.zeros((24, 512, 1, 1), np.float32)
    with pytest.raises(ConversionError, match=r"'bbox_head.reg_convs.2.0.weight' "
                                              r"\(keras-ssd layer conv6_2_mbox_loc\) has "
                                              r"shape \(24, 512, 1, 1\), expected "
                                              r"\(24, 512, 3, 3\)"):
        convert_state_dict(state, "mmdet_ssd300_coco")


def test_a_meta_that_names_code_refuses_the_file(tmp_path, save_pth):
    from test_pth import Global

    class NumpyScalar:  # what a numpy float in `meta` pickles as
        def __reduce_ex__(self, protocol):
            return Global("numpy.core.multiarray", "scalar"), (None, b"\0" * 8)

    path = save_pth(tmp_path / "ssd.pth", {"meta": dict(META, best=NumpyScalar()),
                                           "state_dict": random_state_dict(
                                               "mmdet_ssd300_voc")})
    with pytest.raises(pth.PthSecurityError, match="numpy.core.multiarray.scalar"):
        convert_checkpoint(path)


def test_decoding_is_mmdetections_dense_head_post_processing():
    """The presets' decoder on random head outputs (three classes raised and
    big boxes, so that the per-level cut of 1000 acts; a few boxes pushed out
    of the image, so that empty boxes occur) keeps mmdetection's detections."""
    import keras

    from keras_ssd.layers.decode_detections import DecodeDetections

    source = "mmdet_ssd300_voc"
    size, ratio_range, strides, ratios, maps = CONFIGS[source]
    anchors, counts = mmdet_anchors(size, ratio_range, strides, ratios, maps)
    config = source_config(source)
    rng = np.random.default_rng(3)
    loc = rng.normal(0, 1.5, (len(anchors), 4))
    loc[:, 2:] += 8.0  # boxes about 5x their priors: NMS keeps few of each map's best
    conf = rng.normal(0, 1.0, (len(anchors), 21))
    conf[:, [14, 6, 11]] += [2.5, 2.0, 1.5]  # mmdetection order: background last
    loc[::97, 0] = -1000.0  # centres far left of the image: clipped to zero width
    # log-scales of -8 (offsets of -40): mmdetection's coder raises them to
    # -log(1000 / 16), boxes of 1.6% of their priors; kept by NMS (small, and
    # their class raised), so that the lower clamp shows in the detections
    shrunk = np.arange(5, len(anchors), 400)
    loc[shrunk, 2:] = -40.0
    conf[shrunk, 14] += 6.0
    theirs, gap = mmdet_postprocess(loc, conf, anchors, counts, size)
    uncut, _ = mmdet_postprocess(loc, conf, anchors, counts, size, cut=False)
    # the cut acts: without it more boxes survive NMS and fill the 200
    assert gap is None and 100 < len(theirs[0]) < len(uncut[0]) == 200
    heads = np.concatenate([loc, conf[:, -1:], conf[:, :-1]], -1)[None].astype(np.float32)

    def decode(**changes):
        options = dict(SOURCES[source].postprocessing, **changes)
        decoded = DecodeDetections(config, **options)(heads)
        decoded = {k: keras.ops.convert_to_numpy(v) for k, v in decoded.items()}
        n = int(decoded["num_detections"][0])
        return (decoded["boxes"][0, :n].astype(np.float64) * size,
                decoded["scores"][0, :n], decoded["labels"][0, :n])

    ours = decode()
    count, worst_box, worst_score = match_detections(ours, theirs, box_tol=1e-3,
                                                     score_tol=1e-5)
    assert count == len(theirs[0]) and worst_box < 1e-3 and worst_score < 1e-5
    widths = theirs[0][:, 2] - theirs[0][:, 0]
    assert np.sum((widths > 0) & (widths < 0.05 * size)) >= 10  # the shrunk ones
    unclamped = decode(min_log_scale=None)  # mmdetection's lower clamp matters
    assert match_detections(unclamped, theirs, box_tol=np.inf, score_tol=1e-5)[1] > 0.1
    # each option acts: without the cut more detections, without the drop empty boxes
    assert len(decode(max_candidates_per_level=None)[0]) == 200
    kept_empty = decode(drop_empty_boxes=False)[0]
    assert np.any(kept_empty[:, 2] <= kept_empty[:, 0])
    assert np.all(ours[0][:, 2] > ours[0][:, 0])


def test_the_new_decode_options_are_checked_and_serialised():
    from keras_ssd.config import SSDConfig
    from keras_ssd.layers.decode_detections import DecodeDetections

    config = SSDConfig.tiny(num_classes=2)
    with pytest.raises(ValueError, match="max_candidates_per_level must be a positive int"):
        DecodeDetections(config, max_candidates_per_level=0)
    with pytest.raises(ValueError, match="drop_empty_boxes must be a bool"):
        DecodeDetections(config, drop_empty_boxes="yes")
    layer = DecodeDetections(config, max_candidates_per_level=7, drop_empty_boxes=True)
    again = DecodeDetections.from_config(layer.get_config())
    assert (again.max_candidates_per_level, again.drop_empty_boxes) == (7, True)
    assert layer.replace(top_k=3).options["max_candidates_per_level"] == 7


def test_an_mmdetection_preset_fine_tunes_through_the_real_loading_path(
        tmp_path, monkeypatch, save_pth):
    """`SSD300.from_preset("ssd300_voc_mmdet", class_names=..., freeze=...)`
    offline: a file in its layout put by hand in the cache (the published
    hash prefix swapped for the test file's) is checked, read, converted,
    and given new class heads with the background prior; the backbone and
    box heads are the file's."""
    import dataclasses
    import hashlib

    from keras_ssd import presets
    from keras_ssd.presets import pretrained as registry
    from keras_ssd.models import SSD300, pretrained
    from keras_ssd.training.fit import resolve_recipe

    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    name = "ssd300_voc_mmdet"
    path = pretrained.checkpoint_path(name)
    tmp_path.joinpath("cache", "pretrained").mkdir(parents=True)
    state = random_state_dict("mmdet_ssd300_voc")
    save_pth(path, {"meta": META, "state_dict": state})
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    monkeypatch.setitem(registry.PRETRAINED, name, dataclasses.replace(
        registry.PRETRAINED[name], sha256_prefix=digest[:8]))
    model = SSD300.from_preset(name, class_names=["cat", "dog"], freeze="backbone",
                               cache=False, verbose=False)
    assert model.class_names == ["cat", "dog"] and model.config.min_sizes[0] == 30.0
    assert not model.get_layer("fc7").trainable and model.get_layer("conv6_1").trainable
    np.testing.assert_array_equal(model.get_layer("conv1_1").get_weights()[0],
                                  state["backbone.features.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.get_layer("fc7_mbox_loc").get_weights()[1],
                                  state["bbox_head.reg_convs.1.0.bias"])
    bias = model.get_layer("fc7_mbox_conf").get_weights()[1].reshape(6, 3)
    np.testing.assert_allclose(bias[:, 0], pretrained.background_bias(2), rtol=1e-6)
    assert np.all(bias[:, 1:] == 0)
    assert model.postprocessing == SOURCES["mmdet_ssd300_voc"].postprocessing
    assert resolve_recipe(model) is presets.FINETUNE_SGD


def old_layout(state):
    """A state dict in mmdetection's layout before 2.14 (what its
    `upgrade_ssd_version.py` reads): `backbone.extra.<i>`,
    `backbone.l2_norm.weight`, `bbox_head.cls_convs.<i>.weight`."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("neck.extra_layers."):
            key = f"backbone.extra.{2 * int(parts[2]) + int(parts[3])}.{parts[-1]}"
        elif key == "neck.l2_norm.weight":
            key = "backbone.l2_norm.weight"
        elif key.startswith("bbox_head."):
            key = f"bbox_head.{parts[1]}.{parts[2]}.{parts[-1]}"
        out[key] = value
    return out


@pytest.mark.parametrize("source", ["mmdet_ssd300_coco", "mmdet_ssd512_coco"])
def test_the_layout_before_mmdetection_2_14_converts_to_the_same_model(source):
    state = random_state_dict(source, seed=1)
    old = old_layout(state)
    assert "backbone.extra.7.weight" in old and "bbox_head.cls_convs.0.weight" in old
    assert sniff_source(old) == source
    assert sniff_source({f"module.{k}": v for k, v in old.items()}) == source
    new, converted = convert_state_dict(state, source), convert_state_dict(old, "auto")
    for a, b in zip(new.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(a, b)
