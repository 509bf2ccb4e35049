"""Fixtures shared by the training tests."""

import pytest


@pytest.fixture(scope="session")
def stand_in_ssd(tiny_config):
    """Factory `stand_in_ssd(seed=0)`: a 32-px `SSD` for the 4 synthetic
    classes (88 priors) on a two-map backbone (conv + batch norm + ReLU,
    then a conv). Not a registry variant, so `train_detector` gives it the
    from-scratch recipe; fast to build and to train."""

    def make(seed=0):
        import keras

        from keras_ssd.data import SYNTHETIC_CLASSES

        from keras_ssd.models import SSD

        config = tiny_config(num_classes=4, class_names=list(SYNTHETIC_CLASSES))
        keras.utils.set_random_seed(seed)
        images = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(8, 3, strides=8, padding="same", use_bias=False)(images)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        backbone = keras.Model(images, {"fine": x, "coarse": y}, name="two_maps")
        return SSD(config, backbone=backbone, name="standin")

    return make


@pytest.fixture(scope="session")
def train_set(synthetic_voc):
    """The 12 synthetic trainval images (`synthetic_voc`): 3 steps of 4 per epoch."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    return VOCDataset(synthetic_voc, split="trainval", class_names=SYNTHETIC_CLASSES)
