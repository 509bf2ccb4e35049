"""Non-square inputs in the geometry layer: `SSDConfig` with `(height,
width)` sizes, priors aspect-correct in normalised coordinates, grid IoU and
target encoding on non-square maps, and square configs pinned to the values
they gave before non-square inputs existed."""

import hashlib
import math

import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import anchor_grid, cxcywh_to_xyxy, grid_iou, iou
from keras_ssd.config import SSDConfig, parse_image_size
from keras_ssd.targets import TargetEncoder

#: SSD300's geometry at 300 x 540 (16:9), with the map shapes VGG16 makes
#: there and the steps `SSDConfig.with_image_size` gives.
SSD300_WIDE_MAPS = [(38, 68), (19, 34), (10, 17), (5, 9), (3, 7), (1, 5)]


def wide_ssd300(**changes):
    return SSDConfig.ssd300(num_classes=3).with_image_size((300, 540), SSD300_WIDE_MAPS) \
        .replace(**changes)


def loop_priors(height, width, maps, steps, min_sizes, max_sizes, ratios, offset=0.5):
    """The Caffe PriorBox loop, written out per cell with separate x and y."""
    out = []
    for (fh, fw), (step_y, step_x), lo, hi, rs in zip(maps, steps, min_sizes, max_sizes,
                                                      ratios):
        for i in range(fh):
            for j in range(fw):
                cx = (j + offset) * step_x / width
                cy = (i + offset) * step_y / height
                out.append((cx, cy, lo / width, lo / height))
                s = math.sqrt(lo * hi)
                out.append((cx, cy, s / width, s / height))
                for r in rs:
                    bw, bh = lo * math.sqrt(r), lo / math.sqrt(r)
                    out.append((cx, cy, bw / width, bh / height))
                    out.append((cx, cy, bh / width, bw / height))
    return np.asarray(out)


# ----------------------------------------------------------------- config
def test_image_size_takes_height_width_and_stores_a_square_pair_as_int():
    c = wide_ssd300()
    assert c.image_size == (300, 540)
    assert (c.image_height, c.image_width, c.image_shape, c.is_square) == (
        300, 540, (300, 540), False)
    square = SSDConfig.ssd300().replace(image_size=[300, 300])
    assert square.image_size == 300 and square.is_square
    assert square.image_shape == (300, 300)


def test_feature_map_sizes_and_steps_take_pairs_and_shapes_list_every_map():
    c = wide_ssd300()
    assert c.feature_map_shapes == SSD300_WIDE_MAPS
    assert c.feature_map_sizes[0] == (38, 68)
    # A square map or an equal step pair is stored as one number.
    assert SSDConfig.ssd300().replace(feature_map_sizes=[(38, 38), 19, 10, 5, 3, [1, 1]]) \
        .feature_map_sizes == [38, 19, 10, 5, 3, 1]
    assert c.steps[:4] == [8.0, 16.0, 32.0, 64.0]
    assert c.step_shapes[4] == (100.0, 540 / 7) and c.step_shapes[5] == (300.0, 108.0)
    assert c.num_anchors == sum(h * w * k for (h, w), k in
                                zip(SSD300_WIDE_MAPS, c.boxes_per_cell)) == 15606


def test_non_square_config_round_trips_through_dict_and_yaml():
    c = wide_ssd300(letterbox=True, class_names=["a", "b", "c"])
    d = c.to_dict()
    assert d["image_size"] == [300, 540] and d["feature_map_sizes"][0] == [38, 68]
    assert d["steps"][4] == [100.0, 540 / 7] and d["letterbox"] is True
    assert SSDConfig.from_dict(d) == c
    assert SSDConfig.from_yaml(c.to_yaml()) == c


def test_square_config_dict_is_unchanged_and_says_nothing_of_letterbox():
    d = SSDConfig.ssd300().to_dict()
    assert d["image_size"] == 300 and d["feature_map_sizes"] == [38, 19, 10, 5, 3, 1]
    assert d["steps"] == [8.0, 16.0, 32.0, 64.0, 100.0, 300.0]
    assert "letterbox" not in d
    assert SSDConfig.from_dict(d).letterbox is False


@pytest.mark.parametrize("field, value, message", [
    ("image_size", (300, 0), "image_size"),
    ("image_size", (300, 540, 3), "image_size"),
    ("image_size", (300.5, 540), "image_size"),
    ("image_size", "300x540", "image_size"),
    ("feature_map_sizes", [(38, 0), 19, 10, 5, 3, 1], "feature_map_sizes"),
    ("feature_map_sizes", [(38, True), 19, 10, 5, 3, 1], "feature_map_sizes"),
    ("steps", [(8, -1), 16, 32, 64, 100, 300], "steps"),
    ("steps", [(8, 8, 8), 16, 32, 64, 100, 300], "steps"),
    ("letterbox", "yes", "letterbox"),
])
def test_bad_sizes_steps_and_letterbox_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        SSDConfig.ssd300().replace(**{field: value})


def test_parse_image_size_reads_s_and_hxw():
    assert parse_image_size("300") == 300
    assert parse_image_size("300x540") == (300, 540)
    assert parse_image_size(" 320X320 ") == 320
    for bad in ("300x", "x540", "300x540x3", "big", "0x540"):
        with pytest.raises(ValueError):
            parse_image_size(bad)


