"""SSDLite320 without torch: the variant (priors written from torchvision's
`DefaultBoxGenerator`, parameter count, `.keras` round trip), its converter
on a file in torchvision's key layout written by the minimal writer of
tests/test_pth.py (weights land where they belong, bad keys are named), and
the `ssdlite320_coco` preset offline: a random-weights stand-in goes
through download, conversion and cache, and gets new class heads, class
subsets and frozen layers as the SSD300 presets do. The equality with
torchvision itself is tests/models/test_convert_ssdlite_equality.py."""

import dataclasses
import hashlib
import math

import keras
import numpy as np
import pytest

from keras_ssd import presets
from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.models import SSDLite320, pretrained
from keras_ssd.models.convert import (
    SOURCES, ConversionError, convert_checkpoint, convert_state_dict, sniff_source,
)
from keras_ssd.models.convert.torchvision_ssdlite import layer_table

SOURCE = SOURCES["torchvision_ssdlite"]


def ssdlite_default_boxes(size=320, maps=(20, 10, 5, 3, 2, 1), min_ratio=0.2,
                          max_ratio=0.95):
    """torchvision's `DefaultBoxGenerator([[2, 3]] * 6, min_ratio, max_ratio)`
    (clip=True, steps=None) as (cx, cy, w, h) / size, in its float32
    arithmetic: scales linear from min_ratio to max_ratio plus 1.0; per map
    the pairs (s_k, s_k), (s'_k, s'_k), then per ratio (s_k sqrt(r),
    s_k / sqrt(r)) and its transpose, w and h clamped to [0, 1]; centres
    (i + 0.5) / f_k, cells row-major."""
    m = len(maps)
    scales = [min_ratio + (max_ratio - min_ratio) * k / (m - 1.0) for k in range(m)] + [1.0]
    out = []
    for k, f in enumerate(maps):
        pairs = [[scales[k]] * 2, [math.sqrt(scales[k] * scales[k + 1])] * 2]
        for r in (2, 3):
            q = math.sqrt(r)
            pairs += [[scales[k] * q, scales[k] / q], [scales[k] / q, scales[k] * q]]
        pairs = np.clip(np.asarray(pairs, np.float32), 0, 1)
        shifts = ((np.arange(f) + 0.5) / f).astype(np.float32)
        sy, sx = np.meshgrid(shifts, shifts, indexing="ij")
        for cx, cy in zip(sx.reshape(-1), sy.reshape(-1)):
            out += [[cx, cy, w, h] for w, h in pairs]
    return np.asarray(out, np.float32)


def random_state_dict(num_outputs=91, seed=0):
    """Random tensors in torchvision's SSDLite layout (with the batch norms'
    `num_batches_tracked`, int64 scalars, as torch saves them)."""
    rng = np.random.default_rng(seed)
    state = {}
    for _, kind, tensors in layer_table(num_outputs):
        for key, shape in tensors:
            if key.endswith("running_var"):
                state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else 1
                state[key] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(
                    np.float32)
        if kind == "bn":
            state[tensors[0][0].rsplit(".", 1)[0] + ".num_batches_tracked"] = \
                np.array(7, np.int64)
    return state


@pytest.fixture(scope="module")
def converted():
    state = random_state_dict()
    return state, convert_state_dict(state, "auto")


# ---------------------------------------------------------------- the variant
def test_priors_are_torchvisions_default_box_generator():
    config = SSDConfig.from_preset("ssdlite320", num_classes=90)
    assert config.clip == "wh" and config.num_anchors == 3234
    ours, ref = generate_anchors(config), ssdlite_default_boxes()
    assert ours.shape == ref.shape == (3234, 4)
    assert np.abs(ours - ref).max() * 320 < 1e-5
    assert ref[:, 2:].max() == 1.0  # the clamp acts on the last maps' wide boxes
    assert SOURCE.geometry["clip"] == "wh"


