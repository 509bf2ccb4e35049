"""Files saved by keras-ssd 0.1 (SSDs with WinogradConv2D layers) load as
plain Conv2D models through keras_ssd.load_model."""

import pathlib
import zipfile

import h5py
import numpy as np
import pytest

import keras

import keras_ssd
from keras_ssd.accel.legacy_files import load_weights, plain_conv_copy, v0_1_renames
from keras_ssd.accel.winograd_conv import WinogradConv2D

pytestmark = pytest.mark.backend

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
V0_1 = FIXTURES / "tiny_v0_1.keras"


def _groups(path):
    with zipfile.ZipFile(path) as archive:
        with archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as h5:
            groups = []
            h5.visit(groups.append)
    return groups


def test_a_v0_1_file_loads_as_plain_conv2d_and_reproduces_its_output(tmp_path):
    io = np.load(FIXTURES / "tiny_v0_1_io.npz")
    model = keras_ssd.load_model(V0_1)
    assert isinstance(model, keras_ssd.SSD)
    assert model.class_names == ["a", "b", "c"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(type(layer) is keras.layers.Conv2D for layer in convs)
    assert not any(isinstance(layer, WinogradConv2D) for layer in model.layers)
    assert model.compiled and model.optimizer is not None
    y = model.predict_on_batch(io["x"].astype("float32"))
    np.testing.assert_allclose(y, io["y"], rtol=0, atol=1e-4)
    # Saved again, it is a file of today: no renaming needed, same output.
    path = tmp_path / "again.keras"
    model.save(path)
    assert v0_1_renames(path) == {}
    assert not any("winograd" in g for g in _groups(path))
    again = keras_ssd.load_model(path)
    np.testing.assert_allclose(again.predict_on_batch(io["x"].astype("float32")), io["y"],
                               rtol=0, atol=1e-4)


def test_the_renaming_moves_every_convolution_and_cleans_up():
    renames = v0_1_renames(V0_1)
    stored = {g.split("/")[1] for g in _groups(V0_1) if g.count("/") == 1}
    olds = {old.split("/")[1] for old in renames}
    assert olds == {g for g in stored if g.startswith(("conv2d", "winograd_conv2d"))}
    assert len(set(renames.values())) == len(renames)
    with plain_conv_copy(V0_1) as copy:
        assert copy != V0_1 and not any("winograd" in g for g in _groups(copy))
        folder = pathlib.Path(copy).parent
    assert not folder.exists()
    with plain_conv_copy(FIXTURES / "tiny_v0_1_io.npz") as same:  # not a .keras file
        assert same == FIXTURES / "tiny_v0_1_io.npz"


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_keras_own_loader_names_the_way_out():
    with pytest.raises(ValueError, match=r"saved by keras-ssd 0\.1.*keras_ssd\.load_model"):
        keras.saving.load_model(V0_1)


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_a_v0_1_weights_file_loads_into_a_plain_model(tmp_path):
    import json

    io = np.load(FIXTURES / "tiny_v0_1_io.npz")
    weights = tmp_path / "v0_1.weights.h5"
    with zipfile.ZipFile(V0_1) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
        config = json.loads(archive.read("config.json"))["config"]
    model = keras_ssd.SSD.from_config(config)
    with pytest.raises(ValueError, match=r"legacy_files\.load_weights"):
        model.load_weights(weights)
    model = keras_ssd.SSD.from_config(config)
    assert load_weights(model, weights) is model
    np.testing.assert_allclose(model.predict_on_batch(io["x"].astype("float32")), io["y"],
                               rtol=0, atol=1e-4)
    plain = tmp_path / "plain.weights.h5"
    model.save_weights(plain)
    again = load_weights(keras_ssd.SSD.from_config(config), plain)  # today's file: as is
    np.testing.assert_allclose(again.predict_on_batch(io["x"].astype("float32")), io["y"],
                               rtol=0, atol=1e-4)


def test_files_with_a_users_own_winograd_layers_are_left_alone(tmp_path):
    inputs = keras.Input((12, 12, 8))
    outputs = WinogradConv2D(16, 3, padding="same", winograd_tile=2, name="w")(inputs)
    outputs = keras.layers.Conv2D(4, 1, name="c")(outputs)
    model = keras.Model(inputs, outputs)
    path = tmp_path / "w.keras"
    model.save(path)
    assert v0_1_renames(path) == {}
    loaded = keras_ssd.load_model(path)
    assert isinstance(loaded.get_layer("w"), WinogradConv2D)
    x = np.random.default_rng(5).normal(size=(1, 12, 12, 8)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), rtol=0, atol=1e-5)
