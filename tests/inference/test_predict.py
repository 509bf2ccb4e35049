import math

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

import keras_ssd.inference.predict as predict_module
from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.inference.model import inference_model
from keras_ssd.inference.predict import get_detector, predict_image, predict_images

pytestmark = pytest.mark.backend

CONFIG = SSDConfig.tiny(num_classes=2, class_names=["cat", "dog"])
ANCHORS = generate_anchors(CONFIG)
PRIOR = 1234  # the one prior the fake network "detects" an object at
LOGIT = math.log(14.0 / 3.0)  # other two logits 0: class score 0.7


class _FixedHead(keras.layers.Layer):
    """Every prior is background except `PRIOR`, whose class is "dog" (1)
    for bright images (mean > 128) and "cat" (0) otherwise, with probability
    0.7 and zero box offsets (so the box is exactly the prior)."""

    def call(self, images):
        n, c = CONFIG.num_anchors, CONFIG.num_classes + 1
        base = np.zeros((n, 4 + c), np.float32)
        base[:, 4] = 10.0  # background
        base[PRIOR, 4] = 0.0
        cat = base.copy()
        cat[PRIOR, 4 + 1] = LOGIT
        dog = base.copy()
        dog[PRIOR, 4 + 2] = LOGIT
        bright = ops.mean(ops.cast(images, "float32"), axis=(1, 2, 3)) > 128.0
        return ops.where(bright[:, None, None], ops.convert_to_tensor(dog),
                         ops.convert_to_tensor(cat))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], CONFIG.num_anchors, 4 + CONFIG.num_classes + 1)


class FakeSSD(keras.Model):
    def __init__(self):
        size = CONFIG.image_size
        inputs = keras.Input((size, size, 3))
        super().__init__(inputs, _FixedHead()(inputs))
        self._ssd_config = CONFIG

    @property
    def config(self):
        return self._ssd_config


@pytest.fixture(scope="module")
def model():
    return FakeSSD()


def _expected_box(width, height):
    cx, cy, w, h = ANCHORS[PRIOR]
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) * ([width, height] * 2)
    box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
    return box


