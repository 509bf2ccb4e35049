import pytest

from keras_ssd import SSDConfig


def test_ssd300_preset_has_caffe_geometry():
    c = SSDConfig.ssd300(20)
    assert c.image_size == 300
    assert c.feature_map_sizes == [38, 19, 10, 5, 3, 1]
    assert c.boxes_per_cell == [4, 6, 6, 6, 4, 4]
    assert c.num_anchors == 8732
    assert c.variances == [0.1, 0.1, 0.2, 0.2]
    assert c.clip == "none"


def test_ssd512_preset_has_24564_priors():
    c = SSDConfig.ssd512(20)
    assert c.feature_map_sizes == [64, 32, 16, 8, 4, 2, 1]
    assert c.boxes_per_cell == [4, 6, 6, 6, 6, 4, 4]
    assert c.num_anchors == 24564


def test_dict_and_yaml_round_trip(tmp_path):
    c = SSDConfig.ssd300(3, class_names=["cat", "dog", "bird"])
    assert SSDConfig.from_dict(c.to_dict()) == c
    assert SSDConfig.from_yaml(c.to_yaml()) == c
    path = tmp_path / "c.yaml"
    c.to_yaml(path)
    assert SSDConfig.from_yaml(str(path)) == c
    assert SSDConfig.from_yaml(path) == c


def test_yaml_loading_is_safe():
    text = "!!python/object/apply:os.system ['echo hacked']\n"
    with pytest.raises(ValueError, match="YAML"):
        SSDConfig.from_yaml(text)


def test_missing_yaml_file_is_named():
    with pytest.raises(ValueError, match="not found: nowhere.yaml"):
        SSDConfig.from_yaml("nowhere.yaml")


@pytest.mark.parametrize(
    "change, field",
    [
        ({"steps": [8, 16]}, "steps"),
        ({"min_sizes": [30, 60, 111, 162, 213, -1]}, "min_sizes"),
        ({"max_sizes": [60, 111, 162, 213, 264, 0]}, "max_sizes"),
        ({"feature_map_sizes": [38, 19, 10, 5, 3, 0]}, "feature_map_sizes"),
        ({"image_size": 0}, "image_size"),
        ({"num_classes": 0}, "num_classes"),
        ({"variances": [0.1, 0.1, 0.2]}, "variances"),
        ({"aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [-2]]}, "aspect_ratios"),
        ({"offset": 2.0}, "offset"),
        ({"class_names": ["a", "b"]}, "class_names"),
    ],
)
def test_invalid_values_name_the_field(change, field):
    d = SSDConfig.ssd300(20).to_dict()
    d.update(change)
    with pytest.raises(ValueError, match=field):
        SSDConfig.from_dict(d)


def test_unknown_and_missing_keys_are_reported():
    d = SSDConfig.ssd300(20).to_dict()
    d["anchor_scale"] = 4
    with pytest.raises(ValueError, match="unknown keys: anchor_scale"):
        SSDConfig.from_dict(d)
    d = SSDConfig.ssd300(20).to_dict()
    del d["steps"]
    with pytest.raises(ValueError, match="missing keys: steps"):
        SSDConfig.from_dict(d)


def test_names_default_when_no_class_names():
    assert SSDConfig.ssd300(2).names == ["class_0", "class_1"]
    assert SSDConfig.ssd300(2, ["a", "b"]).names == ["a", "b"]


def test_mobilenet_v2_preset_has_3234_priors():
    c = SSDConfig.mobilenet_v2(20)
    assert c.image_size == 320 and c.boxes_per_cell == [6] * 6
    assert c.num_anchors == 3234
