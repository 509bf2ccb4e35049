"""`keras-ssd predict --preset ssdlite320_coco` through the real loading path,
offline: a checkpoint in torchvision's SSDLite layout (random weights, the
"person" logit raised), written by the test where a user puts a file by
hand (`$KERAS_SSD_CACHE_DIR/pretrained/<file name>`), is hash-checked,
read by the restricted reader, converted, cached as `.keras` and run on
photos. Only the published SHA-256 prefix of the preset is swapped for the
test file's (the real file cannot be downloaded here)."""

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest

from keras_ssd.presets import pretrained as registry
from keras_ssd.models import pretrained
from keras_ssd.models.convert.torchvision_ssdlite import layer_table

PRESET = "ssdlite320_coco"


def ssdlite_state_dict(person_logit=6.0, seed=0):
    """Random tensors in torchvision's SSDLite320 layout (91 logits), every
    prior's "person" logit (COCO id 1) raised so that detections appear."""
    rng = np.random.default_rng(seed)
    state = {}
    for _, _, tensors in layer_table(91):
        for key, shape in tensors:
            if key.endswith("running_var"):
                state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
            else:
                fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else 1
                state[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(
                    np.float32)
    for i in range(6):
        bias = state[f"head.classification_head.module_list.{i}.1.bias"].reshape(6, 91)
        bias[:, 1] += person_logit
    return state


@pytest.fixture
def ssdlite_file_by_hand(tmp_path, monkeypatch, save_pth):
    monkeypatch.setenv(pretrained.CACHE_ENV, str(tmp_path / "cache"))
    path = pretrained.checkpoint_path(PRESET)
    os.makedirs(os.path.dirname(path))
    save_pth(path, ssdlite_state_dict())
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    published = registry.PRETRAINED[PRESET]
    monkeypatch.setitem(registry.PRETRAINED, PRESET,
                        dataclasses.replace(published, sha256_prefix=digest[:8]))
    return path


def test_predict_with_the_ssdlite_preset_converts_the_file_and_finds_people(
        run_cli, ssdlite_file_by_hand, synthetic_voc, tmp_path):
    images = os.path.join(synthetic_voc, "JPEGImages")
    out = tmp_path / "predictions"
    code, stdout, err = run_cli("predict", "--preset", PRESET, images, "--out", str(out),
                                "--threshold", "0.3")
    assert code == 0, err
    assert os.path.isfile(pretrained.converted_path(PRESET))  # converted once, cached
    data = json.loads((out / "detections.json").read_text())
    assert data["preset"] == PRESET and len(data["images"]) == len(os.listdir(images))
    found = [d for rec in data["images"] for d in rec["detections"]]
    names = [d["name"] for d in found]
    # the raised logit wins most priors (random weights let a few others through)
    assert names.count("person") > len(names) / 2
    assert all(d["score"] >= 0.3 and d["label"] == coco_label(d["name"]) for d in found)
    boxes = np.array([d["box"] for d in found])
    assert np.all(boxes >= 0) and np.all(boxes <= 160)  # clipped to the 160 px photos


def coco_label(name):
    from keras_ssd.models.convert import COCO_CLASS_NAMES

    return COCO_CLASS_NAMES.index(name)


def test_predict_refuses_a_file_by_hand_whose_hash_is_not_the_published_one(
        run_cli, assert_one_line_error, ssdlite_file_by_hand, synthetic_voc,
        monkeypatch):
    published = registry.PRETRAINED[PRESET]
    monkeypatch.setitem(registry.PRETRAINED, PRESET,
                        dataclasses.replace(published, sha256_prefix="a79551df"))
    code, _, err = run_cli("predict", "--preset", PRESET,
                           os.path.join(synthetic_voc, "JPEGImages"))
    assert_one_line_error(code, err, ssdlite_file_by_hand, "a79551df")
    assert not os.path.exists(pretrained.converted_path(PRESET))
