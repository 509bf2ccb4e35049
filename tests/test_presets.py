"""The one registry of variants: every reader (config, builders, `SSD`, the
CLI) takes its names and geometry from `keras_ssd.presets`."""

import pytest

from keras_ssd import presets
from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig


def test_each_variant_has_one_canonical_name_and_distinct_spellings():
    assert presets.names() == ["ssd300", "ssd512", "mobilenet_v2", "ssdlite320",
                               "ssdlite320_mobilenet_v2", "tiny"]
    spellings = [s for p in presets.PRESETS.values() for s in p.spellings]
    assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize("spelling, name", [
    ("ssd300", "ssd300"), ("SSD300", "ssd300"), ("ssd300_vgg16", "ssd300"),
    ("ssd512_vgg16", "ssd512"), ("mobilenetv2", "mobilenet_v2"),
    ("ssd_mobilenet_v2", "mobilenet_v2"), ("MobileNet-V2", "mobilenet_v2"),
    ("SSD-Tiny", "tiny"), ("ssd_tiny", "tiny"),
])
def test_old_and_loose_spellings_resolve_to_the_canonical_name(spelling, name):
    assert presets.canonical_name(spelling) == name


def test_unknown_variant_is_a_clear_error_listing_the_names():
    with pytest.raises(ValueError, match="unknown SSD variant 'yolo'; choose one of "
                                         "ssd300, ssd512, mobilenet_v2, ssdlite320, "
                                         "ssdlite320_mobilenet_v2, tiny"):
        presets.get("yolo")
    assert presets.find("yolo") is None


@pytest.mark.parametrize("name, count", [
    ("ssd300", 8732), ("ssd512", 24564), ("mobilenet_v2", 3234), ("ssdlite320", 3234),
    ("ssdlite320_mobilenet_v2", 3234), ("tiny", 2390),
])
def test_config_from_preset_gives_the_published_prior_counts(name, count):
    config = SSDConfig.from_preset(name, num_classes=5)
    assert config.num_anchors == count == len(generate_anchors(config))
    assert config.num_classes == 5


def test_config_classmethods_are_the_registry_geometry():
    for name, method in [("ssd300", SSDConfig.ssd300), ("ssd512", SSDConfig.ssd512),
                         ("mobilenet_v2", SSDConfig.mobilenet_v2), ("tiny", SSDConfig.tiny)]:
        assert method(7) == SSDConfig.from_preset(name, 7)
    assert SSDConfig.from_preset("tiny", class_names=["a", "b"]).num_classes == 2
    assert SSDConfig.from_preset("ssd300").num_classes == 20


def test_registry_tables_are_plain_data_that_callers_cannot_corrupt():
    config = SSDConfig.from_preset("tiny", 2)
    config.min_sizes[0] = 999.0
    assert presets.get("tiny").geometry["min_sizes"][0] == 16
    assert SSDConfig.from_preset("tiny", 2).min_sizes[0] == 16


def test_every_preset_names_a_backbone_and_a_builder_that_exist():
    import keras_ssd.models as models
    from keras_ssd.models.backbones import BACKBONES

    for preset in presets.PRESETS.values():
        assert preset.backbone in BACKBONES
        assert models.get_builder(preset.name) is getattr(models, preset.builder)
        assert (BACKBONES[preset.backbone].load_weights is not None) == \
            preset.pretrained_backbone
    assert set(models.MODEL_BUILDERS) == {s for p in presets.PRESETS.values()
                                          for s in p.spellings}


def test_models_store_the_canonical_name_whatever_spelling_built_them():
    from keras_ssd.models import SSD, build_model

    model = SSD(SSDConfig.tiny(2), architecture="ssd_tiny")
    assert model.architecture == "tiny" and model.get_config()["architecture"] == "tiny"
    assert build_model("SSD-Tiny", num_classes=2).architecture == "tiny"


def test_the_cli_offers_exactly_the_registry_names():
    from keras_ssd.cli import MODEL_CHOICES

    assert list(MODEL_CHOICES) == presets.names()


