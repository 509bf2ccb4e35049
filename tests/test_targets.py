import numpy as np
import pytest

from keras_ssd import SSDConfig, TargetEncoder, encode_targets, generate_anchors
from keras_ssd.boxes import cxcywh_to_xyxy, decode, iou


@pytest.fixture(scope="module")
def anchors():
    return generate_anchors(SSDConfig.ssd300(20))


def random_boxes(rng, n):
    xy = rng.uniform(0, 0.7, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0.03, 0.3, (n, 2))], 1)


def test_output_layout_and_labels(anchors):
    boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.95]])
    y = encode_targets(boxes, [0, 14], anchors)
    assert y.shape == (8732, 5) and y.dtype == np.float32
    assert set(np.unique(y[:, 4]).tolist()) == {0.0, 1.0, 15.0}
    assert np.all(y[y[:, 4] == 0, :4] == 0)


def test_decode_of_encode_recovers_boxes(anchors):
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 12)
    labels = rng.integers(0, 20, 12)
    y = encode_targets(boxes, labels, anchors)
    pos = y[:, 4] > 0
    decoded = decode(y[pos, :4], anchors[pos])
    # Every positive prior decodes to exactly one of the boxes.
    err = np.abs(decoded[:, None, :] - boxes[None].astype(np.float32)).max(-1)
    assert err.min(axis=1).max() < 1e-5
    # ... the one it was matched to, with that box's label.
    owner = err.argmin(axis=1)
    np.testing.assert_array_equal(y[pos, 4], labels[owner] + 1)


def test_every_object_gets_at_least_one_anchor(anchors):
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 20)
    boxes[0] = [0.5, 0.5, 0.505, 0.52]  # tiny: no prior reaches IoU 0.5
    y = encode_targets(boxes, np.arange(20), anchors)
    assert set(np.unique(y[:, 4]).astype(int).tolist()) - {0} == set(range(1, 21))


def test_positives_follow_threshold(anchors):
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 5)
    y = encode_targets(boxes, np.zeros(5, int), anchors, iou_threshold=0.5)
    best = iou(boxes, cxcywh_to_xyxy(anchors)).max(0)
    pos = y[:, 4] > 0
    assert np.all(pos[best >= 0.5])
    assert (pos & (best < 0.5)).sum() <= 5  # only the forced matches


def test_empty_image_is_all_background(anchors):
    y = encode_targets(np.zeros((0, 4)), [], anchors)
    assert y.shape == (8732, 5) and not y.any()


def test_ignore_mask_marks_class_minus_one(anchors):
    boxes = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.5, 0.9, 0.95]])
    y = encode_targets(boxes, [3, 4], anchors, ignore=[False, True])
    assert set(np.unique(y[:, 4]).tolist()) == {-1.0, 0.0, 4.0}


@pytest.mark.parametrize(
    "boxes, labels, match",
    [
        ([[0.5, 0.5, 0.4, 0.6]], [0], "degenerate"),
        ([[0.1, 0.1, 0.1, 0.6]], [0], "degenerate"),
        ([[0.1, 0.1, np.inf, 0.6]], [0], "not finite"),
        ([[0.1, 0.1, 0.3, 0.6]], [0, 1], "labels"),
        ([[0.1, 0.1, 0.3, 0.6]], [-1], "labels must be integers >= 0"),
        ([[0.1, 0.1, 0.3, 0.6]], [1.5], "labels must be integers >= 0"),
    ],
)
def test_bad_input_raises_clear_error(anchors, boxes, labels, match):
    with pytest.raises(ValueError, match=match):
        encode_targets(np.array(boxes), np.array(labels), anchors)


def test_label_range_checked_when_num_classes_known():
    enc = TargetEncoder.from_config(SSDConfig.ssd300(3))
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        enc([[0.1, 0.1, 0.3, 0.6]], [3])


def test_grid_encoder_equals_generic_encoder():
    for config in (SSDConfig.ssd300(20), SSDConfig.ssd512(20),
                   SSDConfig.ssd300(20).replace(clip="corners")):
        fast = TargetEncoder.from_config(config)
        plain = TargetEncoder(generate_anchors(config), variances=config.variances)
        rng = np.random.default_rng(4)
        for n in (1, 7, 40):
            boxes = random_boxes(rng, n)
            labels = rng.integers(0, 20, n)
            np.testing.assert_array_equal(fast(boxes, labels), plain(boxes, labels))
            ref = iou(boxes.astype(np.float32), fast.anchors_xyxy)
            np.testing.assert_allclose(fast.overlaps(boxes.astype(np.float32)), ref, atol=1e-6)
            # ... and in fact bit for bit, like the plain encoder's dense IoU
            b32 = boxes.astype(np.float32)
            np.testing.assert_array_equal(fast.overlaps(b32), ref)
            np.testing.assert_array_equal(plain.overlaps(b32), ref)


def test_wrong_grid_is_rejected():
    a = generate_anchors(SSDConfig.ssd300(20))
    with pytest.raises(ValueError, match="grid"):
        TargetEncoder(a, grid=[(38, 4), (19, 6)])
    with pytest.raises(ValueError, match="grid"):
        TargetEncoder(a[::-1].copy(), grid=[(38, 4), (19, 6), (10, 6), (5, 6), (3, 4), (1, 4)])