def test_the_variant_has_torchvisions_parameter_count_and_maps():
    model = SSDLite320(num_classes=90)
    assert model.output_shape == (None, 3234, 95)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 3_440_060  # torchvision's num_params of COCO_V1
    assert model.source_names == ["block13_expand", "last_conv", "extra1", "extra2",
                                  "extra3", "extra4"]
    assert presets.recipe_for("ssdlite320") is presets.FROM_SCRATCH
    assert all(layer.epsilon == 1e-3 for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def test_the_variant_round_trips_through_a_keras_file(keras_round_trip):
    model = SSDLite320(num_classes=3, class_names=["a", "b", "c"], name="lite")
    image = np.random.default_rng(0).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    loaded = keras_round_trip(model, image, compile=False)
    assert loaded.architecture == "ssdlite320" and loaded.class_names == ["a", "b", "c"]


def test_ssdlite_refuses_another_source_normalisation():
    with pytest.raises(ValueError, match="normalization must be 'none'"):
        SSDLite320(num_classes=2, normalization="l2")


# --------------------------------------------------------------- the reader
def test_a_torchvision_ssdlite_file_converts_weight_for_weight(tmp_path, save_pth):
    state = random_state_dict(num_outputs=4)
    path = save_pth(tmp_path / "ssdlite.pth", state)
    model = convert_checkpoint(path)  # sniffed from the keys
    assert model.architecture == "ssdlite320" and model.output_shape == (None, 3234, 8)
    assert model.preprocessing == SOURCE.preprocessing
    assert model.postprocessing == SOURCE.postprocessing
    for layer, kind, tensors in layer_table(4):
        got = model.get_layer(layer).get_weights()
        want = [state[key] for key, _ in tensors]
        if kind == "conv":
            want[0] = want[0].transpose(2, 3, 1, 0)
        elif kind == "dw":
            want[0] = want[0].transpose(2, 3, 0, 1)
        assert len(got) == len(want), layer
        for g, w in zip(got, want):  # bn: gamma, beta, moving mean, moving variance
            assert np.array_equal(g, w), layer


def test_the_converted_coco_model_has_torchvisions_classes(converted):
    _, model = converted
    assert model.num_classes == 90 and model.class_names[0] == "person"
    assert model.config.category_ids[:3] == [1, 2, 3]
    assert model.postprocessing["iou_threshold"] == 0.55


def test_a_head_channel_is_its_prior_and_value():
    """Channel a * K + k of a head's 1x1 convolution is prior a, value k."""
    state = {k: np.zeros_like(v) for k, v in random_state_dict(num_outputs=3).items()}
    for key in state:
        if key.endswith("running_var") or (key.endswith(".1.weight") and ".0.1." not in key
                                           and state[key].ndim == 1):
            state[key] = np.ones_like(state[key])
    state["head.classification_head.module_list.5.1.bias"][4 * 3 + 2] = 5.0
    model = convert_state_dict(state, "torchvision_ssdlite")
    out = np.asarray(model(np.zeros((1, 320, 320, 3), np.float32)))[0]
    last = out[-6:, 4:]  # the 1x1 map's six priors
    assert last[4, 2] == 5.0 and np.count_nonzero(last) == 1


def test_a_missing_key_is_named():
    state = random_state_dict()
    del state["backbone.features.1.0.2.fc1.bias"]
    with pytest.raises(ConversionError,
                       match=r"missing keys: 'backbone.features.1.0.2.fc1.bias'"):
        convert_state_dict(state, "torchvision_ssdlite")


def test_an_unexpected_key_is_named():
    state = random_state_dict()
    state["backbone.extra.4.0.0.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(ConversionError, match=r"unexpected keys: 'backbone.extra.4.0.0.weight'"):
        convert_state_dict(state, "torchvision_ssdlite")


def test_a_mis_shaped_key_is_named_with_its_layer_and_both_shapes():
    state = random_state_dict()
    state["backbone.features.0.4.block.1.0.weight"] = np.zeros((72, 1, 3, 3), np.float32)
    with pytest.raises(ConversionError,
                       match=r"'backbone.features.0.4.block.1.0.weight' \(keras-ssd layer "
                             r"block4_dw\) has shape \(72, 1, 3, 3\), expected \(72, 1, 5, 5\)"):
        convert_state_dict(state, "torchvision_ssdlite")


def test_class_heads_that_disagree_are_refused():
    state = random_state_dict()
    state["head.classification_head.module_list.0.1.bias"] = np.zeros((5,), np.float32)
    with pytest.raises(ConversionError, match=r"module_list.0.1.bias' has shape \(5,\)"):
        convert_state_dict(state, "torchvision_ssdlite")
    with pytest.raises(ConversionError, match="num_classes=5 disagrees"):
        convert_state_dict(random_state_dict(), "torchvision_ssdlite", num_classes=5)


def test_sniffing_tells_ssdlite_from_the_ssd300_layouts():
    assert sniff_source(random_state_dict()) == "torchvision_ssdlite"


# ------------------------------------------------------------------ preset
PAYLOAD = b"stand-in ssdlite checkpoint\n"


@pytest.fixture
def stand_in(tmp_path, monkeypatch, converted):
    """`ssdlite320_coco` served from a local file, converted from random
    weights (the published file is never downloaded by tests)."""
    monkeypatch.setenv("KERAS_SSD_CACHE_DIR", str(tmp_path / "cache"))
    served = tmp_path / "served.pth"
    served.write_bytes(PAYLOAD)
    preset = dataclasses.replace(presets.get_pretrained("ssdlite320_coco"),
                                 url=served.as_uri(), sha256_prefix="",
                                 sha256=hashlib.sha256(PAYLOAD).hexdigest())
    calls = []

    def converter(path, source):
        calls.append(source)
        return convert_state_dict(converted[0], source)

    return preset, converter, calls


def test_the_ssdlite_preset_and_its_published_facts():
    p = presets.get_pretrained("ssdlite320_coco")
    assert p.url == ("https://download.pytorch.org/models/"
                     "ssdlite320_mobilenet_v3_large_coco-a79551df.pth")
    assert p.known_hash == "a79551df" and p.file_name == p.url.rsplit("/", 1)[1]
    assert (p.architecture, p.source, p.accuracy) == ("ssdlite320", "torchvision_ssdlite",
                                                      21.3)
    assert p.recipe is presets.FINETUNE_SSDLITE


def test_the_preset_converts_once_and_loads_from_its_cache(stand_in):
    preset, converter, calls = stand_in
    model = SSDLite320.from_preset(preset, converter=converter, verbose=False)
    assert calls == ["torchvision_ssdlite"] and model.architecture == "ssdlite320"
    again = pretrained.from_preset(preset, converter=None, fetch=None, verbose=False)
    assert again.get_config() == model.get_config()
    image = np.random.default_rng(1).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(image)), np.asarray(again(image)))
    with pytest.raises(ValueError, match="is an ssdlite320 model, not ssd300"):
        pretrained.from_preset(preset, architecture="ssd300", converter=converter,
                               verbose=False)