def test_predict_image_maps_box_to_original_pixels_of_a_non_square_image(model):
    image = np.full((90, 250, 3), 200, np.uint8)  # H=90, W=250, bright -> dog
    det = predict_image(model, image)
    assert set(det) == {"boxes", "scores", "labels", "names"}
    assert det["boxes"].shape == (1, 4) and det["boxes"].dtype == np.float32
    np.testing.assert_allclose(det["boxes"][0], _expected_box(250, 90), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(det["scores"], [0.7], atol=1e-5)
    assert det["labels"].tolist() == [1] and det["labels"].dtype == np.int64
    assert det["names"] == ["dog"]


def test_predict_image_confidence_threshold_filters_by_score(model):
    image = np.zeros((64, 64, 3), np.uint8)  # dark -> cat
    assert predict_image(model, image, confidence_threshold=0.69)["names"] == ["cat"]
    none = predict_image(model, image, confidence_threshold=0.71)
    assert none["boxes"].shape == (0, 4) and none["names"] == []
    assert none["scores"].shape == (0,) and none["labels"].shape == (0,)


def test_predict_image_accepts_path_pil_grayscale_and_float_arrays(model, tmp_path):
    array = np.full((120, 80, 3), 30, np.uint8)
    path = tmp_path / "dark.png"
    Image.fromarray(array).save(path)
    expected = _expected_box(80, 120)
    for image in (str(path), path, Image.open(path), array[..., 0], array.astype(np.float64)):
        det = predict_image(model, image)
        assert det["names"] == ["cat"]
        np.testing.assert_allclose(det["boxes"][0], expected, rtol=1e-5, atol=1e-3)


def test_predict_images_keeps_order_across_batches(model):
    sizes = [(50, 60), (300, 100), (77, 77), (160, 160), (20, 400)]
    images = [np.full((h, w, 3), 255 if i % 2 else 0, np.uint8)
              for i, (h, w) in enumerate(sizes)]
    results = predict_images(model, images, batch_size=2)
    assert len(results) == 5
    for i, ((h, w), det) in enumerate(zip(sizes, results)):
        assert det["names"] == (["dog"] if i % 2 else ["cat"])
        np.testing.assert_allclose(det["boxes"][0], _expected_box(w, h), rtol=1e-5, atol=1e-3)
    stacked = np.stack([np.full((40, 40, 3), 255, np.uint8)] * 3)
    assert [d["names"] for d in predict_images(model, stacked)] == [["dog"]] * 3


def test_decoder_is_built_once_per_model_and_settings(model, monkeypatch):
    built = []
    original = predict_module._Detector.__init__

    def counting(self, *args):
        built.append(args[1:])
        original(self, *args)

    monkeypatch.setattr(predict_module._Detector, "__init__", counting)
    fresh = FakeSSD()
    image = np.zeros((30, 30, 3), np.uint8)
    for _ in range(3):
        predict_image(fresh, image)
    predict_images(fresh, [image, image])
    assert len(built) == 1
    assert get_detector(fresh) is get_detector(fresh)
    predict_image(fresh, image, iou_threshold=0.3)
    assert len(built) == 2


def test_predict_image_accepts_an_inference_model(model):
    detector = inference_model(model, confidence_threshold=0.01, iou_threshold=0.45)
    image = np.full((90, 250, 3), 200, np.uint8)
    det = predict_image(detector, image)
    assert det["names"] == ["dog"]
    np.testing.assert_allclose(det["boxes"][0], _expected_box(250, 90), rtol=1e-5, atol=1e-3)
    # Different NMS settings: decoded again from the SSD inside.
    assert predict_image(detector, image, iou_threshold=0.3)["names"] == ["dog"]


def test_predict_image_runs_a_real_tiny_ssd():
    from keras_ssd.models import SSDTiny

    ssd = SSDTiny(num_classes=3, class_names=["a", "b", "c"])
    det = predict_image(ssd, np.random.default_rng(0).integers(0, 255, (100, 140, 3)),
                        confidence_threshold=0.0, top_k=7)
    assert det["boxes"].shape == (7, 4)
    assert np.all(det["boxes"][:, [0, 2]] <= 140) and np.all(det["boxes"] >= 0)
    assert np.all(det["boxes"][:, [1, 3]] <= 100)
    assert np.all(np.diff(det["scores"]) <= 0)
    assert set(det["names"]) <= {"a", "b", "c"}


def test_predict_errors_name_the_problem(model, tmp_path):
    with pytest.raises(ValueError, match="image file not found: .*missing.jpg"):
        predict_image(model, str(tmp_path / "missing.jpg"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        predict_images(model, [np.zeros((8, 8, 3), np.uint8), broken])
    with pytest.raises(ValueError, match="confidence_threshold must lie in"):
        predict_image(model, np.zeros((8, 8, 3)), confidence_threshold=1.5)
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        predict_image(model, np.zeros((8, 8, 3)), top_k=0)
    with pytest.raises(ValueError, match="use predict_images"):
        predict_image(model, [np.zeros((8, 8, 3))])
    with pytest.raises(ValueError, match="use predict_image for one image"):
        predict_images(model, "one.jpg")
    with pytest.raises(ValueError, match="has no SSDConfig"):
        predict_image(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(2)]),
                      np.zeros((8, 8, 3)))


def test_predict_images_never_returns_more_than_top_k_from_a_looser_decoder():
    from keras_ssd.inference import Detector, inference_model
    from keras_ssd.models import SSDTiny

    ssd = SSDTiny(num_classes=2)
    images = [np.random.default_rng(i).integers(0, 255, (90 + 10 * i, 120, 3))
              for i in range(3)]
    loose = inference_model(ssd, confidence_threshold=0.0, top_k=300)
    assert all(len(d["scores"]) > 100 for d in Detector(loose).detect(images))
    for model in (loose, Detector(loose), ssd):
        for top_k in (1, 5, 100):
            dets = predict_images(model, images, confidence_threshold=0.0, top_k=top_k,
                                  batch_size=2)
            assert [len(d["scores"]) for d in dets] == [top_k] * 3
