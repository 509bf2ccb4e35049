import math

import numpy as np
import pytest

from keras_ssd import SSDConfig, generate_anchors


def caffe_anchors(image_size, maps, steps, min_sizes, max_sizes, ratios, offset=0.5):
    """The Caffe PriorBox formula, written out loop by loop."""
    out = []
    for f, step, lo, hi, rs in zip(maps, steps, min_sizes, max_sizes, ratios):
        for i in range(f):
            for j in range(f):
                cx = (j + offset) * step / image_size
                cy = (i + offset) * step / image_size
                out.append((cx, cy, lo / image_size, lo / image_size))
                s = math.sqrt(lo * hi) / image_size
                out.append((cx, cy, s, s))
                for r in rs:
                    w = lo * math.sqrt(r) / image_size
                    h = lo / math.sqrt(r) / image_size
                    out.append((cx, cy, w, h))
                    out.append((cx, cy, h, w))
    return np.array(out)


def test_ssd300_anchors_equal_caffe_formula():
    a = generate_anchors(SSDConfig.ssd300(20))
    expected = caffe_anchors(
        300, [38, 19, 10, 5, 3, 1], [8, 16, 32, 64, 100, 300],
        [30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315],
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
    )
    assert a.dtype == np.float32
    assert a.shape == (8732, 4)
    np.testing.assert_allclose(a, expected, atol=1e-6)


def test_ssd512_anchors_equal_caffe_formula():
    a = generate_anchors(SSDConfig.ssd512(20))
    expected = caffe_anchors(
        512, [64, 32, 16, 8, 4, 2, 1], [8, 16, 32, 64, 128, 256, 512],
        [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
        [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
        [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
    )
    assert a.shape == (24564, 4)
    np.testing.assert_allclose(a, expected, atol=1e-6)


def test_known_anchor_values():
    a = generate_anchors(SSDConfig.ssd300(20))
    # First prior: cell (0, 0) of the 38x38 map, 30 px square.
    np.testing.assert_allclose(a[0], [4 / 300, 4 / 300, 0.1, 0.1], atol=1e-7)
    # Last prior: the single 1x1 cell, centre 150 px, ratio 1/2 box of 264 px.
    np.testing.assert_allclose(
        a[-1], [0.5, 0.5, 264 / math.sqrt(2) / 300, 264 * math.sqrt(2) / 300], atol=1e-6
    )


def test_clip_keeps_anchors_inside_image():
    c = SSDConfig.ssd300(20).replace(clip="corners")
    a = generate_anchors(c)
    xyxy = np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)
    assert xyxy.min() >= -1e-6 and xyxy.max() <= 1 + 1e-6
    assert not np.allclose(a, generate_anchors(SSDConfig.ssd300(20)))


def test_accepts_dict_and_object_with_config():
    c = SSDConfig.ssd300(20)

    class Holder:
        config = c

    np.testing.assert_array_equal(generate_anchors(c.to_dict()), generate_anchors(c))
    np.testing.assert_array_equal(generate_anchors(Holder()), generate_anchors(c))


def test_invalid_config_dict_raises():
    with pytest.raises(ValueError):
        generate_anchors({"image_size": 300})
