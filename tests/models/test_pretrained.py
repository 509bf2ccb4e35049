"""Pretrained presets (keras_ssd.models.pretrained): download once with the
SHA-256 checked, convert once and reuse the cached .keras file, new class
heads with the background prior, class subsets, freezing. No test touches
the network: downloads come from file:// URLs or fake fetchers."""

import dataclasses
import hashlib
import math
import os
import urllib.error

import keras
import numpy as np
import pytest

from keras_ssd import presets
from keras_ssd.models import pretrained
from keras_ssd.models.pretrained import (
    ChecksumError,
    DownloadError,
    background_bias,
    checkpoint_path,
    converted_path,
    download,
    load_pretrained,
    with_class_subset,
    with_new_heads,
)

PAYLOAD = b"not really a checkpoint, but bytes with a known hash\n" * 100


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty keras-ssd cache folder for one test."""
    monkeypatch.setenv("KERAS_SSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_preset(tmp_path, payload=PAYLOAD, **changes):
    """`ssd300_voc` served from a local file:// URL, with the payload's hash."""
    source = tmp_path / "served.pth"
    source.write_bytes(payload)
    fields = dict(name="fake_voc", url=source.as_uri(), file_name="fake_voc.pth",
                  sha256=hashlib.sha256(payload).hexdigest(), sha256_prefix="")
    fields.update(changes)
    return dataclasses.replace(presets.get_pretrained("ssd300_voc"), **fields)


class Counter:
    """A converter that counts its calls and returns a seeded tiny SSD."""

    def __init__(self, make_tiny_model, num_classes=3, class_names=None):
        self.calls = []
        self.make = lambda: make_tiny_model(num_classes=num_classes, seed=5,
                                            class_names=class_names)

    def __call__(self, path, source):
        self.calls.append((path, source))
        return self.make()


def no_network(url, destination):
    raise AssertionError(f"the test tried to download {url}")


# ----------------------------------------------------------- the registry
def test_the_three_pretrained_presets_and_their_published_facts():
    assert presets.pretrained_names() == ["ssd300_coco", "ssd300_voc", "ssd300_voc_amdegroot",
                                         "ssd512_voc", "ssdlite320_coco",
                                         "ssdlite320_mobilenet_v2_voc", "ssd300_coco_mmdet",
                                         "ssd512_coco_mmdet",
                                         "ssd300_voc_mmdet", "ssd512_voc_mmdet"]
    coco = presets.get_pretrained("ssd300_coco")
    assert coco.url == "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth"
    assert coco.file_name == "ssd300_vgg16_coco-b556d3b4.pth"
    # torchvision's file name carries the first 8 hex digits of the SHA-256.
    assert coco.sha256_prefix == "b556d3b4" and coco.sha256 is None
    assert coco.file_name.split("-")[-1].split(".")[0] == coco.known_hash
    assert (coco.source, coco.accuracy, coco.classes) == ("torchvision", 25.1, "coco")
    voc = presets.get_pretrained("SSD300-VOC")
    assert voc.url == "https://github.com/lufficc/SSD/releases/download/1.2/vgg_ssd300_voc0712.pth"
    assert (voc.source, voc.accuracy, voc.known_hash) == ("lufficc", 77.7, "")
    amd = presets.get_pretrained("ssd300_voc_amdegroot")
    assert amd.url == "https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth"
    assert (amd.source, round(amd.accuracy, 1), amd.known_hash) == ("amdegroot", 77.4, "")
    for p in (coco, voc, amd):
        assert p.architecture == "ssd300" and p.recipe is presets.FINETUNE_SGD
        assert "hash" in p.hash_note and p.file_name == p.url.rsplit("/", 1)[1]


def test_pretrained_names_do_not_disturb_the_variant_lookups():
    assert presets.names() == ["ssd300", "ssd512", "mobilenet_v2", "ssdlite320",
                               "ssdlite320_mobilenet_v2", "tiny"]
    assert presets.find("ssd300_coco") is None and presets.get("SSD-300").name == "ssd300"
    with pytest.raises(ValueError, match="unknown pretrained preset 'ssd300'; choose one of "
                                         "ssd300_coco, ssd300_voc, ssd300_voc_amdegroot, "
                                         "ssd512_voc, ssdlite320_coco, "
                                         "ssdlite320_mobilenet_v2_voc, ssd300_coco_mmdet, "
                                         "ssd512_coco_mmdet, ssd300_voc_mmdet, "
                                         r"ssd512_voc_mmdet \('ssd300' is an architecture"):
        presets.get_pretrained("ssd300")


