"""`keras_ssd.anchor_fit`: best prior IoUs, shares, groups, unreachable
boxes, the size suggestion and the plot."""

import json
import logging
import sys

import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import cxcywh_to_xyxy, iou
from keras_ssd.config import SSDConfig
from keras_ssd.data.anchor_fit import AnchorFitReport, anchor_fit, plot_anchor_fit
from keras_ssd.targets import TargetEncoder


class Records:
    """A records-interface dataset from `(width, height, boxes, labels)`."""

    def __init__(self, images, class_names=("cat", "dog")):
        self.class_names = tuple(class_names)
        self.records = []
        for i, (w, h, boxes, labels) in enumerate(images):
            self.records.append({
                "image_id": f"im{i}", "image_path": f"/data/im{i}.jpg",
                "width": w, "height": h,
                "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                "labels": np.asarray(labels, np.int64).reshape(-1),
                "difficult": np.zeros(len(labels), bool),
            })

    def __len__(self):
        return len(self.records)


def random_records(n, lo, hi, size=(160, 120), seed=0, per_image=3):
    """`n` images of `size` with boxes whose sides are `lo` to `hi` of the image."""
    rng = np.random.default_rng(seed)
    w, h = size
    images = []
    for _ in range(n):
        wh = rng.uniform(lo, hi, (per_image, 2)) * [w, h]
        xy = rng.uniform(0, 1, (per_image, 2)) * ([w, h] - wh)
        images.append((w, h, np.concatenate([xy, xy + wh], 1), np.arange(per_image) % 2))
    return Records(images)


def test_a_box_equal_to_a_prior_has_best_iou_one(tiny_config):
    config = tiny_config(2)
    priors = cxcywh_to_xyxy(generate_anchors(config))
    chosen = [0, 5, 40, 63, 64, 87]  # both maps, first and last priors
    # The same priors in a 32x32 and in a stretched 64x96 image.
    data = Records([(32, 32, priors[chosen] * 32, [0] * 6),
                    (64, 96, priors[chosen] * [64, 96, 64, 96], [1] * 6)])
    report = anchor_fit(data, config)
    np.testing.assert_allclose(report.best_ious, 1.0, atol=1e-6)
    assert report.num_boxes == 12 and report.num_images == 2
    assert report.matched == 1.0 and report.bipartite_only == 0.0
    assert report.unreachable_count == 0 and report.unreachable == []


def test_best_ious_are_the_target_encoders_overlaps(tiny_config):
    # The report measures what the encoder computes: the same float32 IoU.
    config = tiny_config(2)
    data = random_records(20, 0.05, 0.9, size=(50, 70), seed=4)
    report = anchor_fit(data, config, suggest=False)
    encoder = TargetEncoder.from_config(config)
    expected = []
    for rec in data.records:
        boxes = (rec["boxes"] / [50, 70, 50, 70]).astype(np.float32)
        expected.append(encoder.overlaps(boxes).max(axis=1))
    np.testing.assert_array_equal(report.best_ious, np.concatenate(expected))
    # ... and a plain float64 IoU over all priors, to float32 rounding.
    boxes = np.concatenate([r["boxes"] / [50, 70, 50, 70] for r in data.records])
    brute = iou(boxes, cxcywh_to_xyxy(generate_anchors(config).astype(np.float64)))
    np.testing.assert_allclose(report.best_ious, brute.max(axis=1), atol=1e-6)


def test_boxes_far_smaller_than_the_smallest_prior_are_unreachable(tiny_config):
    config = tiny_config(2)  # smallest prior: 8x8 px at 32 px
    # 2x2 px boxes centred on a prior: best IoU 4 / 64 with the 8x8 square.
    data = Records([(32, 32, [[3, 3, 5, 5], [11, 19, 13, 21]], [0, 1]),
                    (32, 32, [[0, 0, 8, 8]], [0])])
    report = anchor_fit(data, config, max_examples=5)
    assert report.unreachable_count == 2
    assert report.matched == pytest.approx(1 / 3)
    assert report.bipartite_only == pytest.approx(2 / 3) and report.no_prior == 0.0
    first, second = report.unreachable
    assert first["best_iou"] == pytest.approx(4 / 64, abs=1e-6)
    assert first["record"] == 0 and first["image_path"] == "/data/im0.jpg"
    assert first["box"] in ([3, 3, 5, 5], [11, 19, 13, 21])
    assert {first["class"], second["class"]} == {"cat", "dog"}
    assert first["size"] == pytest.approx(2.0) and first["best_map"] == "4x4"
    assert first["best_prior"] == pytest.approx([8.0, 8.0])


