"""Letterbox and non-square rendering in the data pipeline: the letterbox
geometry, plans whose boxes match their pixels, boxes mapped back to the
source image in both modes, and SSDSequence following the config."""

import numpy as np
import pytest

from keras_ssd.data import (
    MEAN_RGB,
    SSDAugmentation,
    SSDSequence,
    VOCDataset,
    apply_plan,
    eval_batches,
    letterbox_geometry,
    make_synthetic_voc,
    resize_plan,
    source_boxes,
)
from keras_ssd.data.sequence import load_resized
from keras_ssd.data.synthetic import SYNTHETIC_CLASSES

GREY = (40, 40, 40)


def picture(width, height, box, colour=(255, 255, 255)):
    """A grey `width x height` image with one white rectangle `box` (xyxy px)."""
    image = np.empty((height, width, 3), np.uint8)
    image[...] = GREY
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = colour
    return image


def white_extent(image):
    """The xyxy pixel extent of the (near) white pixels of `image`."""
    ys, xs = np.nonzero(image.min(axis=2) > 200)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def is_mean(pixels):
    return np.all(pixels == np.asarray(MEAN_RGB, np.uint8))


# --------------------------------------------------------------- geometry
def test_letterbox_geometry_fits_keeps_aspect_and_centres():
    # 400x200 into 160 (h) x 224 (w): the width limits, scale 0.56.
    sx, sy, left, top = letterbox_geometry(400, 200, (160, 224))
    assert (sx, sy, left, top) == (224 / 400, 112 / 200, 0, 24)
    # A tall image is padded left and right.
    sx, sy, left, top = letterbox_geometry(100, 400, (160, 224))
    assert (round(100 * sx), round(400 * sy), left, top) == (40, 160, 92, 0)
    assert letterbox_geometry(300, 300, 300) == (1.0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="positive"):
        letterbox_geometry(0, 10, 300)


def test_letterboxed_plan_puts_the_image_in_the_middle_with_mean_padding():
    image = picture(400, 200, (100, 50, 200, 150))
    plan = resize_plan(400, 200, [[100, 50, 200, 150]], (160, 224), letterbox=True)
    out = apply_plan(image, plan)
    assert out.shape == (160, 224, 3)
    assert is_mean(out[:24]) and is_mean(out[136:])  # 24 rows above, 24 below
    assert np.all(out[24:136] != np.asarray(MEAN_RGB, np.uint8))
    np.testing.assert_allclose(plan.boxes, [[56, 52, 112, 108]], atol=1e-9)
    np.testing.assert_allclose(white_extent(out), plan.boxes[0], atol=1.0)
    assert plan.reduce_factor == pytest.approx(400 / 224)


@pytest.mark.parametrize("size, out", [((333, 517), (300, 540)), ((517, 333), (300, 540)),
                                       ((640, 480), 300), ((97, 203), (160, 288))])
def test_letterboxed_round_trip_maps_a_box_back_to_itself(size, out):
    width, height = size
    box = np.array([[0.13 * width, 0.21 * height, 0.77 * width, 0.94 * height]])
    plan = resize_plan(width, height, box, out, letterbox=True)
    back = source_boxes(plan.normalized_boxes, width, height, out, letterbox=True)
    np.testing.assert_allclose(back, box, atol=1e-3 * max(width, height))
    assert back.dtype == np.float32


def test_stretched_non_square_mapping_scales_each_axis():
    plan = resize_plan(640, 480, [[64, 48, 320, 240]], (300, 540))
    np.testing.assert_allclose(plan.boxes, [[54, 30, 270, 150]])
    np.testing.assert_allclose(plan.normalized_boxes, [[0.1, 0.1, 0.5, 0.5]], rtol=1e-6)
    back = source_boxes(plan.normalized_boxes, 640, 480, (300, 540))
    np.testing.assert_allclose(back, [[64, 48, 320, 240]], rtol=1e-6)
    image = picture(640, 480, (64, 48, 320, 240))
    np.testing.assert_allclose(white_extent(apply_plan(image, plan)), plan.boxes[0], atol=1.0)


# ------------------------------------------------------------ augmentation
@pytest.mark.parametrize("seed", range(12))
def test_letterboxed_augmentation_boxes_match_their_pixels(seed):
    image = picture(240, 120, (60, 30, 150, 100))
    boxes = [[60, 30, 150, 100]]
    aug = SSDAugmentation((96, 160), photometric=False, letterbox=True)
    stretch = SSDAugmentation((96, 160), photometric=False)
    plan = aug.sample(240, 120, boxes, np.random.default_rng(seed))
    twin = stretch.sample(240, 120, boxes, np.random.default_rng(seed))
    # The same random choices; only the placement differs.
    assert (plan.flip, plan.window, plan.keep.tolist()) == (
        twin.flip, twin.patch, twin.keep.tolist())
    out = aug.apply(image, plan)
    assert out.shape == (96, 160, 3)
    if plan.keep.all():
        np.testing.assert_allclose(white_extent(out), plan.boxes[0], atol=1.5)
    # The crop keeps its aspect ratio: only one axis may be padded.
    x0, y0, x1, y1 = plan.window
    sx, sy, left, top = letterbox_geometry(x1 - x0, y1 - y0, (96, 160))
    assert left == 0 or top == 0
    if top > 0:
        assert is_mean(out[:top - 1])
    if left > 0:
        assert is_mean(out[:, :left - 1] if not plan.flip else out[:, 161 - left:])