def test_each_source_postprocessing_is_its_presets_decode():
    convert = pytest.importorskip("keras_ssd.models.convert")
    assert tuple(convert.SOURCES) == presets.SOURCE_NAMES
    for preset in presets.PRETRAINED.values():
        source = convert.SOURCES[preset.source]
        assert source.name == preset.source
        assert source.postprocessing_for(source.num_classes) == dict(preset.decode)
    torchvision = presets.get_pretrained("ssd300_coco").decode
    assert (torchvision["top_k"], torchvision["max_candidates_per_class"],
            torchvision["clip_boxes"]) == (200, 400, True)
    assert torchvision["max_log_scale"] == pytest.approx(np.log(1000 / 16))
    amdegroot = convert.SOURCES["amdegroot"]
    assert amdegroot.postprocessing_for(3)["top_k"] == 600  # 200 per class, no image cap


def test_finetune_recipe_is_the_papers_sgd_shortened():
    r = presets.FINETUNE_SGD
    assert (r.optimizer, r.learning_rate, r.momentum, r.weight_decay, r.schedule) == \
        ("sgd", 1e-3, 0.9, 5e-4, "step")
    assert r.epochs == 30 and presets.RECIPES["finetune-sgd"] is r


# ------------------------------------------------------------------ download
def test_download_fetches_once_checks_the_hash_and_leaves_no_partial_file(tmp_path, cache):
    preset = fake_preset(tmp_path)
    path = download(preset, verbose=False)
    assert path == checkpoint_path(preset) == str(cache / "pretrained" / "fake_voc.pth")
    assert open(path, "rb").read() == PAYLOAD
    assert not os.path.exists(path + ".part")
    # There now: checked against the hash, never fetched again.
    assert download(preset, fetch=no_network, verbose=False) == path


def test_a_mismatching_hash_deletes_the_partial_file_and_names_both_hashes(tmp_path, cache):
    preset = fake_preset(tmp_path, sha256="0" * 64)
    actual = hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(ChecksumError) as err:
        download(preset, verbose=False)
    message = str(err.value)
    assert "fake_voc.pth" in message and preset.url in message
    assert actual in message and "0" * 64 in message and "deleted" in message
    folder = cache / "pretrained"
    assert not (folder / "fake_voc.pth").exists() and not (folder / "fake_voc.pth.part").exists()


def test_a_published_prefix_is_checked_as_torchvision_does(tmp_path, cache):
    actual = hashlib.sha256(PAYLOAD).hexdigest()
    good = fake_preset(tmp_path, sha256=None, sha256_prefix=actual[:8])
    path = download(good, verbose=False)
    assert open(path, "rb").read() == PAYLOAD
    assert not os.path.exists(path + ".sha256")  # a published prefix needs no record
    bad = fake_preset(tmp_path, name="bad", file_name="bad.pth", sha256=None,
                      sha256_prefix="b556d3b4")
    with pytest.raises(ChecksumError, match=f"SHA-256 {actual}, but the SHA-256 prefix "
                                            r"\(8 hex\) of preset 'bad' is b556d3b4"):
        download(bad, verbose=False)


def test_without_a_published_hash_the_first_file_is_recorded_and_later_ones_checked(
        tmp_path, cache):
    preset = fake_preset(tmp_path, sha256=None, sha256_prefix="")
    path = download(preset, verbose=False)
    record = open(path + ".sha256").read().split()
    assert record == [hashlib.sha256(PAYLOAD).hexdigest(), "fake_voc.pth"]
    with open(path, "ab") as f:  # the cached file changes afterwards
        f.write(b"tampered")
    with pytest.raises(ChecksumError, match="in the cache .*delete the file"):
        download(preset, fetch=no_network, verbose=False)


def test_offline_the_error_says_where_to_put_the_file_by_hand(cache):
    def offline(url, destination):
        open(destination, "wb").write(b"half")  # a partial file is left behind...
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    preset = presets.get_pretrained("ssd300_coco")
    with pytest.raises(DownloadError) as err:
        download("ssd300_coco", fetch=offline, verbose=False)
    message = str(err.value)
    path = str(cache / "pretrained" / "ssd300_vgg16_coco-b556d3b4.pth")
    assert path in message and preset.url in message and "by hand" in message
    assert "Temporary failure in name resolution" in message
    assert "convert_checkpoint" in message and isinstance(err.value, OSError)
    assert not os.path.exists(path + ".part")  # ...and removed


