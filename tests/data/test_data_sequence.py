"""SSDSequence: batch contents, determinism with and without workers,
evaluation path, difficult handling, errors from workers."""

import multiprocessing
import multiprocessing.dummy
import os

import numpy as np
import pytest
from PIL import Image

from keras_ssd.anchors import generate_anchors
from keras_ssd.boxes import decode
from keras_ssd.data import SSDSequence, VOCDataset, eval_batches, make_synthetic_voc
from keras_ssd.data.synthetic import SYNTHETIC_CLASSES

SIZE = 48


@pytest.fixture(scope="module")
def tiny_config(tiny_config):
    """The shared small config on this file's 48-pixel images (maps 6 and 3)."""
    geometry = dict(image_size=SIZE, feature_map_sizes=[6, 3], min_sizes=[10, 24],
                    max_sizes=[24, 40], aspect_ratios=[[2], [2]])
    return lambda num_classes=4: tiny_config(num_classes, **geometry)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return make_synthetic_voc(root, num_trainval=10, num_test=3, image_size=(64, 48), seed=0)


@pytest.fixture(scope="module")
def dataset(voc_root):
    return VOCDataset(voc_root, "trainval", class_names=SYNTHETIC_CLASSES)


def _batches(seq):
    return [seq[i] for i in range(len(seq))]


def test_batches_have_documented_shapes_and_dtypes(dataset, tiny_config):
    cfg = tiny_config()
    seq = SSDSequence(dataset, cfg, batch_size=4, augment=True, seed=0)
    assert len(seq) == 3 and seq.num_batches == 3
    x, y = seq[0]
    assert x.shape == (4, SIZE, SIZE, 3) and x.dtype == np.float32
    assert y.shape == (4, cfg.num_anchors, 5) and y.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 255 and x.max() > 1
    assert set(np.unique(y[..., 4])) <= set(range(0, 5))


def test_unaugmented_targets_decode_to_the_resized_boxes(dataset, tiny_config):
    cfg = tiny_config()
    seq = SSDSequence(dataset, cfg, batch_size=2, augment=False)
    _, y = seq[0]
    anchors = generate_anchors(cfg)
    rec = dataset[0]
    gt = rec["boxes"] / np.array([rec["width"], rec["height"]] * 2)
    pos = y[0, :, 4] > 0
    decoded = decode(y[0, pos, :4], anchors[pos])
    # every positive prior decodes to one of the ground-truth boxes, with its label
    d = np.abs(decoded[:, None, :] - gt[None]).max(-1)
    assert np.all(d.min(1) < 1e-4)
    assert np.array_equal(y[0, pos, 4] - 1, rec["labels"][d.argmin(1)])
    assert set(d.argmin(1)) == set(range(len(gt)))  # every object has a prior