def test_with_image_size_at_the_own_size_changes_nothing():
    for name in ("ssd300", "ssd512", "mobilenet_v2", "tiny"):
        c = SSDConfig.from_preset(name)
        assert c.with_image_size(c.image_size, c.feature_map_shapes) == c


def test_with_image_size_keeps_strides_and_spreads_unpadded_maps():
    c = SSDConfig.tiny().with_image_size((160, 288), [(20, 36), (10, 18), (5, 9), (3, 5),
                                                      (1, 3)])
    assert c.steps[:3] == [8.0, 16.0, 32.0]  # 8 * 36 = 288: the stride is kept
    assert c.step_shapes[3] == (160 / 3, 288 / 5) and c.step_shapes[4] == (160.0, 96.0)
    assert c.min_sizes == SSDConfig.tiny().min_sizes  # prior sizes stay in pixels
    with pytest.raises(ValueError, match="5 maps"):
        SSDConfig.tiny().with_image_size((160, 288), [(20, 36)])


# ----------------------------------------------------------------- priors
def test_priors_of_a_300x540_config_match_the_loop_formula():
    c = wide_ssd300()
    expected = loop_priors(300, 540, c.feature_map_shapes, c.step_shapes, c.min_sizes,
                           c.max_sizes, c.aspect_ratios)
    got = generate_anchors(c)
    assert got.shape == expected.shape == (15606, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_a_30_pixel_square_prior_is_square_in_pixels_on_a_wide_image():
    first = generate_anchors(wide_ssd300())[0]
    np.testing.assert_allclose(first, [4 / 540, 4 / 300, 30 / 540, 30 / 300], rtol=1e-6)
    # The last map's centres run along x at 108 px steps, y at the middle.
    last = generate_anchors(wide_ssd300())[-4 * 5:].reshape(5, 4, 4)
    np.testing.assert_allclose(last[:, 0, 0], (np.arange(5) + 0.5) * 108 / 540, rtol=1e-6)
    np.testing.assert_allclose(last[:, 0, 1], 0.5, rtol=1e-6)


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


#: Square configurations, computed before non-square inputs existed:
#: (priors, targets of `_reference_boxes`) SHA-256 prefixes.
SQUARE_REFERENCE = {
    "ssd300": ("327b6cefbab2f6a4", "b48efd8a3e4892aa"),
    "ssd512": ("7eeeb9c5e55f7c55", "5e7e86812392b1ce"),
    "tiny": ("8002aa5104ab3015", "4e915c516dac257e"),
    "mobilenet_v2": ("175a8d36f88370b4", "76567a555da3813c"),
}


def _reference_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.6, (6, 2))
    wh = rng.uniform(0.05, 0.4, (6, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32), np.arange(6) % 3


@pytest.mark.parametrize("name", sorted(SQUARE_REFERENCE))
def test_square_presets_give_bit_identical_priors_and_targets(name):
    config = SSDConfig.from_preset(name)
    boxes, labels = _reference_boxes()
    priors_sha, targets_sha = SQUARE_REFERENCE[name]
    assert _sha(generate_anchors(config)) == priors_sha
    assert _sha(TargetEncoder.from_config(config)(boxes, labels)) == targets_sha


def test_square_decoder_output_is_bit_identical():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the pinned hashes were computed by the TensorFlow backend")
    from keras_ssd.layers.decode_detections import DecodeDetections

    config = SSDConfig.tiny(num_classes=3)
    p = np.random.default_rng(1).normal(size=(2, config.num_anchors, 8)).astype(np.float32)
    out = DecodeDetections(config, confidence_threshold=0.2)(p)
    assert (_sha(np.asarray(out["boxes"])), _sha(np.asarray(out["scores"])),
            _sha(np.asarray(out["labels"]))) == (
        "b0cb519f260b9b99", "bb4e31ec21e99efe", "5d70799f51d7a413")


# ------------------------------------------------------ matching, encoding
def test_grid_iou_on_non_square_maps_equals_plain_iou():
    c = wide_ssd300()
    anchors = cxcywh_to_xyxy(generate_anchors(c)).astype(np.float32)
    grid = anchor_grid(anchors, list(zip(c.feature_map_shapes, c.boxes_per_cell)))
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [0.3, 0.1, 0.9, 0.5], [0.0, 0.0, 1.0, 1.0]],
                     np.float32)
    np.testing.assert_array_equal(grid_iou(boxes, grid), iou(boxes, anchors))
    with pytest.raises(ValueError, match="grid"):
        anchor_grid(anchors, list(zip([(68, 38)] + SSD300_WIDE_MAPS[1:], c.boxes_per_cell)))


def test_encoder_on_a_wide_config_matches_the_plain_iou_encoder():
    c = wide_ssd300()
    boxes = np.array([[0.05, 0.1, 0.2, 0.6], [0.5, 0.5, 0.95, 0.9]], np.float32)
    fast = TargetEncoder.from_config(c)(boxes, [0, 2])
    plain = TargetEncoder(generate_anchors(c), variances=c.variances)(boxes, [0, 2])
    np.testing.assert_array_equal(fast, plain)
    assert fast.shape == (15606, 5) and set(np.unique(fast[:, 4])) == {0.0, 1.0, 3.0}