def test_max_examples_keeps_the_worst_boxes_first(tiny_config):
    config = tiny_config(2)
    data = Records([(32, 32, [[3, 3, 5, 5], [2, 2, 6, 6], [1, 1, 7, 6]], [0, 0, 1])])
    report = anchor_fit(data, config, max_examples=2, suggest=False)
    assert report.unreachable_count == 3
    ious = [ex["best_iou"] for ex in report.unreachable]
    assert len(ious) == 2 and ious == sorted(ious)
    assert ious[0] == pytest.approx(4 / 64, abs=1e-6)
    assert ious[1] == pytest.approx(16 / 64, abs=1e-6)


def hand_made():
    """cat: an 8 px and a 16 px box equal to priors (IoU 1); dog: a 2 px
    box (IoU 1/16) and a 4 px one (IoU 1/4), all on 32x32 images."""
    return Records([
        (32, 32, [[0, 0, 8, 8], [3, 3, 5, 5]], [0, 1]),
        (32, 32, [[0, 0, 16, 16], [2, 2, 6, 6]], [0, 1]),
    ])


def test_per_class_and_per_size_bucket_numbers(tiny_config):
    report = anchor_fit(hand_made(), tiny_config(2), suggest=False)
    assert report.num_boxes == 4 and report.matched == 0.5
    cat, dog = report.per_class["cat"], report.per_class["dog"]
    assert cat["boxes"] == 2 and cat["matched"] == 1.0
    assert cat["min"] == pytest.approx(1.0, abs=1e-6)
    assert dog["boxes"] == 2 and dog["matched"] == 0.0
    assert dog["min"] == pytest.approx(1 / 16, abs=1e-6)
    assert dog["mean"] == pytest.approx((1 / 16 + 1 / 4) / 2, abs=1e-6)
    assert dog["p50"] == pytest.approx((1 / 16 + 1 / 4) / 2, abs=1e-6)
    # Octaves of sqrt(w * h) below the 32 px input: < 8, 8-16, >= 16.
    assert report.size_edges == [8.0, 16.0]
    assert list(report.per_size) == ["< 8 px", "8-16 px", ">= 16 px"]
    small, mid, large = report.per_size.values()
    assert (small["boxes"], small["matched"]) == (2, 0.0)
    assert small["p50"] == pytest.approx((1 / 16 + 1 / 4) / 2, abs=1e-6)
    assert (mid["boxes"], mid["matched"]) == (1, 1.0)
    assert (large["boxes"], large["matched"]) == (1, 1.0)
    assert report.best_map_share == {"4x4": 0.75, "2x2": 0.25}
    assert report.overall["boxes"] == 4 and report.overall["matched"] == 0.5


def test_size_buckets_coco_and_custom(tiny_config):
    coco = anchor_fit(hand_made(), tiny_config(2), size_buckets="coco", suggest=False)
    assert list(coco.per_size) == ["small"] and coco.per_size["small"]["boxes"] == 4
    custom = anchor_fit(hand_made(), tiny_config(2), size_buckets=[3, 10], suggest=False)
    assert {k: v["boxes"] for k, v in custom.per_size.items()} == {
        "< 3 px": 1, "3-10 px": 2, ">= 10 px": 1}
    for bad in ("big", [10, 3], []):
        with pytest.raises(ValueError, match="size_buckets"):
            anchor_fit(hand_made(), tiny_config(2), size_buckets=bad, suggest=False)


def test_box_sizes_are_measured_in_the_models_input(tiny_config):
    # A 20x10 px box of a 200x100 image is 3.2x3.2 px of the 32 px input.
    data = Records([(200, 100, [[0, 0, 20, 10]], [0])])
    report = anchor_fit(data, tiny_config(2), suggest=False)
    assert list(report.per_size) == ["< 8 px"]
    assert report.unreachable[0]["size"] == pytest.approx(3.2, rel=1e-5)


