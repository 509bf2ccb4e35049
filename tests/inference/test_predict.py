import math

import keras
import numpy as np
import pytest
from keras import ops
from PIL import Image

from keras_ssd.anchors import generate_anchors
from keras_ssd.config import SSDConfig
from keras_ssd.inference.predict import predict_image, predict_images
from keras_ssd.layers import DecodeDetections
from keras_ssd.models.decoding import DecodingPredictions

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


class FakeSSD(DecodingPredictions, keras.Model):
    """A functional model with raw SSD heads whose `predict` decodes, as `SSD`."""

    def __init__(self):
        size = CONFIG.image_size
        inputs = keras.Input((size, size, 3))
        super().__init__(inputs, _FixedHead()(inputs))
        self._ssd_config = CONFIG
        self.prediction_decoder = DecodeDetections(CONFIG)

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
    assert set(det) == {"boxes", "scores", "labels", "names", "source"}
    assert det["source"] == "array0"
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


def test_the_decoder_is_replaced_only_for_settings_it_cannot_serve(model):
    fresh = FakeSSD()
    own = fresh.prediction_decoder
    image = np.zeros((30, 30, 3), np.uint8)
    for _ in range(3):
        predict_image(fresh, image)  # 0.5 / 0.45 / 200: the decoder's output, cut
    predict_images(fresh, [image, image], confidence_threshold=0.2, top_k=5)
    assert fresh.prediction_decoder is own
    assert predict_image(fresh, image, iou_threshold=0.3)["names"] == ["cat"]
    changed = fresh.prediction_decoder
    assert changed is not own and changed.iou_threshold == 0.3
    assert changed.confidence_threshold == own.confidence_threshold == 0.01
    predict_image(fresh, image, iou_threshold=0.3, top_k=300)
    decoder = fresh.prediction_decoder
    assert decoder.top_k == 300 and decoder.iou_threshold == 0.3


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
    with pytest.raises(ValueError, match="image file not found: one.jpg"):
        predict_images(model, "one.jpg")  # one path: a list of one (here: missing)
    with pytest.raises(ValueError, match="use predict_image for one image"):
        predict_images(model, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="is not a keras-ssd model"):
        predict_image(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Dense(2)]),
                      np.zeros((8, 8, 3)))


def test_predict_images_never_returns_more_than_top_k_from_a_looser_decoder():
    from keras_ssd.models import SSDTiny

    ssd = SSDTiny(num_classes=2)
    images = [np.random.default_rng(i).integers(0, 255, (90 + 10 * i, 120, 3))
              for i in range(3)]
    ssd.prediction_decoder = ssd.prediction_decoder.replace(confidence_threshold=0.0,
                                                            top_k=300)
    loose = ssd.prediction_decoder
    for top_k in (1, 5, 100):
        dets = predict_images(ssd, images, confidence_threshold=0.0, top_k=top_k,
                              batch_size=2)
        assert [len(d["scores"]) for d in dets] == [top_k] * 3
    assert ssd.prediction_decoder is loose
    assert all(len(d["scores"]) == 300 for d in predict_images(
        ssd, images, confidence_threshold=0.0, top_k=300))