def test_new_heads_keep_the_features_and_start_at_the_background_prior(stand_in):
    preset, converter, _ = stand_in
    source = pretrained.from_preset(preset, converter=converter, verbose=False)
    model = pretrained.from_preset(preset, class_names=["cat", "dog"], freeze="backbone",
                                   converter=converter, verbose=False)
    assert model.output_shape == (None, 3234, 4 + 3)
    assert model.weight_decay == presets.FINETUNE_SSDLITE.model_weight_decay
    bias = model.get_layer("extra4_mbox_conf").get_weights()[1].reshape(6, 3)
    np.testing.assert_allclose(bias[:, 0], pretrained.background_bias(2), rtol=1e-6)
    assert np.all(bias[:, 1:] == 0)
    for kept in ("block13_expand", "extra2_dw_bn", "last_conv_mbox_conf_dw",
                 "last_conv_mbox_conf_dw_bn", "extra4_mbox_loc"):
        for a, b in zip(model.get_layer(kept).get_weights(),
                        source.get_layer(kept).get_weights()):
            np.testing.assert_array_equal(a, b)
    frozen = [layer.name for layer in model.layers if not layer.trainable and layer.weights]
    assert frozen == list(pretrained.freeze_modes(model)["backbone"])
    assert frozen[0] == "stem_conv" and frozen[-1] == "last_bn"
    assert model.get_layer("extra1_reduce").trainable
    with pytest.raises(ValueError, match="one of backbone for a ssdlite320 model"):
        pretrained.freeze_layers(model, "conv1-conv2")


def test_a_class_subset_keeps_the_sources_scores(stand_in):
    preset, converter, _ = stand_in
    full = pretrained.from_preset(preset, converter=converter, verbose=False)
    subset = pretrained.from_preset(preset, classes=["person", "dog"], converter=converter,
                                    verbose=False)
    assert subset.class_names == ["person", "dog"]
    image = np.random.default_rng(2).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(full(image)), np.asarray(subset(image)))


def test_finetuning_new_heads_of_the_preset_trains_and_its_loss_falls(
        stand_in, synthetic_train, fine_tune):
    preset, converter, _ = stand_in
    train = synthetic_train(images=2)  # one batch of two: the same step each epoch
    model = pretrained.from_preset(preset, class_names=train.class_names, freeze="backbone",
                                   converter=converter, verbose=False)
    before = model.get_layer("block5_dw").get_weights()[0].copy()
    history = fine_tune(model, train, batch_size=2, learning_rate=1e-3)
    loss = history.history["loss"]
    assert history.recipe.name.startswith("finetune-ssdlite-sgd")
    assert len(loss) == 3 and loss[0] > loss[1] > loss[2], loss
    np.testing.assert_array_equal(model.get_layer("block5_dw").get_weights()[0], before)