def test_a_file_put_by_hand_is_used_without_downloading(tmp_path, cache):
    preset = fake_preset(tmp_path)
    path = checkpoint_path(preset)
    os.makedirs(os.path.dirname(path))
    open(path, "wb").write(PAYLOAD)
    assert download(preset, fetch=no_network, verbose=False) == path


# ------------------------------------------------------------ convert, cache
def test_conversion_happens_once_and_the_cached_keras_file_is_reused(
        tmp_path, cache, make_tiny_model):
    preset = fake_preset(tmp_path)
    converter = Counter(make_tiny_model)
    first = load_pretrained(preset, converter=converter, verbose=False)
    assert converter.calls == [(checkpoint_path(preset), "lufficc")]
    target = converted_path(preset)
    assert os.path.isfile(target) and target.endswith(".keras")
    assert [n for n in os.listdir(os.path.dirname(target)) if ".part" in n] == []
    second = load_pretrained(preset, converter=converter, fetch=no_network, verbose=False)
    assert len(converter.calls) == 1  # no second conversion
    images = np.random.default_rng(0).uniform(0, 255, (1, 160, 160, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first(images)),
                                  keras.ops.convert_to_numpy(second(images)))  # raw heads


def test_a_damaged_cached_file_is_converted_again(tmp_path, cache, make_tiny_model):
    preset = fake_preset(tmp_path)
    converter = Counter(make_tiny_model)
    os.makedirs(os.path.dirname(converted_path(preset)))
    open(converted_path(preset), "wb").write(b"not a zip")
    with pytest.warns(UserWarning, match="converting again"):
        load_pretrained(preset, converter=converter, verbose=False)
    assert len(converter.calls) == 1


# -------------------------------------------------------- new class heads
def test_background_bias_gives_the_objects_one_percent_together():
    assert pretrained.BACKGROUND_PRIOR == 0.01
    assert background_bias(3) == pytest.approx(math.log(297.0))  # 5.694
    for k in (1, 3, 20, 90):
        logits = np.array([background_bias(k)] + [0.0] * k)
        p = np.exp(logits) / np.exp(logits).sum()
        assert p[1:].sum() == pytest.approx(0.01) and p[0] == pytest.approx(0.99)


def test_new_heads_keep_backbone_and_box_heads_and_start_at_the_prior(make_tiny_model):
    source = make_tiny_model(num_classes=4, seed=2)
    model = with_new_heads(source, class_names=["a", "b", "c"], seed=0)
    assert model.class_names == ["a", "b", "c"] and model.output_shape == (None, 2390, 8)
    background = background_bias(3)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name.endswith("_mbox_conf"):
            kernel, bias = layer.get_weights()
            assert kernel.std() == pytest.approx(0.01, rel=0.2)
            np.testing.assert_allclose(bias[0::4], background, rtol=1e-6)
            assert not np.any(np.delete(bias, np.arange(0, len(bias), 4)))
        else:  # backbone, extras and box heads: the source's weights
            for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(1).uniform(0, 255, (2, 160, 160, 3)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(images))[..., 4:]
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert 0.005 < p[..., 1:].sum(-1).mean() < 0.02  # foreground ~1% at the start


def test_new_heads_can_reinitialise_the_box_heads_and_check_the_class_count(make_tiny_model):
    source = make_tiny_model(num_classes=2)
    model = with_new_heads(source, num_classes=5, keep_box_heads=False)
    assert model.num_classes == 5 and model.class_names[0] == "class_0"
    bias = model.get_layer("tiny_conv4_mbox_loc").get_weights()[1]
    assert not np.any(bias)
    with pytest.raises(ValueError, match="num_classes=2 disagrees with the 3 class_names"):
        with_new_heads(source, num_classes=2, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="give num_classes or class_names"):
        with_new_heads(source)


# ----------------------------------------------------------- class subsets
def _decode(model, images, top_k=4000):
    model.prediction_decoder = model.prediction_decoder.replace(
        confidence_threshold=0.01, top_k=top_k, max_candidates_per_class=400)
    out = model.predict(images)
    return {k: np.asarray(v) for k, v in out.items()}


def _per_class(out, index, label):
    n = int(out["num_detections"][index])
    keep = out["labels"][index, :n] == label
    rows = sorted(zip(out["scores"][index, :n][keep].tolist(),
                      map(tuple, out["boxes"][index, :n][keep].tolist())), reverse=True)
    return rows


