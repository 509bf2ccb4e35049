"""lufficc/SSD's SSD512 checkpoints without torch: a file in its layout
(`{"model": state_dict, ...}`, written by the minimal writer of
tests/test_pth.py) converts weight for weight into keras-ssd's `ssd512`,
its priors are its own (last max size 537.65), sniffing tells it from
lufficc's SSD300, and bad keys are named. The equality with lufficc's
network is tests/models/test_convert_ssd512_equality.py."""

import numpy as np
import pytest

from keras_ssd.models.convert import (
    SOURCES, ConversionError, convert_checkpoint, convert_state_dict, sniff_source,
)
from keras_ssd.models.convert.lufficc512 import layer_table

from test_convert_checkpoints import random_state_dict as ssd300_state_dict


def random_state_dict(num_outputs=21, seed=0):
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(shape, dtype=np.float32)
            for _, _, tensors in layer_table(num_outputs) for key, shape in tensors}


def test_a_lufficc_ssd512_file_converts_weight_for_weight(tmp_path, save_pth):
    state = random_state_dict()
    path = save_pth(tmp_path / "vgg_ssd512_voc0712.pth",
                    {"model": state, "iteration": 120000,
                     "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}})
    model = convert_checkpoint(path)
    spec = SOURCES["lufficc512"]
    assert model.architecture == "ssd512" and model.output_shape == (None, 24564, 25)
    assert model.class_names[14] == "person" and model.normalization == "l2"
    assert model.config.max_sizes[-1] == 537.65 and model.config.clip == "cxcywh"
    assert model.postprocessing == spec.postprocessing
    for layer, kind, tensors in layer_table(21):
        got = model.get_layer(layer).get_weights()
        for g, (key, _) in zip(got, tensors):
            want = state[key].transpose(2, 3, 1, 0) if state[key].ndim == 4 else state[key]
            assert np.array_equal(g, want), key


def test_sniffing_tells_lufficcs_ssd512_from_its_ssd300():
    assert sniff_source(random_state_dict()) == "lufficc512"
    assert sniff_source(ssd300_state_dict("lufficc", 21)) == "lufficc"


def test_a_missing_or_mis_shaped_key_is_named():
    state = random_state_dict()
    del state["backbone.extras.9.bias"]
    with pytest.raises(ConversionError, match=r"missing keys: 'backbone.extras.9.bias'"):
        convert_state_dict(state, "lufficc512")
    state = random_state_dict()
    state["backbone.extras.9.weight"] = np.zeros((256, 128, 3, 3), np.float32)
    with pytest.raises(ConversionError, match=r"'backbone.extras.9.weight' \(keras-ssd layer "
                                              r"conv10_2\) has shape \(256, 128, 3, 3\), "
                                              r"expected \(256, 128, 4, 4\)"):
        convert_state_dict(state, "lufficc512")
