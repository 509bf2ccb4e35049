"""The real-photo benchmark dataset and the hand-written baseline's matching,
on synthetic `photos=` arrays (no scikit-image, no network)."""

import os
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` lives at the repository root
    sys.path.insert(0, str(ROOT))

from benchmarks import baseline_tiny, photo_dataset  # noqa: E402
from keras_ssd.data import VOCDataset  # noqa: E402


def _fake_photos(seed=0):
    """Structured random stand-ins for every photo the generator reads, at a
    quarter of their real size (the crop boxes scale with them)."""
    rng = np.random.default_rng(seed)
    photos = {}
    for name in photo_dataset.PHOTO_NAMES:
        w, h = photo_dataset.REFERENCE_SIZES[name]
        w, h = max(16, w // 4), max(16, h // 4)
        base = rng.integers(0, 256, 3)
        yy, xx = np.mgrid[0:h, 0:w]
        img = base + 60 * np.sin(xx[..., None] / rng.uniform(2, 9) + np.arange(3)) \
            + rng.normal(0, 20, (h, w, 3))
        photos[name] = np.clip(img, 0, 255).astype(np.uint8)
    # a dark silhouette on white, as horse.png
    horse = np.full_like(photos["horse"], 255)
    hh, hw = horse.shape[:2]
    horse[hh // 4:3 * hh // 4, hw // 5:4 * hw // 5] = 0
    photos["horse"] = horse
    return photos


@pytest.fixture(scope="module")
def photo_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo_voc")
    photo_dataset.make_photo_voc(root, num_trainval=24, num_test=8, seed=3,
                                 photos=_fake_photos())
    return root


def test_photo_voc_round_trips_through_voc_dataset(photo_voc):
    names = (photo_voc / "labels.txt").read_text().split()
    assert tuple(names) == photo_dataset.CLASSES and len(names) == 10
    train = VOCDataset(photo_voc, "trainval", class_names=names)
    test = VOCDataset(photo_voc, "test", class_names=names)
    assert len(train) == 24 and len(test) == 8
    assert train.num_clipped_boxes == 0 and test.num_clipped_boxes == 0
    for ds in (train, test):
        for i, rec in enumerate(ds):
            w, h = rec["width"], rec["height"]
            assert 224 <= w <= 320 and 176 <= h <= 288
            assert ds.load_image(i).shape == (h, w, 3)
            b = np.asarray(rec["boxes"], np.float64)
            assert 1 <= len(b) <= 5
            assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
            assert np.all(b[:, 2:] > b[:, :2])
            scale = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
            # visible extents: the mask's alpha >= 0.5 part of a >= 18 px paste,
            # at most 0.7 of the shorter side
            assert np.all(scale >= 10) and np.all(scale <= 0.7 * min(w, h) + 2)
            if len(b) > 1:
                iou = baseline_tiny.iou_matrix(b, b)
                assert np.all(iou[np.triu_indices(len(b), 1)] < 0.3)
    labels = np.concatenate([r["labels"] for r in train] + [r["labels"] for r in test])
    assert len(np.unique(labels)) >= 6  # ~90 objects over 10 classes


def test_photo_voc_is_deterministic_given_the_seed(tmp_path):
    photos = _fake_photos()

    def make(name, seed):
        root = photo_dataset.make_photo_voc(tmp_path / name, 5, 0, seed=seed, photos=photos)
        ds = VOCDataset(root, "trainval", class_names=photo_dataset.CLASSES)
        boxes = [np.asarray(r["boxes"]) for r in ds]
        return boxes, [ds.load_image(i) for i in range(len(ds))]

    a_boxes, a_images = make("a", 7)
    b_boxes, b_images = make("b", 7)
    c_boxes, c_images = make("c", 8)
    assert all(np.array_equal(x, y) for x, y in zip(a_boxes, b_boxes))
    assert all(np.array_equal(x, y) for x, y in zip(a_images, b_images))
    assert not all(x.shape == y.shape and np.array_equal(x, y)
                   for x, y in zip(a_images, c_images))


def test_photo_voc_names_missing_photos_and_bad_arrays(tmp_path):
    photos = _fake_photos()
    del photos["rocket"]
    with pytest.raises(ValueError, match="rocket"):
        photo_dataset.make_photo_voc(tmp_path / "x", 1, 0, photos=photos)
    photos = _fake_photos()
    photos["moon"] = photos["moon"].astype(np.float32)
    with pytest.raises(ValueError, match="moon.*uint8"):
        photo_dataset.make_photo_voc(tmp_path / "y", 1, 0, photos=photos)


def test_missing_scikit_image_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(photo_dataset.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install scikit-image"):
        photo_dataset.skimage_data_dir()


def test_dataset_cache_matches_only_the_same_parameters(tmp_path):
    root = photo_dataset.make_photo_voc(tmp_path / "d", 2, 1, seed=0, photos=_fake_photos())
    # made from custom photos: never taken for the scikit-image dataset
    assert not photo_dataset.is_cached(root, 2, 1, 0)
    with open(os.path.join(root, "photo_voc.json"), "w") as f:
        import json

        json.dump(photo_dataset.dataset_params(2, 1, 0), f)
    assert photo_dataset.is_cached(root, 2, 1, 0)
    assert not photo_dataset.is_cached(root, 3, 1, 0)


def test_baseline_box_equal_to_a_prior_matches_it_with_zero_offsets():
    priors = baseline_tiny.make_priors()
    assert priors.shape == (3458, 4)
    k = 1000
    cx, cy, w, h = priors[k].astype(np.float64)
    box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    target = baseline_tiny.encode(box, [4], priors)
    assert target[k, 4] == 5  # label + 1
    np.testing.assert_allclose(target[k, :4], 0.0, atol=1e-4)
    # priors overlapping less than 0.5 stay background
    prior_boxes = baseline_tiny._xyxy(priors.astype(np.float64))
    ious = baseline_tiny.iou_matrix(prior_boxes, box)[:, 0]
    assert np.all(target[ious < 0.5, 4] == 0)
    assert np.all(target[ious >= 0.5, 4] == 5)
    decoded = baseline_tiny.decode(target[k, :4][None], priors[k:k + 1])
    np.testing.assert_allclose(decoded[0], np.clip(box[0], 0, 1), atol=1e-5)


def test_baseline_small_box_still_gets_its_best_prior():
    priors = baseline_tiny.make_priors()
    box = np.array([[0.50, 0.50, 0.52, 0.53]])  # far below IoU 0.5 with any prior
    target = baseline_tiny.encode(box, [0], priors)
    assert (target[:, 4] > 0).sum() == 1
    assert not baseline_tiny.encode(np.zeros((0, 4)), [], priors).any()


def test_baseline_flip_of_the_targets_equals_encoding_the_flipped_boxes():
    priors = baseline_tiny.make_priors()
    mirror = baseline_tiny.mirror_index()
    assert sorted(mirror) == list(range(len(priors)))
    np.testing.assert_allclose(priors[mirror, 0], 1.0 - priors[:, 0], atol=1e-6)
    boxes = np.array([[0.10, 0.20, 0.45, 0.70], [0.55, 0.05, 0.80, 0.30]])
    flipped = boxes.copy()
    flipped[:, [0, 2]] = 1.0 - boxes[:, [2, 0]]
    direct = baseline_tiny.encode(flipped, [1, 2], priors)
    via = baseline_tiny.flip_targets(baseline_tiny.encode(boxes, [1, 2], priors), mirror)
    np.testing.assert_array_equal(direct[:, 4], via[:, 4])
    np.testing.assert_allclose(direct[:, :4], via[:, :4], atol=1e-4)


def test_baseline_loss_mines_three_negatives_per_positive():
    from keras import ops

    num_priors, num_classes = 50, 3
    rng = np.random.default_rng(0)
    y_true = np.zeros((2, num_priors, 5), np.float32)
    y_true[0, [3, 7], 4] = [1, 2]  # two positives in image 0, none in image 1
    y_true[0, [3, 7], :4] = 0.5
    y_pred = rng.normal(0, 1, (2, num_priors, 4 + 1 + num_classes)).astype(np.float32)
    y_pred[0, [3, 7], :4] = 0.5  # perfect boxes: no localisation loss
    loss = float(ops.convert_to_numpy(baseline_tiny.multibox_loss(y_true, y_pred)))
    logits = y_pred[0, :, 4:]
    ce = np.log(np.exp(logits).sum(-1)) - logits[np.arange(num_priors),
                                                 y_true[0, :, 4].astype(int)]
    neg = np.delete(ce, [3, 7])
    expected = (ce[3] + ce[7] + np.sort(neg)[::-1][:6].sum()) / 2
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_learning_driver_reads_train_and_evaluate_output(tmp_path):
    from benchmarks import learning

    stdout = ("training tiny (1,234,567 parameters, 160px, 2390 priors) on 60 images\n"
              "finished 44 epochs in 0.7 min; final loss 7.3693\n")
    state = {"history": {"loss": [9.0, 8.0], "epoch_seconds": [4.5, 2.5]}}
    info = learning.parse_train_output(stdout, state)
    assert info["params"] == 1234567
    assert info["epochs"] == 2 and info["train_seconds"] == pytest.approx(7.0)
    info = learning.parse_train_output(stdout)
    assert info["epochs"] == 44 and info["train_seconds"] == pytest.approx(42.0)
    table = "class  AP\n-----  ------\ncat     12.50\n-----  ------\nmAP     31.25\n"
    assert learning.parse_map(table) == pytest.approx(0.3125)
    with pytest.raises(RuntimeError, match="no mAP"):
        learning.parse_map("nothing here")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16 "
                       "amx_tile\n")
    cpu = learning.cpu_features(str(cpuinfo))
    assert cpu["model"] == "Some CPU"
    assert cpu["avx512"] == ["avx512_bf16", "avx512f"] and cpu["amx"] == ["amx_tile"]
    assert "AVX-512: avx512_bf16 avx512f" in learning.describe_cpu(cpu)
