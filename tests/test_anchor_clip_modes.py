"""SSDConfig.clip modes: none / corners / wh / cxcywh, against hand formulas."""

import numpy as np
import pytest

from keras_ssd.anchors import clip_priors, generate_anchors
from keras_ssd.config import CLIP_MODES, SSDConfig

PRIORS = np.array([
    [0.05, 0.5, 0.3, 0.2],     # sticks out on the left
    [0.5, 0.5, 1.4, 0.6],      # wider than the image
    [0.9, 0.95, 0.4, 0.3],     # sticks out right and bottom
    [0.5, 0.5, 0.2, 0.2],      # inside
])


def test_each_clip_mode_matches_its_formula():
    np.testing.assert_array_equal(clip_priors(PRIORS, "none"), PRIORS)
    x1 = np.clip(PRIORS[:, 0] - PRIORS[:, 2] / 2, 0, 1)
    y1 = np.clip(PRIORS[:, 1] - PRIORS[:, 3] / 2, 0, 1)
    x2 = np.clip(PRIORS[:, 0] + PRIORS[:, 2] / 2, 0, 1)
    y2 = np.clip(PRIORS[:, 1] + PRIORS[:, 3] / 2, 0, 1)
    corners = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
    np.testing.assert_allclose(clip_priors(PRIORS, "corners"), corners, atol=1e-15)
    wh = PRIORS.copy()
    wh[1, 2] = 1.0  # only the too-wide width changes
    np.testing.assert_array_equal(clip_priors(PRIORS, "wh"), wh)
    # cxcywh: every value to [0, 1]: the same here (all centres are inside)...
    np.testing.assert_array_equal(clip_priors(PRIORS, "cxcywh"), wh)
    # ... but a centre outside the image is moved too.
    outside = np.array([[1.2, -0.1, 0.5, 1.5]])
    np.testing.assert_array_equal(clip_priors(outside, "cxcywh"), [[1.0, 0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(clip_priors(outside, "wh"), [[1.2, -0.1, 0.5, 1.0]])


def test_bool_clip_reads_as_the_0_1_meaning_with_a_warning_and_serialises_as_a_mode():
    assert SSDConfig.ssd300(20).clip == "none"
    with pytest.warns(DeprecationWarning) as caught:
        assert SSDConfig.ssd300(20).replace(clip=False).clip == "none"
        config = SSDConfig.ssd300(20).replace(clip=True)
    assert [str(w.message) for w in caught] == [
        f"SSDConfig.clip={flag} is deprecated and goes in keras-ssd 0.3.0: use "
        f"SSDConfig.clip={mode!r}" for flag, mode in ((False, "none"), (True, "corners"))]
    assert {w.filename for w in caught} == {__file__}  # the caller's line
    assert config.clip == "corners"
    with pytest.warns(DeprecationWarning, match="clip mode=True is deprecated"):
        np.testing.assert_array_equal(clip_priors(PRIORS, True),
                                      clip_priors(PRIORS, "corners"))
    again = SSDConfig.from_yaml(config.to_yaml())
    assert again.clip == "corners" and again == config


def caffe_priors_float64():
    """The Caffe SSD300 priors by the formula, in float64: per map, row,
    column, then (min, min), (sqrt(min max),) * 2, then per ratio r
    (min sqrt(r), min / sqrt(r)) and its transpose; centres (i + 0.5) step."""
    maps, steps = [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300]
    mins, maxs = [30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    out = []
    for f, step, lo, hi, rs in zip(maps, steps, mins, maxs, ratios):
        sizes = [(lo, lo), (np.sqrt(lo * hi),) * 2]
        for r in rs:
            sizes += [(lo * np.sqrt(r), lo / np.sqrt(r)), (lo / np.sqrt(r), lo * np.sqrt(r))]
        for i in range(f):
            for j in range(f):
                for w, h in sizes:
                    out.append([(j + 0.5) * step / 300, (i + 0.5) * step / 300, w / 300, h / 300])
    return np.asarray(out, np.float64)


def test_none_and_corners_give_the_priors_of_before_bit_for_bit():
    ref = caffe_priors_float64()
    a = generate_anchors(SSDConfig.ssd300(20))
    assert a.dtype == np.float32 and np.array_equal(a, ref.astype(np.float32))
    # "corners" is 0.1's clip=True: corners clipped in float64, then float32.
    x1y1 = np.clip(ref[:, :2] - ref[:, 2:] / 2, 0, 1)
    x2y2 = np.clip(ref[:, :2] + ref[:, 2:] / 2, 0, 1)
    corners = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], 1).astype(np.float32)
    c = generate_anchors(SSDConfig.ssd300(20).replace(clip="corners"))
    assert np.array_equal(c, corners) and not np.array_equal(c, a)


@pytest.mark.parametrize("mode", CLIP_MODES)
def test_generate_anchors_applies_each_mode(mode):
    config = SSDConfig.ssd300(20).replace(clip=mode)
    a = generate_anchors(config)
    assert a.shape == (8732, 4)
    raw = generate_anchors(SSDConfig.ssd300(20))
    if mode == "none":
        assert np.array_equal(a, raw)
    elif mode == "wh":
        assert np.array_equal(a[:, :2], raw[:, :2])
        np.testing.assert_array_equal(a[:, 2:], np.minimum(raw[:, 2:], 1.0))
    elif mode == "cxcywh":
        np.testing.assert_array_equal(a, np.clip(raw, 0.0, 1.0))
        # The 10x10 map (step 32) has its last centres at 9.5 * 32 = 304 px,
        # outside the 300 px image: amdegroot's and lufficc's clamp moves them.
        moved = np.flatnonzero(np.any(a[:, :2] != raw[:, :2], axis=1))
        first_10x10 = 38 * 38 * 4 + 19 * 19 * 6
        assert moved.size and moved.min() >= first_10x10
        assert moved.max() < first_10x10 + 10 * 10 * 6
    else:
        xyxy = np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)
        assert xyxy.min() >= -1e-6 and xyxy.max() <= 1 + 1e-6


@pytest.mark.parametrize("bad", ["edges", 1, None, "WH?"])
def test_an_unknown_clip_mode_is_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="SSDConfig.clip must be one of 'none'"):
        SSDConfig.ssd300(20).replace(clip=bad)
