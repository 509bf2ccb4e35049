"""Augmentation: geometry pinned with masks, crop constraints, the fast path
against the step-by-step chain, photometric semantics."""

import dataclasses
import time

import numpy as np
import pytest
from PIL import Image

from keras_ssd.boxes import iou
from keras_ssd.data import augment as A
from keras_ssd.data.augment import (
    PhotometricParams,
    SSDAugmentation,
    apply_photometric,
    apply_plan,
    hflip,
    sample_crop,
)

BOXES = np.array([[10, 8, 50, 40], [60, 30, 95, 70], [20, 45, 45, 75]], dtype=np.float64)


def smooth_image(h=80, w=100, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def box_masks(boxes, h, w):
    """One RGB mask image per box (255 inside the box's pixels)."""
    masks = []
    for x0, y0, x1, y1 in boxes.astype(int):
        m = np.zeros((h, w, 3), dtype=np.uint8)
        m[y0:y1, x0:x1] = 255
        masks.append(m)
    return masks


@pytest.mark.parametrize("seed", range(30))
def test_every_surviving_box_frames_its_mask(seed):
    aug = SSDAugmentation((64, 72), photometric=False)
    h, w = 80, 100
    rng = np.random.default_rng(seed)
    plan = aug.sample(w, h, BOXES, rng)
    masks = box_masks(BOXES, h, w)
    kept = np.nonzero(plan.keep)[0]
    assert len(kept) == len(plan.boxes)
    for j, box in zip(kept, plan.boxes):
        out = apply_plan(masks[j], plan, mean=(0, 0, 0))[..., 0] > 127
        ys, xs = np.nonzero(out)
        assert len(xs), f"box {j} survived but its mask vanished"
        # mask pixels [x, x + 1) lie inside the box, and the box is tight (1.5 px)
        assert xs.min() >= box[0] - 1.5 and xs.max() + 1 <= box[2] + 1.5
        assert ys.min() >= box[1] - 1.5 and ys.max() + 1 <= box[3] + 1.5
        assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5
        assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5
    # dropped boxes had their centre outside the crop
    for j in np.nonzero(~plan.keep)[0]:
        cx, cy = (BOXES[j, 0] + BOXES[j, 2]) / 2, (BOXES[j, 1] + BOXES[j, 3]) / 2
        if plan.expand:
            cx, cy = cx + plan.expand.left, cy + plan.expand.top
        x0, y0, x1, y1 = plan.patch
        assert not (x0 <= cx <= x1 and y0 <= cy <= y1)


def test_plans_cover_every_geometric_branch():
    aug = SSDAugmentation(64)
    plans = [aug.sample(100, 80, BOXES, np.random.default_rng(s)) for s in range(30)]
    assert any(p.expand for p in plans) and any(not p.expand for p in plans)
    assert any(p.flip for p in plans) and any(not p.flip for p in plans)
    cropped = [p for p in plans if p.patch != (0, 0, 100, 80) and not p.expand]
    assert cropped and any(p.photometric for p in plans)


def test_flip_twice_is_identity():
    img = smooth_image()
    once, b1 = hflip(img, BOXES)
    assert not np.array_equal(once, img)
    np.testing.assert_allclose(b1[0], [100 - 50, 8, 100 - 10, 40])
    twice, b2 = hflip(once, b1)
    np.testing.assert_array_equal(twice, img)
    np.testing.assert_allclose(b2, BOXES)


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_each_crop_option_enforces_its_iou(min_iou):
    boxes = np.concatenate([BOXES, [[8, 6, 92, 74]]])  # a large one makes 0.9 reachable
    hits = 0
    for seed in range(40):
        patch = sample_crop(np.random.default_rng(seed), 100, 80, boxes, min_ious=(min_iou,),
                            whole_image=False, any_patch=False)
        if patch is None:
            continue
        hits += 1
        p = np.asarray([patch], dtype=np.float64)
        x0, y0, x1, y1 = patch
        assert 0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 80
        assert iou(p, boxes).max() >= min_iou
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        assert np.any((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1))
        # patch side >= 0.3 of the image, aspect within [0.5, 2] in relative units
        assert (x1 - x0) >= 0.3 * 0.3 * 100 - 1 and (y1 - y0) >= 0.3 * 0.3 * 80 - 1
    assert hits > 0


def _crop_one_option_at_a_time(rng, width, height, boxes, min_ious, max_trials=50):
    """Caffe's sampler written the plain way: one draw of trials per option."""
    found = [None]
    for min_iou in list(min_ious) + [None]:
        patches = A._sample_patches(rng, width, height, max_trials, (0.3, 1.0), (0.5, 2.0))
        valid = A._centres_inside(boxes, patches).any(axis=1)
        if min_iou is not None:
            valid &= (iou(patches.astype(np.float64), boxes) >= min_iou).any(axis=1)
        if valid.any():
            found.append(tuple(int(v) for v in patches[int(np.argmax(valid))]))
    return found[int(rng.integers(len(found)))]


def test_crop_sampler_draws_all_options_at_once_with_the_same_result():
    boxes = np.concatenate([BOXES, [[8, 6, 92, 74]]])
    for seed in range(200):
        a = sample_crop(np.random.default_rng(seed), 100, 80, boxes)
        b = _crop_one_option_at_a_time(np.random.default_rng(seed), 100, 80, boxes,
                                       (0.1, 0.3, 0.5, 0.7, 0.9))
        assert a == b, seed


def test_crop_options_are_all_reachable_and_whole_image_is_one():
    patches = {sample_crop(np.random.default_rng(s), 100, 80, BOXES) for s in range(60)}
    assert None in patches and len(patches) > 10


def test_impossible_crop_constraint_returns_without_looping():
    tiny = np.array([[0, 0, 2, 2]], dtype=np.float64)
    t = time.perf_counter()
    for seed in range(20):
        assert sample_crop(np.random.default_rng(seed), 1000, 1000, tiny, min_ious=(0.9,),
                           whole_image=False, any_patch=False, max_trials=50) is None
    assert time.perf_counter() - t < 5  # bounded, not a speed test


def test_image_without_boxes_gets_whole_image_or_free_patch():
    empty = np.zeros((0, 4))
    aug = SSDAugmentation(32)
    for seed in range(10):
        patch = sample_crop(np.random.default_rng(seed), 100, 80, empty)
        assert patch is None or (patch[2] <= 100 and patch[3] <= 80)
        plan = aug.sample(100, 80, empty, np.random.default_rng(seed))
        assert plan.boxes.shape == (0, 4)
        assert apply_plan(smooth_image(), plan).shape == (32, 32, 3)


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_matches_the_step_by_step_chain(seed):
    img = smooth_image(seed=seed)
    labels = np.array([0, 1, 2])
    aug = SSDAugmentation((60, 70))
    out, boxes, lab = aug(img, BOXES, labels, rng=np.random.default_rng(seed))

    rng = np.random.default_rng(seed)
    x = A.photometric_distort(img, rng)
    x, b = A.expand(x, BOXES, rng)
    x, b, l2 = A.random_crop(x, b, labels, rng)
    x, b = A.random_flip(x, b, rng)
    x, b = A.resize(x, b, (60, 70))

    np.testing.assert_allclose(boxes, b, atol=1e-9)
    np.testing.assert_array_equal(lab, l2)
    assert out.shape == x.shape == (60, 70, 3)
    diff = np.abs(out.astype(int) - x.astype(int))
    assert diff.mean() < 3.0, diff.mean()


def test_photometric_steps_have_caffe_semantics():
    img = smooth_image()
    a = img.astype(int)
    np.testing.assert_array_equal(apply_photometric(img, PhotometricParams(brightness=-20.4)),
                                  np.clip(a - 20, 0, 255))
    np.testing.assert_array_equal(apply_photometric(img, PhotometricParams(contrast=1.5)),
                                  np.clip(np.rint(a * 1.5), 0, 255))
    both = PhotometricParams(brightness=30, contrast=0.5, contrast_first=True)
    np.testing.assert_array_equal(apply_photometric(img, both),
                                  np.clip(np.rint(np.clip(a + 30, 0, 255) * 0.5), 0, 255))
    # contrast goes before or after the saturation / hue steps
    first = dataclasses.replace(both, saturation=1.5)
    last = dataclasses.replace(first, contrast_first=False)
    assert not np.array_equal(apply_photometric(img, last), apply_photometric(img, first))
    assert np.array_equal(apply_photometric(img, PhotometricParams()), img)


def test_saturation_in_rgb_equals_hsv_scaling():
    img = smooth_image(seed=3)
    for factor in (0.5, 1.4):
        fast = apply_photometric(img, PhotometricParams(saturation=factor)).astype(int)
        hsv = np.asarray(Image.fromarray(img).convert("HSV")).astype(float)
        hsv[..., 1] = np.clip(np.rint(hsv[..., 1] * factor), 0, 255)
        ref = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")).astype(int)
        assert np.abs(fast - ref).mean() < 1.5
    gray = np.full((4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(apply_photometric(gray, PhotometricParams(saturation=1.5)), gray)


def test_hue_shift_wraps_and_moves_hue():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    turned = apply_photometric(red, PhotometricParams(hue=60.0))  # +120 degrees
    assert turned[0, 0, 1] > 150 and turned[0, 0, 0] < 50  # red -> green
    full = apply_photometric(red, PhotometricParams(hue=180.0))  # a full turn
    assert np.abs(full.astype(int) - red).max() <= 3


def test_expand_places_image_on_mean_canvas():
    img = smooth_image(20, 30)
    for seed in range(10):
        canvas, b = A.expand(img, BOXES[:1] / 4, np.random.default_rng(seed), prob=1.0)
        h, w = canvas.shape[:2]
        assert 30 <= w <= 120 and 20 <= h <= 80
        left, top = b[0, 0] - BOXES[0, 0] / 4, b[0, 1] - BOXES[0, 1] / 4
        assert left == int(left) and top == int(top)
        np.testing.assert_array_equal(canvas[int(top):int(top) + 20, int(left):int(left) + 30], img)
        mask = np.ones((h, w), bool)
        mask[int(top):int(top) + 20, int(left):int(left) + 30] = False
        assert np.all(canvas[mask] == np.array(A.MEAN_RGB, np.uint8))


def test_resize_scales_boxes():
    out, b = A.resize(smooth_image(), BOXES, (40, 200))
    assert out.shape == (40, 200, 3)
    np.testing.assert_allclose(b[0], [20, 4, 100, 20])


def test_expand_fill_is_never_distorted():
    aug = SSDAugmentation(60, expand_prob=1.0, brightness_prob=1.0, brightness_delta=40,
                          contrast_prob=1.0, saturation_prob=1.0, hue_prob=1.0,
                          min_ious=(), any_patch=False, flip_prob=0.0)
    for seed in range(5):
        plan = aug.sample(100, 80, BOXES, np.random.default_rng(seed))
        assert plan.patch == (0, 0, plan.expand.canvas_width, plan.expand.canvas_height)
        out = aug.apply(smooth_image(), plan)
        sx, sy = 60 / plan.expand.canvas_width, 60 / plan.expand.canvas_height
        u0, u1 = plan.expand.left * sx - 1, (plan.expand.left + 100) * sx + 1
        v0, v1 = plan.expand.top * sy - 1, (plan.expand.top + 80) * sy + 1
        xs, ys = np.meshgrid(np.arange(60) + 0.5, np.arange(60) + 0.5)
        fill = (xs < u0) | (xs > u1) | (ys < v0) | (ys > v1)
        assert fill.any()
        assert np.all(out[fill] == np.array(A.MEAN_RGB, np.uint8))
        assert np.any(out[~fill] != np.array(A.MEAN_RGB, np.uint8))


@pytest.mark.parametrize("bad", [dict(flip_prob=1.5), dict(contrast_range=(2, 1)),
                                 dict(max_expand_ratio=0.5), dict(max_trials=0),
                                 dict(scale_range=(0, 1)), dict(min_ious=(1.5,)),
                                 dict(mean=(1, 2))])
def test_bad_augmentation_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        SSDAugmentation(300, **bad)


def test_output_size_validation_and_config_roundtrip():
    with pytest.raises(ValueError, match="output size"):
        SSDAugmentation(0)
    aug = SSDAugmentation((30, 40), flip_prob=0.2)
    assert SSDAugmentation(**aug.get_config()).get_config() == aug.get_config()