@pytest.mark.backend
def test_a_class_subset_gives_exactly_the_full_models_detections_of_those_classes(
        make_tiny_model):
    full = make_tiny_model(num_classes=4, seed=7, class_names=["cat", "dog", "car", "bus"])
    subset = with_class_subset(full, ["car", "cat"])
    assert subset.class_names == ["car", "cat"] and subset.num_classes == 2
    assert subset.config.class_subset == [2, 0] and subset.config.num_classes == 4
    images = np.random.default_rng(3).uniform(0, 255, (2, 160, 160, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(full(images)),  # the raw heads
                                  keras.ops.convert_to_numpy(subset(images)))
    whole, part = _decode(full, images), _decode(subset, images)
    assert set(np.unique(part["labels"])) <= {-1, 0, 1}
    for i in range(2):
        kept = _per_class(whole, i, 2) + _per_class(whole, i, 0)
        assert len(kept) > 10  # random weights: plenty of detections
        assert _per_class(part, i, 0) == _per_class(whole, i, 2)  # car, same scores
        assert _per_class(part, i, 1) == _per_class(whole, i, 0)  # cat
        assert int(part["num_detections"][i]) == len(kept)


def test_a_class_subset_survives_the_keras_round_trip_and_names_its_detections(
        tmp_path, make_tiny_model):
    from keras_ssd.inference.predict import predict_image

    full = make_tiny_model(num_classes=3, seed=4, class_names=["a", "b", "c"])
    subset = with_class_subset(full, ["c"])
    path = str(tmp_path / "subset.keras")
    subset.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.config.class_subset == [2] and loaded.class_names == ["c"]
    image = np.random.default_rng(5).uniform(0, 255, (90, 120, 3)).astype("uint8")
    dets = predict_image(loaded, image, confidence_threshold=0.2)
    assert set(dets["names"]) <= {"c"} and set(dets["labels"].tolist()) <= {0}
    again = predict_image(subset, image, confidence_threshold=0.2)
    assert len(dets["scores"]) > 0
    np.testing.assert_array_equal(dets["scores"], again["scores"])
    np.testing.assert_array_equal(dets["boxes"], again["boxes"])


def test_unknown_class_names_are_an_error_listing_the_valid_ones(make_tiny_model):
    full = make_tiny_model(num_classes=3, class_names=["person", "N/A-12", "car"])
    with pytest.raises(ValueError, match="unknown class name.*'horse'.*valid names: "
                                         "person, car$"):
        with_class_subset(full, ["person", "horse"])
    with pytest.raises(ValueError, match="'N/A-12'"):
        with_class_subset(full, ["N/A-12"])
    with pytest.raises(ValueError, match="repeats person"):
        with_class_subset(full, ["person", "person"])


def test_a_class_subset_model_cannot_be_trained(make_tiny_model, toy_dataset):
    from keras_ssd.training.fit import train_detector

    subset = with_class_subset(make_tiny_model(num_classes=2), ["class_1"])
    with pytest.raises(ValueError, match="class-subset detector.*from_preset"):
        train_detector(subset, toy_dataset(), epochs=1)


# ------------------------------------------------------------- from_preset
def test_from_preset_of_the_wrong_architecture_or_mixed_options_is_refused(tmp_path, cache):
    from keras_ssd.models import SSD512, SSD300

    with pytest.raises(ValueError, match="'ssd300_coco' is an ssd300 model, not ssd512; "
                                         r"use SSD300.from_preset\('ssd300_coco'\)"):
        SSD512.from_preset("ssd300_coco", fetch=no_network)
    with pytest.raises(ValueError, match="give one or the other"):
        SSD300.from_preset("ssd300_coco", classes=["person"], num_classes=2,
                           fetch=no_network)
    with pytest.raises(ValueError, match="unknown pretrained preset 'ssd300_kitti'"):
        SSD300.from_preset("ssd300_kitti")


def test_from_preset_marks_the_model_for_the_finetune_recipe(tmp_path, cache, make_tiny_model):
    from keras_ssd.training.fit import resolve_recipe

    preset = fake_preset(tmp_path)
    model = pretrained.from_preset(preset, class_names=["x", "y"],
                                   converter=Counter(make_tiny_model), verbose=False,
                                   weight_decay=5e-4)
    assert model.pretrained_preset == "fake_voc" and model.pretrained_backbone is True
    assert model.weight_decay == 5e-4 and model.class_names == ["x", "y"]
    # the fake preset is not in the registry: check with the real name
    model.pretrained_preset = "ssd300_voc"
    assert resolve_recipe(model) is presets.FINETUNE_SGD


def test_freeze_modes_name_vgg_layers_and_refuse_other_networks(make_tiny_model):
    assert pretrained.FREEZE_MODES["conv1-conv2"] == ("conv1_1", "conv1_2", "conv2_1",
                                                     "conv2_2")
    assert pretrained.FREEZE_MODES["backbone"][-3:] == ("conv5_3", "fc6", "fc7")
    assert len(pretrained.FREEZE_MODES["backbone"]) == 15
    tiny = make_tiny_model()
    assert pretrained.freeze_layers(tiny, None) == []
    with pytest.raises(ValueError, match="needs the layers conv1_1"):
        pretrained.freeze_layers(tiny, "backbone")
    with pytest.raises(ValueError, match="freeze must be None or one of conv1-conv2, backbone"):
        pretrained.freeze_layers(tiny, "all")


def test_evaluate_scores_a_class_subset_model_on_a_dataset_of_those_classes(
        make_tiny_model, toy_dataset):
    from keras_ssd.evaluation import evaluate

    full = make_tiny_model(num_classes=3, seed=6, class_names=["cat", "bird", "dog"])
    with pytest.raises(ValueError, match="dataset has 2 classes but the model predicts 3"):
        evaluate(full, toy_dataset(), verbose=0)
    result = evaluate(with_class_subset(full, ["cat", "dog"]), toy_dataset(), verbose=0)
    assert set(result["AP_by_name"]) == {"cat", "dog"}
    with pytest.raises(ValueError, match=r"model \['dog', 'cat'\] vs dataset \['cat', 'dog'\]"):
        evaluate(with_class_subset(full, ["dog", "cat"]), toy_dataset(), verbose=0)


def test_new_heads_from_a_preset_get_the_recipes_weight_decay(tmp_path, cache,
                                                              make_tiny_model):
    preset = fake_preset(tmp_path)
    tuned = pretrained.from_preset(preset, class_names=["x"], verbose=False,
                                   converter=Counter(make_tiny_model))
    assert tuned.weight_decay == presets.FINETUNE_SGD.weight_decay == 5e-4
    full = pretrained.from_preset(preset, verbose=False, converter=Counter(make_tiny_model))
    assert full.weight_decay == 0.0


def test_the_package_exports_the_converter_and_the_builders_from_preset():
    import keras_ssd
    from keras_ssd.models.convert import convert_checkpoint

    assert keras_ssd.convert_checkpoint is convert_checkpoint
    assert keras_ssd.SSD300.from_preset.__qualname__ == "SSD300.from_preset"
    assert keras_ssd.pretrained.from_preset is pretrained.from_preset
    # The builder itself is unchanged: still a plain call.
    assert keras_ssd.SSDTiny(num_classes=2).output_shape == (None, 2390, 7)


def test_frozen_layers_are_stored_with_the_model(tmp_path, make_tiny_model):
    model = make_tiny_model()
    names = [layer.name for layer in model.layers if layer.weights][:2]
    assert model.freeze(names) == tuple(names) and model.frozen_layers == tuple(names)
    assert model.get_config()["frozen_layers"] == names
    assert "frozen_layers" not in make_tiny_model().get_config()  # none: as before
    model.save(tmp_path / "frozen.keras")
    loaded = keras.saving.load_model(tmp_path / "frozen.keras", compile=False)
    assert loaded.frozen_layers == tuple(names)
    assert [layer.name for layer in loaded.layers if layer.weights and not layer.trainable] \
        == names
    with pytest.raises(ValueError, match="has no layer.*conv9_9 to freeze"):
        model.freeze(["conv9_9"])


def test_a_failed_backbone_download_is_a_download_error_and_other_errors_pass():
    from keras_ssd.models.weights_files import imagenet_application

    def offline():
        raise Exception("URL fetch failure on https://example.org/w.h5: None -- "
                        "[Errno -2] Name or service not known")

    with pytest.raises(DownloadError, match=r"of VGG16 \(URL fetch failure on "
                                            r"https://example.org/w.h5"):
        imagenet_application(offline, "VGG16")
    assert isinstance(DownloadError("x"), OSError)  # the CLI's one-line errors

    def refused():
        raise ConnectionRefusedError(111, "Connection refused")

    with pytest.raises(DownloadError, match="Connection refused"):
        imagenet_application(refused, "VGG16")

    def broken():
        raise KeyError("not a download")

    with pytest.raises(KeyError):
        imagenet_application(broken, "VGG16")
    assert imagenet_application(lambda: "model", "VGG16") == "model"