# ------------------------------------------------ sources: folders, patterns, URLs
@pytest.fixture(scope="module")
def photos(tmp_path_factory, serve_folder):
    """photos/bright.png (250x90, a "dog" for the fake model), photos/sub/dark.jpg
    (60x80, a "cat"), photos/notes.txt; served over HTTP with a corrupt.png
    and the notes (`url`)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(np.full((90, 250, 3), 200, np.uint8)).save(root / "photos/bright.png")
    Image.fromarray(np.full((80, 60, 3), 30, np.uint8)).save(root / "photos/sub/dark.jpg")
    (root / "photos/notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    served = root / "served"
    served.mkdir()
    (served / "bright.png").write_bytes((root / "photos/bright.png").read_bytes())
    (served / "notes.txt").write_text("not an image")
    return {"root": root, "folder": str(root / "photos"), "url": serve_folder(served)}


def test_predict_images_takes_folders_patterns_urls_and_arrays_in_one_list(model, photos):
    folder, url = photos["folder"], photos["url"]
    sources = [folder, f"{url}/bright.png", f"{folder}/**/*.jpg",
               np.full((40, 30, 3), 30, np.uint8)]
    results = predict_images(model, sources, batch_size=2)
    assert [r["source"] for r in results] == [
        f"{folder}/bright.png", f"{folder}/sub/dark.jpg", f"{url}/bright.png",
        f"{folder}/sub/dark.jpg", "array0"]
    assert [r["names"] for r in results] == [["dog"], ["cat"], ["dog"], ["cat"], ["cat"]]
    for r, (w, h) in zip(results, [(250, 90), (60, 80), (250, 90), (60, 80), (30, 40)]):
        np.testing.assert_allclose(r["boxes"][0], _expected_box(w, h), rtol=1e-5, atol=1e-3)
    # one folder, one URL: the same as a list of its files
    assert [r["source"] for r in predict_images(model, folder)] == [
        f"{folder}/bright.png", f"{folder}/sub/dark.jpg"]
    one = predict_image(model, f"{url}/bright.png")
    assert one["source"] == f"{url}/bright.png" and one["names"] == ["dog"]
    with pytest.raises(ValueError, match="a folder holds many images.*predict_images"):
        predict_image(model, folder)


def _bad_sources(photos, closed_port_url):
    url, root = photos["url"], photos["root"]
    return [
        (f"{url}/missing.png", "HTTP 404 File not found"),
        (f"{url}/notes.txt", "not an image (12 bytes that PIL cannot read)"),
        (f"{url}/bright.png", "larger than the 100 bytes limit"),
        (closed_port_url, "Connection refused"),
        (f"{url}/slow/bright.png", "no answer within 0.5 s"),
        (str(root / "empty"), "no images or videos"),
        (str(root / "photos" / "*.gif"), "no file matches this pattern"),
        (str(root / "gone.jpg"), "image file not found"),
    ]


@pytest.mark.parametrize("case", range(8), ids=[
    "404", "not-an-image", "too-large", "unreachable", "timeout", "empty-folder",
    "no-match", "missing-file"])
def test_predict_images_names_an_unreadable_source_or_skips_it(model, photos, case,
                                                               closed_port_url,
                                                               monkeypatch, caplog):
    import keras_ssd.sources

    source, problem = _bad_sources(photos, closed_port_url)[case]
    monkeypatch.setattr(keras_ssd.sources, "MAX_URL_BYTES", 100)
    good = np.full((20, 20, 3), 200, np.uint8)
    with pytest.raises(ValueError) as raised:
        predict_images(model, [good, source], timeout=0.5)
    message = str(raised.value)
    assert source in message and problem in message, message
    with caplog.at_level("WARNING", logger="keras_ssd.inference"):
        results = predict_images(model, [good, source, good], timeout=0.5,
                                 on_error="skip")
    assert [r["source"] for r in results] == ["array0", "array1"]
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert source in skips[0] and problem in skips[0]
    assert "skipped 1 unreadable input(s) of 3" in skips[-1]


def test_predict_images_skips_a_corrupt_file_in_a_folder(model, tmp_path, caplog):
    Image.fromarray(np.full((10, 10, 3), 200, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a JPEG")
    with pytest.raises(ValueError, match=r"b\.jpg: not a readable image"):
        predict_images(model, str(tmp_path))
    with caplog.at_level("WARNING", logger="keras_ssd.inference"):
        results = predict_images(model, str(tmp_path), on_error="skip")
    assert [r["source"] for r in results] == [str(tmp_path / "a.png")]
    assert any("b.jpg" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="on_error must be one of"):
        predict_images(model, str(tmp_path), on_error="ignore")
