"""The rules that fit a run's defaults to its dataset
(`keras_ssd.training.fitted_defaults`), each forced on a small synthetic set."""

import json

import numpy as np
import pytest

from keras_ssd.config import SSDConfig
from keras_ssd.training import fitted_defaults as fd


class _Boxes:
    """A records-interface dataset of square boxes of the given sides
    (share of a 200x200 image), tiled left to right."""

    def __init__(self, sides, per_image=4, image=200):
        self.class_names = ["a"]
        self.records = []
        sides = list(sides)
        for start in range(0, len(sides), per_image):
            boxes = []
            for k, s in enumerate(sides[start:start + per_image]):
                px = s * image
                x0, y0 = 5 + 45 * k, 5 + 40 * (k % 3)
                boxes.append([x0, y0, x0 + px, y0 + px])
            self.records.append({"width": image, "height": image,
                                 "boxes": np.asarray(boxes, np.float32),
                                 "labels": np.zeros(len(boxes), np.int64)})

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def _stats(sides):
    return fd.box_stats(_Boxes(sides))


def test_box_stats_measure_sides_as_shares_of_the_stretched_input():
    stats = fd.box_stats(_Boxes([0.1, 0.2, 0.3, 0.4]))
    assert stats.num_images == 1 and stats.num_boxes == 4
    np.testing.assert_allclose(np.sort(stats.sides), [0.1, 0.2, 0.3, 0.4], rtol=1e-5)
    with pytest.raises(ValueError, match="no box to measure"):
        fd.box_stats(_Boxes([]))


def test_small_objects_get_a_larger_input_large_ones_keep_the_presets():
    small = _stats([0.03] * 20 + [0.2] * 20)  # p10: 3% of the side
    side, why = fd.choose_input_size(small, 160, 8)
    assert side > 160 and side % fd.SIZE_MULTIPLE == 0
    assert side <= fd.MAX_UPSCALE * 160
    assert "less than the first map's stride" in why and "capped" in why
    medium = _stats([0.045] * 40)  # 7.2 px at 160: 192 px gives 8.6 px
    assert fd.choose_input_size(medium, 160, 8)[0] == 192
    large = _stats([0.2] * 40)
    side, why = fd.choose_input_size(large, 160, 8)
    assert side == 160 and "at least 1 stride" in why


def test_zoom_out_is_limited_for_small_objects_and_full_for_large_ones():
    ratio, why = fd.choose_expand_ratio(_stats([0.5] * 40), 160, 16)
    assert ratio == fd.DEFAULT_EXPAND and "full zoom-out" in why
    # p25 side 0.15 * 160 = 24 px; IoU 0.5 with a 16 px prior needs 11.3 px
    ratio, why = fd.choose_expand_ratio(_stats([0.15] * 40), 160, 16)
    assert ratio == pytest.approx(2.1) and "not x4" in why
    assert 24 / ratio >= np.sqrt(0.5) * 16
    ratio, why = fd.choose_expand_ratio(_stats([0.07] * 40), 160, 16)
    assert ratio == 1.0 and "off" in why


def test_priors_change_only_when_the_search_matches_clearly_more_boxes():
    new = {"matched": 0.90, "min_sizes": [10.0, 20.0], "max_sizes": [20.0, 40.0]}
    assert fd.choose_priors(0.99, new)[0] is None
    sizes, why = fd.choose_priors(0.895, new)
    assert sizes is None and "less than 1% more" in why
    sizes, why = fd.choose_priors(0.70, new)
    assert sizes == {"min_sizes": [10.0, 20.0], "max_sizes": [20.0, 40.0]}
    assert "70.0%" in why and "90.0%" in why
    assert fd.choose_priors(0.5, None)[0] is None


def test_a_budget_gives_the_epochs_that_fit():
    assert fd.epochs_for_budget(300, 70) == 4
    assert fd.epochs_for_budget(300, 70, max_epochs=3) == 3
    assert fd.epochs_for_budget(30, 70) == 1  # at least one
    with pytest.raises(ValueError, match="must be positive"):
        fd.epochs_for_budget(0, 70)


