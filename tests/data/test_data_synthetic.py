"""make_synthetic_voc: VOC layout, read back through VOCDataset, tight boxes,
determinism."""

import os

import numpy as np
import pytest

from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset, make_synthetic_voc
from keras_ssd.data.synthetic import ALL_SYNTHETIC_CLASSES, SHAPE_COLOURS


def test_writes_a_voc_layout_read_back_by_vocdataset(tmp_path):
    root = make_synthetic_voc(tmp_path / "syn", num_trainval=6, num_test=3, image_size=(80, 64),
                              seed=0)
    for sub in ("Annotations", "JPEGImages"):
        assert len(os.listdir(os.path.join(root, sub))) == 9
    assert open(os.path.join(root, "labels.txt")).read().split() == list(SYNTHETIC_CLASSES)
    train = VOCDataset(root, "trainval", class_names=SYNTHETIC_CLASSES, check_images="decode")
    test = VOCDataset(root, "test", class_names=SYNTHETIC_CLASSES)
    assert len(train) == 6 and len(test) == 3
    assert len(VOCDataset(root, "train", class_names=SYNTHETIC_CLASSES)) == 3
    assert not set(r["image_id"] for r in train) & set(r["image_id"] for r in test)
    for rec in train:
        assert (rec["width"], rec["height"]) == (80, 64)
        assert 1 <= len(rec["boxes"]) <= 4
        w = rec["boxes"][:, 2] - rec["boxes"][:, 0]
        assert np.all(w >= 0.2 * 64 - 2) and np.all(w <= 0.5 * 64 + 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_are_tight_around_the_shape_of_their_class_colour(tmp_path, seed):
    root = make_synthetic_voc(tmp_path, num_trainval=4, num_test=0, image_size=96, seed=seed,
                              class_names=ALL_SYNTHETIC_CLASSES, max_objects=1)
    ds = VOCDataset(root, "trainval", class_names=ALL_SYNTHETIC_CLASSES)
    for i in range(len(ds)):
        rec, img = ds[i], ds.load_image(i).astype(int)
        colour = np.asarray(SHAPE_COLOURS[ds.class_names[rec["labels"][0]]])
        close = np.abs(img - colour).max(-1) < 45
        ys, xs = np.nonzero(close)
        x0, y0, x1, y1 = rec["boxes"][0]
        assert abs(xs.min() - x0) <= 2 and abs(xs.max() + 1 - x1) <= 2
        assert abs(ys.min() - y0) <= 2 and abs(ys.max() + 1 - y1) <= 2


def test_same_seed_same_data_different_seed_different_data(tmp_path):
    a = make_synthetic_voc(tmp_path / "a", 3, 0, 64, seed=5)
    b = make_synthetic_voc(tmp_path / "b", 3, 0, 64, seed=5)
    c = make_synthetic_voc(tmp_path / "c", 3, 0, 64, seed=6)
    read = [VOCDataset(r, "trainval", class_names=SYNTHETIC_CLASSES) for r in (a, b, c)]
    np.testing.assert_array_equal(read[0].load_image(0), read[1].load_image(0))
    np.testing.assert_array_equal(read[0][1]["boxes"], read[1][1]["boxes"])
    assert not np.array_equal(read[0].load_image(0), read[2].load_image(0))


def test_all_classes_appear(tmp_path):
    root = make_synthetic_voc(tmp_path, 30, 0, 64, seed=0, class_names=ALL_SYNTHETIC_CLASSES)
    counts = VOCDataset(root, "trainval", class_names=ALL_SYNTHETIC_CLASSES).class_counts()
    assert np.all(counts > 0)


@pytest.mark.parametrize("bad", [dict(class_names=("hexagon",)), dict(image_size=16),
                                 dict(min_objects=3, max_objects=2), dict(num_test=-1)])
def test_bad_arguments_are_refused(tmp_path, bad):
    args = dict(num_trainval=1, num_test=1, image_size=64, seed=0)
    args.update(bad)
    with pytest.raises(ValueError):
        make_synthetic_voc(tmp_path, **args)
