"""Non-square models: feature-map shapes read from the network, SSD300 at
300 x 540, saving, running a model at another size, and a small non-square
tiny model that learns on the synthetic VOC set."""

import keras
import numpy as np
import pytest

from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig

TINY_WIDE = (160, 288)
TINY_WIDE_MAPS = [(20, 36), (10, 18), (5, 9), (3, 5), (1, 3)]


@pytest.fixture(scope="module")
def wide_tiny(make_tiny_model):
    return make_tiny_model(num_classes=2, image_size=TINY_WIDE)


@pytest.mark.backend
def test_tiny_reads_its_map_shapes_from_the_network(wide_tiny):
    config = wide_tiny.config
    assert config.image_size == TINY_WIDE and config.feature_map_shapes == TINY_WIDE_MAPS
    assert wide_tiny.input_shape == (None, 160, 288, 3)
    n = sum(h * w * k for (h, w), k in zip(TINY_WIDE_MAPS, config.boxes_per_cell))
    assert wide_tiny.output_shape == (None, n, 4 + 2 + 1) and config.num_anchors == n
    assert generate_anchors(config).shape == (n, 4)
    out = keras.ops.convert_to_numpy(wide_tiny(np.zeros((1, 160, 288, 3), "float32")))
    assert out.shape == (1, n, 7) and np.isfinite(out).all()
    assert wide_tiny.predict(np.zeros((1, 160, 288, 3), "float32"))["boxes"].shape == (
        1, 200, 4)


def test_ssd300_at_300x540_has_the_conv_arithmetic_maps():
    import keras

    from keras_ssd.models import SSD300

    keras.utils.set_random_seed(0)
    model = SSD300(num_classes=3, image_size=(300, 540))
    assert model.config.feature_map_shapes == [(38, 68), (19, 34), (10, 17), (5, 9), (3, 7),
                                               (1, 5)]
    assert model.config.step_shapes[:4] == [(8.0, 8.0), (16.0, 16.0), (32.0, 32.0),
                                            (64.0, 64.0)]
    out = model(np.zeros((1, 300, 540, 3), "float32"))
    assert tuple(out.shape) == (1, 15606, 8)


def test_a_config_whose_maps_disagree_with_the_network_is_refused():
    from keras_ssd.models import SSDTiny

    wrong = SSDConfig.tiny(2).replace(image_size=TINY_WIDE)  # square maps kept
    with pytest.raises(ValueError, match=r"feature map 0 .* is 20x36.*image_size="):
        SSDTiny(config=wrong)
    with pytest.raises(ValueError, match="image_size"):
        SSDTiny(num_classes=2, image_size=(160, 0))
    with pytest.raises(ValueError, match=r"96x160 is too small for the 'tiny' network"):
        SSDTiny(num_classes=2, image_size=(96, 160))


@pytest.mark.backend
def test_non_square_letterbox_model_saves_and_loads_with_its_geometry(
        make_tiny_model, keras_round_trip):
    from keras_ssd.models import SSD
    from keras_ssd.saving import load_model

    model = make_tiny_model(num_classes=2, image_size=(160, 224), letterbox=True)
    assert model.config.letterbox is True
    x = np.random.default_rng(0).uniform(0, 255, (1, 160, 224, 3)).astype("float32")
    loaded = keras_round_trip(model, x, atol=1e-5, compile=False, load=load_model)
    assert loaded.config == model.config and loaded.config.letterbox is True
    assert isinstance(loaded, SSD)


def test_at_image_size_keeps_the_weights_and_follows_the_maps(make_tiny_model):
    square = make_tiny_model(num_classes=2)
    assert square.at_image_size(160) is square
    wide = square.at_image_size(TINY_WIDE)
    assert wide.config.feature_map_shapes == TINY_WIDE_MAPS
    assert square.config.image_size == 160  # the original is unchanged
    for a, b in zip(square.get_weights(), wide.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert tuple(wide(np.zeros((1, 160, 288, 3), "float32")).shape) == (
        1, wide.config.num_anchors, 7)
    square.get_layer("tiny_conv1").trainable = False
    boxed = square.at_image_size(160, letterbox=True)
    assert boxed is not square and boxed.config.letterbox and boxed.config.image_size == 160
    assert boxed.get_layer("tiny_conv1").trainable is False
    square.get_layer("tiny_conv1").trainable = True


@pytest.mark.backend
def test_small_non_square_tiny_model_learns_on_the_synthetic_set(make_tiny_model,
                                                                 synthetic_voc):
    import keras

    from keras_ssd.data import SSDSequence, VOCDataset
    from keras_ssd.data.synthetic import SYNTHETIC_CLASSES
    from keras_ssd.losses import SSDLoss

    names = list(SYNTHETIC_CLASSES)
    model = make_tiny_model(num_classes=len(names), seed=2, image_size=(160, 224),
                            letterbox=True)
    train = VOCDataset(synthetic_voc, "trainval", class_names=names)
    seq = SSDSequence(train, model.config, batch_size=4, augment=False, seed=0)
    images, targets = seq[0]
    assert images.shape == (4, 160, 224, 3) and targets.shape[1] == model.config.num_anchors
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=SSDLoss(),
                  run_eagerly=True)  # no graph tracing: a few steps, fast
    losses = [float(model.train_on_batch(images, targets, return_dict=True)["loss"])
              for _ in range(6)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.7 * losses[0], losses