def _config_at(side):
    """The tiny preset's geometry at `side` (its maps: strides 8, 16, 32,
    then 3 and 1 cells), without building the network."""
    base = SSDConfig.from_preset("tiny", num_classes=1)
    maps = [side // 8, side // 16, side // 32, 3, 1]
    return base.with_image_size(side, [(m, m) for m in maps])


def test_fit_defaults_on_small_objects_grows_the_input_and_refits_the_priors(tmp_path):
    rng = np.random.default_rng(0)
    data = _Boxes(rng.uniform(0.03, 0.09, 80))
    base = SSDConfig.from_preset("tiny", num_classes=1)
    fitted = fd.fit_defaults(data, base, _config_at)
    assert fitted.config.image_shape[0] > 160
    by_name = {d.name: d for d in fitted.decisions}
    assert set(by_name) == {"input size", "prior sizes", "max zoom-out"}
    assert not any(d.given for d in fitted.decisions)
    assert fitted.config.min_sizes[0] < base.min_sizes[0]  # smaller first priors
    assert fitted.max_expand_ratio < fd.DEFAULT_EXPAND
    lines = fitted.describe()
    assert lines[0].startswith("defaults fitted to the dataset (images 20, boxes 80")
    fitted.save(tmp_path / "f.json")
    saved = json.loads((tmp_path / "f.json").read_text())
    assert saved["max_expand_ratio"] == fitted.max_expand_ratio
    assert saved["config"]["min_sizes"] == list(fitted.config.min_sizes)


def test_given_values_win_over_the_rules():
    data = _Boxes([0.03] * 40)
    base = SSDConfig.from_preset("tiny", num_classes=1)
    asked = []

    def config_at(side):
        asked.append(side)
        return _config_at(side)

    fitted = fd.fit_defaults(data, base, config_at, image_size=224, max_expand_ratio=3.0,
                             fit_priors=False)
    assert asked == [224] and fitted.config.image_shape == (224, 224)
    assert fitted.max_expand_ratio == 3.0
    assert list(fitted.config.min_sizes) == list(base.min_sizes)
    assert all(d.given for d in fitted.decisions)
    assert "(given)" in fitted.describe()[1]


def test_a_short_budget_keeps_the_input_small_enough_for_enough_epochs():
    # 20 epochs at 160 px: 256 px holds 7.8, 224 px 10.2, 192 px 13.9
    side, why = fd.budget_input_size(256, 160, epochs_at_base=20, min_epochs=12)
    assert side == 192 and "at least 12 fit" in why
    # a budget that holds enough at the box rule's side leaves it alone
    assert fd.budget_input_size(256, 160, epochs_at_base=40, min_epochs=12) == (256, None)
    assert fd.budget_input_size(160, 160, epochs_at_base=1, min_epochs=12) == (160, None)
    # not even one step up fits: the preset's side
    assert fd.budget_input_size(256, 160, epochs_at_base=5, min_epochs=12)[0] == 160


def test_a_short_budget_halves_the_batch_until_it_holds_enough_steps():
    # 8,400 images: 262 steps of 32, 525 of 16, 1,050 of 8
    assert fd.choose_batch_size(8400, 32, min_steps=500)[0] == 16
    assert fd.choose_batch_size(8400, 32, min_steps=1000)[0] == 8
    batch, why = fd.choose_batch_size(8400, 32, min_steps=5000, smallest=8)
    assert batch == 8 and "the smallest batch, 8" in why
    batch, why = fd.choose_batch_size(80000, 32, min_steps=1000)
    assert batch == 32 and "the recipe's" in why
    assert fd.choose_batch_size(100, 8, min_steps=1000, smallest=8)[0] == 8  # never up


def test_fit_defaults_with_a_budget_measures_epochs_at_the_fitted_side():
    rng = np.random.default_rng(0)
    data = _Boxes(rng.uniform(0.03, 0.09, 80))  # 20 images
    base = SSDConfig.from_preset("tiny", num_classes=1)
    unbounded = fd.fit_defaults(data, base, _config_at, fit_priors=False)
    assert unbounded.batch_size is None  # no budget: the recipe's batch
    box_side = unbounded.config.image_shape[0]
    assert box_side > 192
    # 60 s at 4 img/s: 240 images, 12 epochs of 20 at 160 px, fewer above
    fitted = fd.fit_defaults(data, base, _config_at, fit_priors=False, budget_seconds=60,
                             images_per_second=4.0, base_batch=32)
    by_name = {d.name: d for d in fitted.decisions}
    assert fitted.config.image_shape[0] == 160 < box_side
    assert "but the budget holds about" in by_name["input size"].reason
    assert by_name["training speed"].value == "4.0 img/s"
    # 240 images at 160 px: 7 steps of 32, 15 of 16, 30 of 8 -> the smallest
    assert fitted.batch_size == fd.MIN_BATCH
    assert json.loads(json.dumps(fitted.to_dict()))["batch_size"] == fd.MIN_BATCH
    # the user's batch wins, and is recorded as given
    given = fd.fit_defaults(data, base, _config_at, fit_priors=False, budget_seconds=60,
                            images_per_second=4.0, base_batch=32, batch_size=24)
    assert given.batch_size == 24
    assert [d.given for d in given.decisions if d.name == "batch size"] == [True]
