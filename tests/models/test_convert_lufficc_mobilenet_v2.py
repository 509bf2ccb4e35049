"""lufficc/SSD's MobileNetV2 SSDLite320 without torch: a file in its layout
(`{"model": state_dict, ...}`, written by the minimal writer of
tests/test_pth.py) converts weight for weight into keras-ssd's
`ssdlite320_mobilenet_v2`, sniffing tells it from lufficc's VGG16 SSDs,
bad keys are named, the variant round-trips through `.keras`, and the
preset fine-tunes through the real loading path. The equality with
lufficc's network is tests/models/test_convert_lufficc_mobilenet_v2_equality.py."""

import numpy as np
import pytest

from keras_ssd.models.convert import (
    SOURCES, ConversionError, convert_checkpoint, convert_state_dict, sniff_source,
)
from keras_ssd.models.convert.lufficc_mobilenet_v2 import layer_table

from test_convert_checkpoints import random_state_dict as ssd300_state_dict
from test_convert_ssd512 import random_state_dict as ssd512_state_dict

SOURCE = "lufficc_mobilenet_v2"


def random_state_dict(num_outputs=21, seed=0):
    """Every tensor of lufficc's layout, random (running variances positive)."""
    rng = np.random.default_rng(seed)
    state = {}
    for _, _, tensors in layer_table(num_outputs):
        for key, shape in tensors:
            value = rng.standard_normal(shape, dtype=np.float32)
            state[key] = np.abs(value) + 0.5 if key.endswith("running_var") else value
    return state


@pytest.fixture(scope="module")
def state():
    return random_state_dict()


def _keras_layout(kind, array):
    if array.ndim != 4:
        return array
    return array.transpose(2, 3, 0, 1) if kind == "dw" else array.transpose(2, 3, 1, 0)


