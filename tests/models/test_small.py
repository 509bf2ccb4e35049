"""The small model: the default network for training from scratch."""

import numpy as np
import pytest

import keras

from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.losses import SSDLoss
from keras_ssd.models import SSD, SSDSmall, build_model


def _images(n, height, width=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, height, width or height, 3)).astype("float32")


def _source_sizes(model):
    return [model.get_layer(n + "_mbox_loc").output.shape[1] for n in model.source_names]


@pytest.fixture(scope="module")
def small():
    return SSDSmall(num_classes=3, class_names=["cat", "dog", "bird"])


def test_small_model_has_six_maps_and_3458_priors(small):
    assert small.output_shape == (None, 3458, 8)
    assert _source_sizes(small) == small.config.feature_map_sizes == [24, 12, 6, 3, 2, 1]
    assert small.config.num_anchors == 3458 == len(generate_anchors(small.config))
    assert small.architecture == "small"
    # about 1 M parameters: between the tiny model (0.58 M) and SSDLite
    assert 0.8e6 < small.count_params() < 1.2e6


def test_first_source_sees_the_coarser_map_through_the_fusion(small):
    """The fine map's output changes when only the 12-cell map's reduction
    changes: the top-down path is wired into the first source."""
    probe = keras.Model(small.input, small.get_layer("small_fuse_relu").output)
    x = _images(1, 192, seed=1)
    before = keras.ops.convert_to_numpy(probe(x, training=False))
    layer = small.get_layer("small_fuse_reduce")
    kernel, bias = layer.get_weights()
    try:
        layer.set_weights([kernel, bias + 5.0])
        after = keras.ops.convert_to_numpy(probe(x, training=False))
    finally:
        layer.set_weights([kernel, bias])
    assert np.abs(after - before).max() > 1e-3


@pytest.mark.parametrize("side, maps", [(256, [32, 16, 8, 4, 2, 1]),
                                        (200, [25, 13, 7, 4, 2, 1])])
def test_small_model_builds_at_other_input_sizes(side, maps):
    """The fitted input size may be any side; odd maps crop the upsampled one."""
    model = build_model("small", num_classes=2, image_size=side)
    assert model.config.feature_map_sizes == maps == _source_sizes(model)
    y = keras.ops.convert_to_numpy(model(_images(1, side), training=False))
    assert y.shape == (1, model.config.num_anchors, 4 + 3)
    assert np.isfinite(y).all()


def test_small_model_save_and_load_keeps_outputs(tmp_path):
    model = SSDSmall(num_classes=2, class_names=["a", "b"])
    path = tmp_path / "small.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is SSD and loaded.architecture == "small"
    assert loaded.config == model.config and loaded.get_config() == model.get_config()
    x = _images(2, 192, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x, training=False)),
                                  keras.ops.convert_to_numpy(model(x, training=False)))


def test_small_model_refuses_l2_normalization_by_name():
    with pytest.raises(ValueError, match="small backbone.*normalization='none'"):
        SSDSmall(num_classes=2, normalization="l2")


def test_small_model_trains_one_step_to_a_finite_loss():
    model = SSDSmall(num_classes=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SSDLoss())
    x = _images(2, 192, seed=5)
    y = np.zeros((2, model.config.num_anchors, 5), "float32")  # offsets, label (0: background)
    y[:, 100, 4] = 1.0  # one positive per image
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