@pytest.mark.parametrize("lo, hi, seed", [(0.05, 0.9, 0), (0.3, 0.6, 1), (0.02, 0.1, 2)])
def test_the_suggestion_never_lowers_coverage(tiny_config, lo, hi, seed):
    config = tiny_config(2)
    data = random_records(30, lo, hi, size=(48, 40), seed=seed)
    report = anchor_fit(data, config)
    s = report.suggestion
    assert s["matched"] >= report.matched
    assert s["changed"] == (s["matched"] > report.matched)
    # The reported coverage is what the suggested sizes really give.
    again = anchor_fit(data, config.replace(min_sizes=s["min_sizes"],
                                            max_sizes=s["max_sizes"]), suggest=False)
    assert again.matched == pytest.approx(s["matched"])
    np.testing.assert_array_equal(again.best_ious, report.suggested_best_ious)
    # Sizes keep increasing from map to map, and max >= min per map.
    assert s["min_sizes"] == sorted(s["min_sizes"])
    assert all(b >= a for a, b in zip(s["min_sizes"], s["max_sizes"]))


def test_the_suggestion_on_the_toy_dataset_keeps_its_promise(tiny_config, toy_dataset):
    report = anchor_fit(toy_dataset(), tiny_config(2))
    assert report.num_boxes == sum(len(r["boxes"]) for r in toy_dataset().records)
    assert report.suggestion["matched"] >= report.matched


def test_the_suggestion_raises_coverage_on_only_small_boxes():
    # Objects 8-12 px in the tiny preset's 160 px input, whose smallest
    # prior is 16 px: few reach IoU 0.5 until the priors shrink (how far
    # coverage can go is bounded by the 8 px step of the first map, which
    # the suggestion keeps).
    config = SSDConfig.from_preset("tiny", num_classes=2)
    data = random_records(40, 8 / 160, 12 / 160, size=(320, 320), seed=3)
    report = anchor_fit(data, config)
    s = report.suggestion
    assert report.matched < 0.1
    assert s["changed"] and s["matched"] > 0.5
    assert s["scale"] < 1 and s["min_sizes"][0] < config.min_sizes[0]
    assert s["map_scales"][0] < 1
    # The steps, maps and aspect ratios are the configuration's: only sizes move.
    assert len(s["min_sizes"]) == len(config.min_sizes)
    assert "->" in report.format()


def test_nothing_to_suggest_when_every_box_is_matched(tiny_config):
    config = tiny_config(2)
    priors = cxcywh_to_xyxy(generate_anchors(config))
    report = anchor_fit(Records([(32, 32, priors[:10] * 32, [0] * 10)]), config)
    s = report.suggestion
    assert not s["changed"] and s["matched"] == 1.0
    assert s["min_sizes"] == config.min_sizes and s["max_sizes"] == config.max_sizes
    assert s["map_scales"] == [1.0, 1.0]
    assert "keep the configuration's" in report.format()


def test_chunked_computation_equals_unchunked(tiny_config):
    config = tiny_config(2)
    data = random_records(25, 0.03, 0.8, size=(64, 48), seed=7)
    whole = anchor_fit(data, config, chunk_size=10_000)
    for chunk in (1, 7, 64):
        part = anchor_fit(data, config, chunk_size=chunk)
        np.testing.assert_array_equal(part.best_ious, whole.best_ious)
        np.testing.assert_array_equal(part.suggested_best_ious, whole.suggested_best_ious)
        assert part.to_dict() == whole.to_dict()


def test_to_dict_is_plain_json_and_format_shows_every_group(tiny_config):
    report = anchor_fit(hand_made(), tiny_config(2))
    d = json.loads(json.dumps(report.to_dict()))
    assert d["num_boxes"] == 4 and d["matched"] == 0.5
    assert "best_ious" not in d and sum(d["histogram"]["counts"]) == 4
    assert len(d["histogram"]["edges"]) == len(d["histogram"]["counts"]) + 1
    assert set(d["per_class"]) == {"cat", "dog"}
    assert d["unreachable"][0]["image_path"] == "/data/im0.jpg"
    text = report.format()
    for fragment in ("4 boxes in 2 images", "matched by IoU >= 0.5", "class cat",
                     "class dog", "size < 8 px", "size >= 16 px", "Boxes no prior reaches",
                     "/data/im0.jpg", "Suggested sizes"):
        assert fragment in text, fragment


