"""Fixtures shared by the training tests."""

import pytest


@pytest.fixture(scope="session")
def stand_in_ssd(tiny_config):
    """Factory `stand_in_ssd(seed=0)`: a 32-px functional 'SSD' for the 4
    synthetic classes (88 priors): conv + batch norm + ReLU, then a conv and
    biased 1x1 heads. No `architecture`, so `train_detector` gives it the
    from-scratch recipe; fast to build and to train."""

    def make(seed=0):
        import keras

        from keras_ssd.data import SYNTHETIC_CLASSES

        config = tiny_config(num_classes=4, class_names=list(SYNTHETIC_CLASSES))
        keras.utils.set_random_seed(seed)
        per = 4 + config.num_classes + 1
        images = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(8, 3, strides=8, padding="same", use_bias=False)(images)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        y = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
        heads = [keras.layers.Reshape((-1, per))(keras.layers.Conv2D(k * per, 1)(f))
                 for f, k in zip((x, y), config.boxes_per_cell)]
        model = keras.Model(images, keras.layers.Concatenate(axis=1)(heads), name="standin")
        model.config = config
        return model

    return make


@pytest.fixture(scope="session")
def train_set(synthetic_voc):
    """The 12 synthetic trainval images (`synthetic_voc`): 3 steps of 4 per epoch."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    return VOCDataset(synthetic_voc, split="trainval", class_names=SYNTHETIC_CLASSES)