# ------------------------------------------------------------ training recipes
@pytest.mark.parametrize("name, pretrained, recipe", [
    ("ssd300", None, "paper-sgd"), ("ssd300", True, "paper-sgd"),
    ("ssd300", False, "from-scratch-adamw"), ("ssd512", None, "paper-sgd"),
    ("ssd512", True, "paper-sgd"), ("SSD512_vgg16", False, "from-scratch-adamw"),
    ("tiny", None, "from-scratch-adamw"), ("tiny", False, "from-scratch-adamw"),
    # the tiny network has no pretrained weights to start from
    ("tiny", True, "from-scratch-adamw"),
    ("mobilenet_v2", None, "from-scratch-adamw"),
])
def test_recipe_for_picks_paper_sgd_only_for_a_pretrained_vgg(name, pretrained, recipe):
    assert presets.recipe_for(name, pretrained=pretrained) is presets.RECIPES[recipe]


def test_recipe_for_an_unknown_variant_is_the_registry_error():
    with pytest.raises(ValueError, match="unknown SSD variant 'yolo'"):
        presets.recipe_for("yolo")


def test_paper_recipe_is_the_ssd_paper_numbers():
    r = presets.PAPER_SGD
    assert (r.optimizer, r.learning_rate, r.momentum, r.weight_decay) == ("sgd", 1e-3, 0.9, 5e-4)
    assert (r.schedule, r.epochs, r.batch_size) == ("step", 120, 32)
    s = presets.FROM_SCRATCH
    assert (s.optimizer, s.learning_rate, s.weight_decay) == ("adamw", 3e-3, 5e-4)
    assert (s.schedule, s.warmup_epochs, s.warmup_factor, s.final_lr_factor) == \
        ("cosine", 1.0, 0.1, 0.01)
    assert presets.get("ssd300").recipe is r and presets.get("ssd300").scratch_recipe is s


def test_recipe_describe_names_optimizer_rate_decay_schedule_and_length():
    assert presets.PAPER_SGD.describe() == (
        "paper-sgd: sgd lr 0.001; momentum 0.9; L2 on kernels 0.0005; warm-up 1 epoch(s) "
        "from x0.1; x0.1 steps at 2/3 and 5/6 of the run; 120 epochs of batch 32")
    assert presets.FROM_SCRATCH.describe() == (
        "from-scratch-adamw: adamw lr 0.003; decoupled weight decay 0.0005; warm-up 1 "
        "epoch(s) from x0.1; cosine decay to x0.01; 60 epochs of batch 32")
    custom = presets.FROM_SCRATCH.replace(name="mine", optimizer="adam", epochs=3,
                                          augmentation={"expand": False, "p_flip": 0.5})
    assert custom.describe() == (
        "mine: adam lr 0.003; L2 on kernels 0.0005; warm-up 1 epoch(s) from x0.1; cosine "
        "decay to x0.01; 3 epochs of batch 32; augmentation expand=False, p_flip=0.5")


def test_recipes_are_frozen_and_replace_checks_field_names():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        presets.PAPER_SGD.learning_rate = 1.0
    with pytest.raises(TypeError):
        presets.PAPER_SGD.replace(lr=1.0)
    assert presets.PAPER_SGD.replace(epochs=3).epochs == 3
    assert presets.PAPER_SGD.epochs == 120


def test_resolve_recipe_is_the_one_rule_for_python_and_cli():
    assert presets.resolve_recipe() is presets.FROM_SCRATCH
    assert presets.resolve_recipe(variant="ssd300_vgg16") is presets.PAPER_SGD
    assert presets.resolve_recipe(variant="ssd300", pretrained=False) is presets.FROM_SCRATCH
    assert presets.resolve_recipe(variant="yolo") is presets.FROM_SCRATCH
    assert presets.resolve_recipe("paper-sgd", variant="tiny") is presets.PAPER_SGD
    used = presets.resolve_recipe(variant="tiny", optimizer="SGD", learning_rate=None,
                                  epochs=3)
    assert used == presets.FROM_SCRATCH.replace(name="from-scratch-adamw (changed)",
                                                optimizer="sgd", epochs=3)
    assert presets.resolve_recipe(variant="tiny", epochs=3).name == "from-scratch-adamw"
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, adamw"):
        presets.resolve_recipe(optimizer="rmsprop")
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        presets.resolve_recipe("fast")


def test_mobilenet_v2_trains_with_adamw_even_from_imagenet_weights():
    mobilenet = presets.get("mobilenet_v2")
    assert mobilenet.recipe is presets.FROM_SCRATCH
    assert presets.recipe_for("mobilenet_v2", pretrained=True) is presets.FROM_SCRATCH
