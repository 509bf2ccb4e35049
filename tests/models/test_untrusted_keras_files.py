"""Untrusted `.keras` files: declared sizes are checked before Keras reads the
archive, loading reads nothing but the archive, and the cached converted
preset model is returned only when its recorded hash matches."""

import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_pretrained import Counter, cache, fake_preset, no_network  # noqa: F401

from keras_ssd.models.pretrained import converted_path, load_pretrained
from keras_ssd.saving import KerasFileError, load_model


@pytest.fixture(scope="module")
def saved_tiny(make_tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    make_tiny_model(num_classes=2).save(path)
    return path


def rewrite(source, target, change, compression=zipfile.ZIP_STORED):
    """Copy the archive `source` to `target`, entry bytes through
    `change(name, data)`."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", compression) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, change(info.filename, src.read(info.filename)))
    return target


def test_a_config_that_inflates_to_gigabytes_is_refused_before_keras_reads_it(
    saved_tiny, tmp_path
):
    def pad(name, data):
        if name != "config.json":
            return data
        return data[:-1] + b', "pad": "' + b" " * (48 << 20) + b'"}'

    path = rewrite(saved_tiny, tmp_path / "bomb.keras", pad, zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("config.json").compress_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(
            KerasFileError,
            match=r"bomb\.keras: its entry 'config\.json' "
            r"declares \d+ bytes",
        ):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_an_entry_inflating_a_hundredfold_is_refused(saved_tiny, tmp_path):
    def pad(name, data):
        return b"\0" * (8 << 20) if name == "model.weights.h5" else data

    path = rewrite(saved_tiny, tmp_path / "zeros.keras", pad, zipfile.ZIP_DEFLATED)
    with pytest.raises(KerasFileError, match=r"'model\.weights\.h5' would inflate"):
        load_model(path)


@pytest.mark.parametrize("backbone_weights", ["imagenet", "/nonexistent/weights.h5"])
def test_loading_never_fetches_or_reads_backbone_weights_named_in_the_config(
    saved_tiny, tmp_path, monkeypatch, backbone_weights
):
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError("loading a .keras file touched the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr("keras.utils.get_file", refuse)

    def point(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        config["config"]["backbone_weights"] = backbone_weights
        return json.dumps(config).encode()

    path = rewrite(saved_tiny, tmp_path / "weights.keras", point)
    model = load_model(path, compile=False)
    original = load_model(saved_tiny, compile=False)
    for a, b in zip(model.get_weights(), original.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_another_model_placed_as_the_cached_preset_is_not_returned(
    tmp_path, cache, make_tiny_model  # noqa: F811
):
    preset = fake_preset(tmp_path)
    converter = Counter(make_tiny_model)
    load_pretrained(preset, converter=converter, verbose=False)
    target = converted_path(preset)
    assert os.path.isfile(target + ".sha256")
    make_tiny_model(num_classes=2, seed=99).save(target)  # the same name, another model
    with pytest.warns(UserWarning, match=r"its SHA-256 \w+ is not the \w+ recorded"):
        model = load_pretrained(
            preset, converter=converter, fetch=no_network, verbose=False
        )
    assert len(converter.calls) == 2
    assert model.config.num_classes == converter.make().config.num_classes


def test_a_cached_model_without_a_recorded_hash_is_converted_again(
    tmp_path, cache, make_tiny_model  # noqa: F811
):
    preset = fake_preset(tmp_path)
    converter = Counter(make_tiny_model)
    load_pretrained(preset, converter=converter, verbose=False)
    os.remove(converted_path(preset) + ".sha256")
    with pytest.warns(UserWarning, match="no SHA-256 recorded"):
        load_pretrained(preset, converter=converter, fetch=no_network, verbose=False)
    assert len(converter.calls) == 2
    load_pretrained(preset, converter=converter, fetch=no_network, verbose=False)
    assert len(converter.calls) == 2  # recorded again, then trusted
