"""`SSD(config, backbone=...)`: an SSD on a backbone the package does not
know (a Keras Applications network), trained, saved and loaded."""

import keras
import numpy as np
import pytest

from keras_ssd.config import SSDConfig
from keras_ssd.models import SSD

#: EfficientNetB0's stride-8, 16 and 32 maps at 64 px: 8, 4 and 2 cells.
CONFIG = SSDConfig(num_classes=4, image_size=64, feature_map_sizes=[8, 4, 2],
                   steps=[8, 16, 32], min_sizes=[8, 20, 40], max_sizes=[20, 40, 64],
                   aspect_ratios=[[2], [2, 3], [2]])


def efficientnet_features():
    """EfficientNetB0 (no weights; it rescales 0..255 images itself) with
    its stride-8, 16 and 32 maps as named outputs (64 px keeps the test
    short; the backbone-agnostic parts also run under JAX, with the small
    backbones below)."""
    base = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                             input_shape=(64, 64, 3))
    names = {"p3": "block3b_add", "p4": "block5c_add", "p5": "top_activation"}
    return keras.Model(base.input, {k: base.get_layer(v).output for k, v in names.items()},
                       name="efficientnet_features")


def test_an_ssd_on_a_keras_applications_backbone_trains_saves_and_loads(synthetic_voc,
                                                                        keras_round_trip):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset
    from keras_ssd.training.fit import train_detector

    keras.utils.set_random_seed(0)
    model = SSD(CONFIG.replace(class_names=list(SYNTHETIC_CLASSES)),
                backbone=efficientnet_features())
    assert model.architecture == "backbone" and model.preprocessing == "none"
    assert model.output_shape == (None, CONFIG.num_anchors, 4 + 4 + 1)
    assert {"p3_mbox_conf", "p4_mbox_conf", "p5_mbox_conf"} <= {
        layer.name for layer in model.layers}
    train = VOCDataset(synthetic_voc, "trainval", class_names=SYNTHETIC_CLASSES)
    before = [w.copy() for w in model.backbone.get_weights()]
    history = train_detector(model, train, epochs=1, batch_size=4, workers=0, verbose=0,
                             augment=False, learning_rate=1e-3).history
    assert np.isfinite(history["loss"]).all()
    assert history["conf_loss"][0] + history["loc_loss"][0] == pytest.approx(
        history["loss"][0], rel=1e-5)
    assert any(not np.array_equal(a, b)
               for a, b in zip(before, model.backbone.get_weights()))  # it learnt

    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    loaded = keras_round_trip(model, x, atol=1e-5)
    assert type(loaded) is SSD and loaded.backbone.name == "efficientnet_features"
    assert loaded.config == model.config
    a, b = loaded.predict(x), model.predict(x)
    np.testing.assert_array_equal(a["labels"], b["labels"])
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-5)


@pytest.mark.backend
def test_a_backbone_with_list_outputs_takes_its_output_layer_names():
    images = keras.Input((None, None, 3))  # any size: at_image_size can change it
    fine = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="fine")(images)
    coarse = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="coarse")(fine)
    config = SSDConfig(num_classes=2, image_size=32, feature_map_sizes=[4, 2],
                       steps=[8, 16], min_sizes=[8, 16], max_sizes=[16, 24],
                       aspect_ratios=[[2], [2, 3]])
    model = SSD(config, backbone=keras.Model(images, [fine, coarse]))
    assert model.get_layer("fine_mbox_loc") is not None
    again = SSD.from_config(model.get_config())
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    wide = model.at_image_size((32, 64))
    assert wide.config.feature_map_shapes == [(4, 8), (2, 4)]
    for a, b in zip(wide.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.backend
def test_a_bad_backbone_is_a_clear_error():
    images = keras.Input((32, 32, 3))
    flat = keras.Model(images, keras.layers.GlobalAveragePooling2D()(images))
    with pytest.raises(ValueError, match="must output feature maps"):
        SSD(CONFIG, backbone=flat)
    with pytest.raises(ValueError, match="backbone must be a keras.Model"):
        SSD(CONFIG, backbone="efficientnet")
    with pytest.raises(ValueError, match="backbone_weights is for the registry"):
        SSD(CONFIG, backbone=efficientnet_features(), backbone_weights="imagenet")
    maps = keras.layers.Conv2D(4, 3, strides=8, padding="same")(images)
    with pytest.raises(ValueError, match="takes 32x32 images, the model's input is 64x64"):
        SSD(CONFIG, backbone=keras.Model(images, {"only": maps}))
    anysize = keras.Input((None, None, 3))
    maps = keras.layers.Conv2D(4, 3, strides=8, padding="same")(anysize)
    with pytest.raises(ValueError, match="produces 1 feature maps"):
        SSD(CONFIG, backbone=keras.Model(anysize, {"only": maps}))