def test_encoder_is_thread_safe():
    import concurrent.futures

    enc = TargetEncoder.from_config(SSDConfig.ssd300(20))
    rng = np.random.default_rng(5)
    cases = [(random_boxes(rng, int(n)), rng.integers(0, 20, int(n))) for n in rng.integers(1, 30, 40)]
    expected = [enc(b, l) for b, l in cases]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: enc(*c), cases))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_encoder_survives_pickling():
    import pickle

    enc = TargetEncoder.from_config(SSDConfig.ssd300(20))
    boxes = np.array([[0.1, 0.1, 0.4, 0.5]])
    before = enc(boxes, [2])
    clone = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(clone(boxes, [2]), before)
    assert clone.num_classes == 20


def test_encode_targets_reuses_one_encoder_per_anchor_set_by_value():
    from keras_ssd.targets import _cached_encoder

    anchors = generate_anchors(SSDConfig.tiny(3))
    first = _cached_encoder(anchors, 0.5, (0.1, 0.1, 0.2, 0.2))
    assert _cached_encoder(anchors.copy(), 0.5, [0.1, 0.1, 0.2, 0.2]) is first
    assert _cached_encoder(anchors, 0.6, (0.1, 0.1, 0.2, 0.2)) is not first
    changed = anchors.copy()
    changed[0, 0] += 0.01  # the same array object changed in place must not hit
    other = _cached_encoder(changed, 0.5, (0.1, 0.1, 0.2, 0.2))
    assert other is not first
    np.testing.assert_array_equal(other.anchors, changed)


def test_encode_targets_from_many_threads_equals_the_encoder():
    from concurrent.futures import ThreadPoolExecutor

    config = SSDConfig.tiny(3)
    anchors = generate_anchors(config)
    encoder = TargetEncoder.from_config(config)
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(40):
        g = int(rng.integers(1, 6))
        xy = rng.uniform(0, 0.6, (g, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(0.05, 0.4, (g, 2))], 1)
        cases.append((boxes.astype(np.float32), rng.integers(0, 3, g)))
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: encode_targets(c[0], c[1], anchors), cases))
    for (boxes, labels), y in zip(cases, got):
        np.testing.assert_array_equal(y, encoder(boxes, labels))


# ------------------------------------------------------------ crowd regions
def test_crowd_region_is_never_positive_and_ignores_the_priors_it_covers(anchors):
    crowd = np.array([[0.2, 0.2, 0.7, 0.8]])
    y = encode_targets(crowd, [3], anchors, crowd=[True])
    assert not np.any(y[:, 4] > 0)
    anchors_xyxy = cxcywh_to_xyxy(anchors)
    inter = np.prod(np.clip(np.minimum(anchors_xyxy[:, 2:], crowd[0, 2:])
                            - np.maximum(anchors_xyxy[:, :2], crowd[0, :2]), 0, None), 1)
    ioa = inter / np.prod(anchors_xyxy[:, 2:] - anchors_xyxy[:, :2], 1)
    sure = np.abs(ioa - 0.5) > 1e-4  # float32 rounding at the threshold itself
    np.testing.assert_array_equal((y[:, 4] == -1)[sure], (ioa >= 0.5)[sure])
    assert np.sum(y[:, 4] == -1) > 100  # the region covers many priors
    assert np.all(y[:, :4] == 0)


def test_crowd_region_takes_no_prior_from_a_real_object(anchors):
    # The crowd box is the real object's twin, so it would win the real
    # object's best prior (and its threshold positives) if it were matched.
    real = np.array([[0.30, 0.30, 0.50, 0.52]])
    crowd = np.array([[0.30, 0.30, 0.50, 0.52], [0.1, 0.6, 0.45, 0.95]])
    boxes = np.concatenate([crowd[:1], real, crowd[1:]])
    y = encode_targets(boxes, [4, 7, 4], anchors, crowd=[True, False, True])
    alone = encode_targets(real, [7], anchors)
    pos = alone[:, 4] > 0
    np.testing.assert_array_equal(y[pos], alone[pos])  # the same positives, same offsets
    np.testing.assert_array_equal(y[:, 4] > 0, pos)
    assert set(np.unique(y[~pos, 4]).tolist()) == {-1.0, 0.0}


def test_crowd_threshold_is_the_encoders_on_intersection_over_prior_area():
    # Four unit-size priors; the crowd box covers 0%, 40%, 60% and 100% of them.
    anchors = np.array([[0.1, 0.5, 0.1, 0.1], [0.32, 0.5, 0.1, 0.1],
                        [0.52, 0.5, 0.1, 0.1], [0.8, 0.5, 0.1, 0.1]], np.float32)
    crowd = [[0.33, 0.0, 1.0, 1.0]]  # covers x >= 0.33
    y = TargetEncoder(anchors)(crowd, [0], crowd=[True])
    np.testing.assert_array_equal(y[:, 4], [0, 0, -1, -1])
    y = TargetEncoder(anchors, iou_threshold=0.3)(crowd, [0], crowd=[True])
    np.testing.assert_array_equal(y[:, 4], [0, -1, -1, -1])


def test_difficult_ignore_and_crowd_combine(anchors):
    boxes = np.array([[0.05, 0.05, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9], [0.4, 0.0, 1.0, 0.5]])
    y = encode_targets(boxes, [0, 1, 2], anchors, ignore=[True, False, False],
                       crowd=[False, False, True])
    only_real = encode_targets(boxes[:2], [0, 1], anchors, ignore=[True, False])
    matched = only_real[:, 4] != 0
    np.testing.assert_array_equal(y[matched], only_real[matched])
    assert np.any(y[:, 4] == -1) and set(np.unique(y[:, 4]).tolist()) == {-1.0, 0.0, 2.0}


def test_crowd_mask_of_the_wrong_shape_is_an_error(anchors):
    with pytest.raises(ValueError, match="crowd has shape"):
        encode_targets([[0.1, 0.1, 0.5, 0.5]], [0], anchors, crowd=[True, False])
