"""The pretrained presets on SSD300 itself, offline: each preset's source
layout with random weights (a stand-in for the published file, which tests
never download) goes through `from_preset`'s download, conversion and
cache; fine-tuning new heads on the synthetic VOC set lowers the loss."""

import dataclasses
import hashlib

import keras
import numpy as np
import pytest

from keras_ssd import presets
from keras_ssd.models import pretrained

convert = pytest.importorskip("keras_ssd.models.convert")

PAYLOAD = b"stand-in checkpoint bytes\n"


def random_state_dict(source, seed=0):
    """Random weights in `source`'s state-dict layout (He-scaled kernels, the
    first one also divided by the input's scale so that activations stay
    near 1 as in a trained network; zero biases; L2Norm scale 20), for the
    class count it publishes."""
    spec = convert.SOURCES[source]
    rng = np.random.default_rng(seed)
    state = {}
    for key, (layer, kind, index, shape) in spec.expected_keys(spec.num_classes + 1).items():
        if kind != "conv":
            state[key] = np.full(shape, 20.0, np.float32)
        elif index == 1:
            state[key] = np.zeros(shape, np.float32)
        else:
            fan_in = int(np.prod(shape[1:]))
            std = np.sqrt(2.0 / fan_in) / (64.0 if layer == "conv1_1" else 1.0)
            state[key] = rng.normal(0, std, shape).astype(np.float32)
    return state


class StandIn:
    """The converter on a random-weights state dict (counts its calls)."""

    def __init__(self, seed=0):
        self.calls, self.seed = 0, seed

    def __call__(self, path, source):
        self.calls += 1
        return convert.convert_state_dict(random_state_dict(source, self.seed), source)


def stand_in_preset(name, tmp_path):
    """`name`'s preset with its file served from a local file:// URL."""
    served = tmp_path / f"{name}.pth"
    served.write_bytes(PAYLOAD)
    return dataclasses.replace(presets.get_pretrained(name), url=served.as_uri(),
                               sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                               sha256_prefix="")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SSD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def never(*args):
    raise AssertionError("no second download or conversion expected")


@pytest.mark.parametrize("name", ["ssd300_coco", "ssd300_voc", "ssd300_voc_amdegroot"])
def test_every_preset_stand_in_converts_once_and_round_trips_through_its_cache(
        name, tmp_path, cache):
    preset = stand_in_preset(name, tmp_path)
    converter = StandIn()
    model = pretrained.from_preset(preset, converter=converter, verbose=False)
    assert converter.calls == 1
    source = convert.SOURCES[preset.source]
    assert model.architecture == "ssd300" and model.config.num_anchors == 8732
    assert model.config.clip == source.geometry["clip"]
    assert model.class_names == list(source.class_names)
    assert model.config.num_classes + 1 == {"coco": 91, "voc": 21}[preset.classes]
    # The cache holds the .keras file; the second call only loads it.
    again = pretrained.from_preset(preset, converter=never, fetch=never, verbose=False)
    assert again.get_config() == model.get_config()
    image = np.random.default_rng(1).uniform(0, 255, (1, 300, 300, 3)).astype("float32")
    np.testing.assert_array_equal(model(image), again(image))  # the raw heads


def test_finetuning_new_heads_of_a_preset_trains_and_its_loss_falls(
        tmp_path, cache, synthetic_train, fine_tune):
    train = synthetic_train(images=1)  # one image, one step per epoch: the same step
    model = pretrained.from_preset(stand_in_preset("ssd300_voc", tmp_path),
                                   class_names=train.class_names, freeze="backbone",
                                   converter=StandIn(), verbose=False)
    assert model.class_names == list(train.class_names) and model.output_shape[-1] == 9
    frozen = [layer.name for layer in model.layers if not layer.trainable and layer.weights]
    assert frozen == list(pretrained.FREEZE_MODES["backbone"]) == list(model.frozen_layers)
    before = model.get_layer("conv3_1").get_weights()[0].copy()
    history = fine_tune(model, train, batch_size=1, learning_rate=1e-4)
    loss = history.history["loss"]
    assert history.recipe.name.startswith("finetune-sgd")
    assert len(loss) == 3 and loss[0] > loss[1] > loss[2], loss
    np.testing.assert_array_equal(model.get_layer("conv3_1").get_weights()[0], before)