def test_augmentation_letterbox_must_be_a_bool():
    with pytest.raises(ValueError, match="letterbox"):
        SSDAugmentation(96, letterbox="yes")
    assert SSDAugmentation(96, letterbox=True).get_config()["letterbox"] is True


# ------------------------------------------------------------- SSDSequence
@pytest.fixture(scope="module")
def wide_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    make_synthetic_voc(root, num_trainval=4, num_test=1, image_size=(96, 48), seed=0)
    return VOCDataset(root, "trainval", class_names=SYNTHETIC_CLASSES)


def _config(tiny_config, letterbox):
    return tiny_config(len(SYNTHETIC_CLASSES), image_size=(48, 80),
                       feature_map_sizes=[(6, 10), (3, 5)], min_sizes=[10, 24],
                       max_sizes=[24, 40], aspect_ratios=[[2], [2]], letterbox=letterbox)


def test_sequence_renders_non_square_letterboxed_batches(tiny_config, wide_voc):
    config = _config(tiny_config, letterbox=True)
    seq = SSDSequence(wide_voc, config, batch_size=2, augment=False, seed=0)
    images, targets = seq[0]
    assert images.shape == (2, 48, 80, 3) and targets.shape == (2, config.num_anchors, 5)
    # 96x48 (2:1) in 80x48: scaled to 80x40, 4 mean rows above and below.
    assert seq.letterbox and is_mean(images[0, :4].astype(np.uint8))
    assert is_mean(images[0, 44:].astype(np.uint8))
    expected, _, _ = load_resized(wide_voc, 0, (48, 80), letterbox=True)
    np.testing.assert_array_equal(images[0], expected)
    batch, info = next(eval_batches(wide_voc, (48, 80), batch_size=2, letterbox=True))
    np.testing.assert_array_equal(batch[0], expected)
    assert info["sizes"][0].tolist() == [48, 96]
    stretched = SSDSequence(wide_voc, _config(tiny_config, False), batch_size=2)[0][0]
    assert not is_mean(stretched[0, :4].astype(np.uint8))


def test_sequence_augmentation_follows_the_config_letterbox(tiny_config, wide_voc):
    config = _config(tiny_config, letterbox=True)
    seq = SSDSequence(wide_voc, config, batch_size=2, augment=True, seed=1,
                      augmentation={"photometric": False})
    assert seq.augmentation.letterbox and seq[0][0].shape == (2, 48, 80, 3)
    with pytest.raises(ValueError, match="letterbox"):
        SSDSequence(wide_voc, config, batch_size=2, augment=True,
                    augmentation=SSDAugmentation((48, 80)))
    with pytest.raises(ValueError, match="output_size"):
        SSDSequence(wide_voc, config, batch_size=2, augment=True,
                    augmentation=SSDAugmentation(48, letterbox=True))


# ------------------------------------------------------------- anchor fit
def test_anchor_fit_measures_boxes_as_a_letterboxing_model_sees_them():
    from keras_ssd.config import SSDConfig
    from keras_ssd.data import anchor_fit

    class Wide:
        class_names = ("box",)
        # A 400x100 image: stretched to 160x224 a 100x100 px square becomes
        # 56x160 px; letterboxed (scale 0.56) it stays square, 56x56.
        records = [{"image_id": "0", "image_path": "0.png", "width": 400, "height": 100,
                    "boxes": np.array([[150.0, 0.0, 250.0, 100.0]]),
                    "labels": np.array([0]), "difficult": np.array([False])}]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return self.records[i]

    maps = [(20, 28), (10, 14), (5, 7), (3, 4), (1, 2)]
    base = SSDConfig.tiny(1).with_image_size((160, 224), maps)
    stretched = anchor_fit(Wide(), base, iou_threshold=1.0, suggest=False)
    boxed = anchor_fit(Wide(), base.replace(letterbox=True), iou_threshold=1.0,
                       suggest=False)
    assert stretched.unreachable[0]["size"] == pytest.approx(np.sqrt(56 * 160))
    assert boxed.unreachable[0]["size"] == pytest.approx(56.0)
    assert boxed.unreachable[0]["box"] == [150.0, 0.0, 250.0, 100.0]  # source pixels