def test_same_seed_same_batches_and_epochs_reshuffle(dataset, tiny_config):
    cfg = tiny_config()
    a = SSDSequence(dataset, cfg, batch_size=4, augment=True, seed=7)
    b = SSDSequence(dataset, cfg, batch_size=4, augment=True, seed=7)
    for (xa, ya), (xb, yb) in zip(_batches(a), _batches(b)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # batch order is a pure function of the index: reading backwards changes nothing
    np.testing.assert_array_equal(a[2][0], b[2][0])
    first = a.batch_indices(0)[0]
    a.on_epoch_end()
    assert a.epoch == 1
    assert not np.array_equal(a.batch_indices(0)[0], first)
    assert not np.array_equal(a[0][0], b[0][0])
    b.set_epoch(1)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    c = SSDSequence(dataset, cfg, batch_size=4, augment=True, seed=8)
    assert not np.array_equal(c[0][0], b[0][0])


def test_every_record_each_epoch_and_a_full_last_batch(dataset, tiny_config):
    seq = SSDSequence(dataset, tiny_config(), batch_size=4, augment=True, seed=1)
    idx = np.concatenate([seq.batch_indices(i)[0] for i in range(len(seq))])
    assert len(idx) == 12 and set(idx) == set(range(10))
    assert seq[len(seq) - 1][0].shape[0] == 4
    with pytest.raises(IndexError):
        seq[3]


def _get(args):
    seq, i = args
    return seq[i]


def test_batches_identical_with_thread_and_process_workers(dataset, tiny_config):
    seq = SSDSequence(dataset, tiny_config(), batch_size=4, augment=True, seed=3)
    seq.set_epoch(2)
    serial = _batches(seq)
    with multiprocessing.dummy.Pool(2) as pool:
        threaded = pool.map(_get, [(seq, i) for i in range(len(seq))])
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        processes = pool.map(_get, [(seq, i) for i in range(len(seq))])
    for (x, y), (xt, yt), (xp, yp) in zip(serial, threaded, processes):
        np.testing.assert_array_equal(x, xt)
        np.testing.assert_array_equal(x, xp)
        np.testing.assert_array_equal(y, yp)


def test_eval_batches_cover_every_record_once_with_original_sizes(voc_root, tiny_config):
    test = VOCDataset(voc_root, "test", class_names=SYNTHETIC_CLASSES)
    got = list(eval_batches(test, SIZE, batch_size=2))
    assert [len(info["indices"]) for _, info in got] == [2, 1]
    images, info = got[0]
    assert images.shape == (2, SIZE, SIZE, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(info["sizes"], [[48, 64], [48, 64]])
    assert info["image_ids"] == [test[0]["image_id"], test[1]["image_id"]]
    # same pixels as the non-augmented training sequence
    seq = SSDSequence(test, tiny_config(), batch_size=2, augment=False)
    np.testing.assert_array_equal(seq[0][0], images)
    assert len(list(seq.eval_batches())) == 2


def test_difficult_boxes_are_positives_unless_ignored(tmp_path, tiny_config):
    from keras_ssd.data import write_voc_xml

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(tmp_path / sub, exist_ok=True)
    Image.new("RGB", (48, 48), (100, 100, 100)).save(tmp_path / "JPEGImages" / "a.jpg")
    write_voc_xml(tmp_path / "Annotations" / "a.xml", "a.jpg", 48, 48,
                  [("circle", (3, 3, 20, 20), True), ("square", (25, 25, 45, 45), False)])
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("a\n")
    ds = VOCDataset(str(tmp_path), "trainval", class_names=SYNTHETIC_CLASSES)
    y = SSDSequence(ds, tiny_config(), batch_size=1)[0][1][0]
    assert (y[:, 4] == 1).any() and (y[:, 4] == 2).any() and not (y[:, 4] == -1).any()
    y = SSDSequence(ds, tiny_config(), batch_size=1, ignore_difficult=True)[0][1][0]
    assert (y[:, 4] == -1).any() and not (y[:, 4] == 1).any() and (y[:, 4] == 2).any()


def test_class_count_mismatch_and_bad_arguments_are_refused(dataset, tiny_config):
    with pytest.raises(ValueError, match="4 classes but the config has num_classes=20"):
        SSDSequence(dataset, tiny_config(20))
    with pytest.raises(ValueError, match="batch_size"):
        SSDSequence(dataset, tiny_config(), batch_size=0)
    with pytest.raises(ValueError, match="on_error"):
        SSDSequence(dataset, tiny_config(), on_error="ignore")
    with pytest.raises(ValueError, match="output_size"):
        from keras_ssd.data import SSDAugmentation
        SSDSequence(dataset, tiny_config(), augmentation=SSDAugmentation(300))


def test_augmentation_options_dict_is_used(dataset, tiny_config):
    seq = SSDSequence(dataset, tiny_config(), batch_size=2, augment=True, seed=0,
                      augmentation={"flip_prob": 0.0, "expand_prob": 0.0})
    assert seq.augmentation.flip_prob == 0.0 and seq.augmentation.output_size == (SIZE, SIZE)


def _fit_losses(dataset, cfg, **workers):
    import keras

    seq = SSDSequence(dataset, cfg, batch_size=4, augment=True, seed=0, **workers)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Dense(cfg.num_anchors * 5)(x)
    model = keras.Model(inputs, keras.layers.Reshape((cfg.num_anchors, 5))(x))
    model.compile(optimizer=keras.optimizers.SGD(1e-6), loss="mse")
    history = model.fit(seq, epochs=2, verbose=0, shuffle=False)
    # fit calls on_epoch_end once before training and after each epoch
    assert seq.epoch >= 2
    return history.history["loss"]


def test_model_fit_gives_the_same_losses_with_and_without_worker_processes(dataset,
                                                                          tiny_config):
    serial = _fit_losses(dataset, tiny_config())
    threads = _fit_losses(dataset, tiny_config(), workers=2)
    processes = _fit_losses(dataset, tiny_config(), workers=2, use_multiprocessing=True)
    assert len(serial) == 2 and np.isfinite(serial).all()
    np.testing.assert_allclose(threads, serial, rtol=1e-5)
    np.testing.assert_allclose(processes, serial, rtol=1e-5)


def test_reduced_scale_jpeg_decode_keeps_geometry(tmp_path):
    from keras_ssd.data import SSDAugmentation, write_voc_xml

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(tmp_path / sub, exist_ok=True)
    a = np.zeros((200, 256, 3), np.uint8)
    a[40:120, 100:180] = 255
    Image.fromarray(a).save(tmp_path / "JPEGImages" / "a.jpg", quality=95)
    write_voc_xml(tmp_path / "Annotations" / "a.xml", "a.jpg", 256, 200,
                  [("square", (101, 41, 180, 120))])
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("a\n")
    ds = VOCDataset(str(tmp_path), "trainval", class_names=SYNTHETIC_CLASSES)
    aug = SSDAugmentation(40, photometric=False, expand_prob=1.0, min_ious=(), any_patch=False)
    reduced = 0
    for seed in range(8):
        plan = aug.sample(256, 200, ds[0]["boxes"], np.random.default_rng(seed))
        img, k = ds.load_pil_image(0, reduce_factor=plan.reduce_factor)
        reduced += k > 1
        out = aug.apply(img, plan, k)[..., 0] > 200
        ys, xs = np.nonzero(out)
        x0, y0, x1, y1 = plan.boxes[0]
        assert abs(xs.min() - x0) <= 1.5 and abs(xs.max() + 1 - x1) <= 1.5
        assert abs(ys.min() - y0) <= 1.5 and abs(ys.max() + 1 - y1) <= 1.5
    assert reduced > 0


def test_cached_images_give_the_same_batches_and_decode_each_file_once(dataset, tiny_config,
                                                                      monkeypatch):
    import keras_ssd.data.sequence as sequence_module

    config = tiny_config()
    plain = SSDSequence(dataset, config, batch_size=4, augment=True, seed=7)
    cached = SSDSequence(dataset, config, batch_size=4, augment=True, seed=7,
                         cache_images=True)
    calls = []
    real = sequence_module._load_source

    def counting(ds, index, reduce_factor):
        calls.append(index)
        return real(ds, index, reduce_factor)

    monkeypatch.setattr(sequence_module, "_load_source", counting)
    for epoch in range(2):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(len(plain)):
            a, b = plain[i], cached[i]
            # the same augmentation plans; pixels differ only by the
            # reduced-scale JPEG decode the cache skips
            np.testing.assert_array_equal(a[1], b[1])
            assert np.abs(a[0] - b[0]).mean() < 6.0
    n_plain = 2 * len(plain) * 4
    assert len(calls) == n_plain + len(dataset)  # the cached side: once per file


def test_cache_images_auto_follows_the_memory_budget(dataset, tiny_config, monkeypatch):
    import keras_ssd.data.sequence as sequence_module

    config = tiny_config()
    assert SSDSequence(dataset, config, batch_size=4, cache_images="auto").cache_images
    monkeypatch.setattr(sequence_module, "CACHE_BUDGET_BYTES", 1000)
    assert not SSDSequence(dataset, config, batch_size=4, cache_images="auto").cache_images
    with pytest.raises(ValueError, match="cache_images"):
        SSDSequence(dataset, config, batch_size=4, cache_images="yes")