def test_a_lufficc_mobilenet_v2_file_converts_weight_for_weight(tmp_path, save_pth, state):
    tracked = {"backbone.features.0.1.num_batches_tracked": np.array(7, np.int64)}
    path = save_pth(tmp_path / "mobilenet_v2_ssd320_voc0712_v2.pth",
                    {"model": {**state, **tracked}, "iteration": 120000,
                     "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}})
    model = convert_checkpoint(path)  # sniffed
    spec = SOURCES[SOURCE]
    assert model.architecture == "ssdlite320_mobilenet_v2"
    assert model.output_shape == (None, 3234, 25) and model.class_names[14] == "person"
    assert model.config.clip == "cxcywh" and list(model.config.steps) == [16, 32, 64, 107,
                                                                           160, 320]
    assert list(model.preprocessing["mean"]) == [123.0, 117.0, 104.0]
    assert model.postprocessing == spec.postprocessing
    post = model.postprocessing
    assert (post["top_k"], post["clip_boxes"]) == (100, False)
    copied = 0
    for layer, kind, tensors in layer_table(21):
        got = model.get_layer(layer).get_weights()
        assert len(got) == len(tensors), layer
        for g, (key, _) in zip(got, tensors):
            assert np.array_equal(g, _keras_layout(kind, state[key])), key
            copied += 1
    assert copied == len(state)
    # the last map's heads are plain 1x1 convolutions, the others SSDLite's
    assert "extra4_mbox_conf_dw" not in [layer.name for layer in model.layers]
    assert model.get_layer("extra3_mbox_conf_dw").get_weights()[1].shape == (256,)


def test_sniffing_tells_it_from_lufficcs_vgg16_ssds(state):
    assert sniff_source(state) == SOURCE
    assert sniff_source(ssd300_state_dict("lufficc", 21)) == "lufficc"
    assert sniff_source(ssd512_state_dict()) == "lufficc512"


def test_a_missing_or_mis_shaped_key_is_named(state):
    broken = dict(state)
    del broken["backbone.extras.3.conv.1.1.running_var"]
    with pytest.raises(ConversionError, match=r"missing keys: "
                                              r"'backbone.extras.3.conv.1.1.running_var'"):
        convert_state_dict(broken, SOURCE)
    broken = dict(state)
    broken["backbone.features.14.conv.1.0.weight"] = np.zeros((576, 1, 5, 5), np.float32)
    with pytest.raises(ConversionError,
                       match=r"'backbone.features.14.conv.1.0.weight' \(keras-ssd layer "
                             r"block14_dw\) has shape \(576, 1, 5, 5\), expected "
                             r"\(576, 1, 3, 3\)"):
        convert_state_dict(broken, SOURCE)
    with pytest.raises(ConversionError, match="num_classes=5 disagrees with the checkpoi"):
        convert_state_dict(state, SOURCE, num_classes=5)


def test_the_variant_builds_from_scratch_and_round_trips_through_keras(keras_round_trip):
    from keras_ssd import SSDLite320MobileNetV2, presets

    model = SSDLite320MobileNetV2(num_classes=3)
    assert model.output_shape == (None, 3234, 8) and model.preprocessing == "tf"
    assert presets.recipe_for("ssdlite320_mobilenet_v2") is presets.FROM_SCRATCH
    # PyTorch's padding: stride-2 layers pad 1 on every side, so the maps are
    # 160, 80, 40, 20, 10 (and 5, 3, 2, 1) as in lufficc's network
    assert model.get_layer("stem_conv_pad").output.shape[1:3] == (322, 322)
    assert model.get_layer("block13_add").output.shape[1:] == (20, 20, 96)
    assert model.get_layer("extra4_project_bn").output.shape[1:] == (1, 1, 64)
    with pytest.raises(ValueError, match="normalization must be 'none'"):
        SSDLite320MobileNetV2(num_classes=3, normalization="l2")
    x = np.random.default_rng(0).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    again = keras_round_trip(model, x)
    assert again.architecture == "ssdlite320_mobilenet_v2"


def test_the_preset_fine_tunes_through_the_real_loading_path(tmp_path, monkeypatch,
                                                             save_pth, state):
    """`SSDLite320MobileNetV2.from_preset("ssdlite320_mobilenet_v2_voc", ...)`
    offline: a file in its layout put by hand in the cache is read,
    converted and given new class heads with the background prior; the
    MobileNetV2 is frozen, the box heads are the file's."""
    from keras_ssd import SSDLite320MobileNetV2, presets
    from keras_ssd.models import pretrained
    from keras_ssd.training.fit import resolve_recipe

    def no_network(url, destination):
        raise AssertionError(f"the test tried to download {url}")

    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    name = "ssdlite320_mobilenet_v2_voc"
    preset = presets.get_pretrained(name)
    assert preset.url == ("https://github.com/lufficc/SSD/releases/download/1.2/"
                          "mobilenet_v2_ssd320_voc0712_v2.pth")
    assert (preset.source, preset.accuracy, preset.known_hash) == (SOURCE, 68.9, "")
    path = pretrained.checkpoint_path(name)
    tmp_path.joinpath("cache", "pretrained").mkdir(parents=True)
    save_pth(path, {"model": state, "iteration": 120000})
    model = SSDLite320MobileNetV2.from_preset(name, class_names=["cat", "dog"],
                                              freeze="backbone", fetch=no_network,
                                              cache=False, verbose=False)
    assert model.class_names == ["cat", "dog"] and model.output_shape == (None, 3234, 7)
    assert not model.get_layer("last_conv").trainable
    assert model.get_layer("extra1_expand").trainable
    stem = state["backbone.features.0.0.weight"].transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], stem)
    np.testing.assert_array_equal(model.get_layer("last_conv_mbox_loc").get_weights()[1],
                                  state["box_head.predictor.reg_headers.1.conv.3.bias"])
    bias = model.get_layer("last_conv_mbox_conf").get_weights()[1].reshape(6, 3)
    np.testing.assert_allclose(bias[:, 0], pretrained.background_bias(2), rtol=1e-6)
    assert np.all(bias[:, 1:] == 0)
    assert resolve_recipe(model) is presets.FINETUNE_SGD  # lufficc's own decay, 5e-4