def test_config_may_be_a_preset_name_a_dict_or_a_model_like_object(tiny_config):
    config = tiny_config(2)
    data = hand_made()
    by_object = anchor_fit(data, config, suggest=False)
    by_dict = anchor_fit(data, config.to_dict(), suggest=False)

    class Model:
        pass

    model = Model()
    model.config = config
    by_model = anchor_fit(data, model, suggest=False)
    for other in (by_dict, by_model):
        np.testing.assert_array_equal(other.best_ious, by_object.best_ious)
    tiny = anchor_fit(data, "tiny", suggest=False)
    assert tiny.num_priors == 2390 and tiny.input_size == (160, 160)


def test_threshold_is_the_one_given(tiny_config):
    data = hand_made()
    loose = anchor_fit(data, tiny_config(2), iou_threshold=0.2, suggest=False)
    assert loose.matched == 0.75 and loose.iou_threshold == 0.2


def test_difficult_boxes_are_measured_unless_excluded(tiny_config):
    data = hand_made()
    data.records[0]["difficult"] = np.array([False, True])
    assert anchor_fit(data, tiny_config(2), suggest=False).num_boxes == 4
    assert anchor_fit(data, tiny_config(2), suggest=False,
                      include_difficult=False).num_boxes == 3


def test_degenerate_boxes_are_left_out_and_counted(tiny_config):
    data = Records([(32, 32, [[0, 0, 8, 8], [4, 4, 4, 9], [5, 5, 2, 9]], [0, 0, 1])])
    report = anchor_fit(data, tiny_config(2), suggest=False)
    assert report.num_boxes == 1 and report.num_skipped_boxes == 2
    assert "2 boxes with zero width or height left out" in report.format()


def test_bad_input_raises_clear_errors(tiny_config):
    config = tiny_config(2)
    with pytest.raises(ValueError, match="no boxes"):
        anchor_fit(Records([(32, 32, np.zeros((0, 4)), [])]), config)
    with pytest.raises(ValueError, match="iou_threshold"):
        anchor_fit(hand_made(), config, iou_threshold=0.0)
    with pytest.raises(ValueError, match="scales"):
        anchor_fit(hand_made(), config, scales=[1.0, -2.0])
    data = hand_made()
    data.records[1]["width"] = None
    with pytest.raises(ValueError, match=r"record 1 \(/data/im1.jpg\) has no image width"):
        anchor_fit(data, config)
    data = hand_made()
    data.records[0]["labels"] = np.array([0])
    with pytest.raises(ValueError, match="record 0 .* 2 boxes but 1 labels"):
        anchor_fit(data, config)


def test_a_dataset_without_records_is_read_by_index(tiny_config):
    inner = hand_made()

    class Indexed:
        class_names = ("cat", "dog")

        def __len__(self):
            return len(inner.records)

        def __getitem__(self, i):
            return inner.records[i]

    a = anchor_fit(Indexed(), tiny_config(2), suggest=False)
    b = anchor_fit(inner, tiny_config(2), suggest=False)
    np.testing.assert_array_equal(a.best_ious, b.best_ious)


def test_plot_writes_a_png(tiny_config, tmp_path):
    pytest.importorskip("matplotlib")
    data = random_records(10, 0.02, 0.5, size=(64, 64), seed=1)
    report = anchor_fit(data, tiny_config(2))
    path = tmp_path / "fit.png"
    assert plot_anchor_fit(report, str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_so_and_writes_nothing(tiny_config, tmp_path,
                                                            monkeypatch, caplog):
    report = anchor_fit(hand_made(), tiny_config(2), suggest=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "fit.png"
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        assert plot_anchor_fit(report, str(path)) is None
    assert not path.exists()
    assert "matplotlib is not installed" in caplog.text


def test_the_report_is_exported_from_the_data_package():
    import keras_ssd.data

    assert keras_ssd.data.anchor_fit is anchor_fit
    assert keras_ssd.data.AnchorFitReport is AnchorFitReport
