"""One weight-decay default, the recipe's, wherever a user trains: the model
builders, `train_detector` and `keras-ssd train`; never applied twice."""

import inspect
import warnings

import keras
import pytest

from keras_ssd import presets
from keras_ssd.models import SSD300, SSD512, SSDMobileNetV2, SSDTiny
from keras_ssd.models.builders import default_weight_decay
from keras_ssd.training.fit import train_detector


def _no_fit(model):
    model.fit = lambda *args, **kwargs: keras.callbacks.History()
    return model


@pytest.mark.parametrize("builder", [SSD300, SSD512, SSDTiny, SSDMobileNetV2])
def test_builders_default_to_the_recipes_decay(builder):
    assert inspect.signature(builder).parameters["weight_decay"].default is None


@pytest.mark.parametrize("variant, backbone_weights, expected", [
    ("ssd300", "imagenet", 5e-4),  # the paper's SGD: L2 on the kernels
    ("ssd512", "vgg16.weights.h5", 5e-4),
    ("ssd300", None, 0.0),  # AdamW from scratch: the decay is the optimizer's
    ("mobilenet_v2", "imagenet", 0.0),
    ("tiny", None, 0.0),
])
def test_default_weight_decay_is_the_recipes_model_penalty(variant, backbone_weights,
                                                           expected):
    assert default_weight_decay(variant, backbone_weights) == expected
    recipe = presets.recipe_for(variant, pretrained=backbone_weights is not None)
    assert recipe.model_weight_decay + recipe.optimizer_weight_decay == recipe.weight_decay


def test_recipe_splits_its_decay_between_model_and_optimizer():
    assert (presets.PAPER_SGD.model_weight_decay,
            presets.PAPER_SGD.optimizer_weight_decay) == (5e-4, 0.0)
    assert (presets.FROM_SCRATCH.model_weight_decay,
            presets.FROM_SCRATCH.optimizer_weight_decay) == (0.0, 5e-4)
    adam = presets.FROM_SCRATCH.replace(optimizer="adam", weight_decay=1e-3)
    assert (adam.model_weight_decay, adam.optimizer_weight_decay) == (1e-3, 0.0)


def test_built_model_carries_the_default_and_zero_turns_it_off():
    model = SSDTiny(num_classes=2)
    assert model.weight_decay == 0.0 and not model.losses
    assert SSDTiny(num_classes=2, weight_decay=5e-4).losses
    assert SSDTiny(num_classes=2, weight_decay=0).weight_decay == 0.0


def test_a_model_with_an_l2_penalty_gets_no_adamw_decay_on_top(make_tiny_model,
                                                               synthetic_voc, caplog):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    data = VOCDataset(synthetic_voc, split="trainval", class_names=SYNTHETIC_CLASSES)
    model = _no_fit(make_tiny_model(num_classes=4, weight_decay=5e-4))
    with caplog.at_level("INFO", logger="keras_ssd"):
        history = train_detector(model, data, epochs=1, batch_size=4, workers=0, verbose=0,
                                 optimizer="adamw")
    assert type(model.optimizer) is keras.optimizers.AdamW
    assert not model.optimizer.weight_decay  # the kernels decay once, through the L2
    assert history.recipe.weight_decay == 0.0
    assert "already has an L2 penalty of 0.0005" in caplog.text
    # Asked for explicitly: done, with a warning that it decays twice.
    model = _no_fit(make_tiny_model(num_classes=4, weight_decay=5e-4))
    with pytest.warns(UserWarning, match="decay twice"):
        train_detector(model, data, epochs=1, batch_size=4, workers=0, verbose=0,
                       optimizer="adamw", weight_decay=1e-4)
    assert model.optimizer.weight_decay == pytest.approx(1e-4)
    # No L2 in the model (the tiny model's default): AdamW decays, no warning.
    model = _no_fit(make_tiny_model(num_classes=4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_detector(model, data, epochs=1, batch_size=4, workers=0, verbose=0)
    assert model.optimizer.weight_decay == pytest.approx(5e-4)
