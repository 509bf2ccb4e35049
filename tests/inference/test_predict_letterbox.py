"""Non-square and letterboxed prediction and evaluation: the detector renders
images as the model was trained (its config's letterbox), and boxes come back
in the original image's pixels in both modes."""

import numpy as np
import pytest

from keras_ssd.data import MEAN_RGB, letterbox_geometry, source_boxes
from keras_ssd.evaluation import predict_dataset
from keras_ssd.inference import load_for_model, predict_images, to_pixels
from keras_ssd.inference.pixels import load_batch

INPUT = (160, 224)
#: (width, height) of the test pictures: wide, tall, square, odd.
SIZES = [(400, 200), (120, 300), (160, 160), (333, 101)]


def picture(width, height):
    """Grey with one white rectangle; returns `(image, box)`."""
    box = np.array([0.2 * width, 0.3 * height, 0.7 * width, 0.8 * height]).round()
    image = np.full((height, width, 3), 40, np.uint8)
    x0, y0, x1, y1 = box.astype(int)
    image[y0:y1, x0:x1] = 255
    return image, box


class WhiteBoxes:
    """Records-interface dataset of `picture`s."""

    class_names = ("box",)

    def __init__(self):
        self.records = []
        for i, (w, h) in enumerate(SIZES):
            _, box = picture(w, h)
            self.records.append({"image_id": str(i), "width": w, "height": h,
                                 "boxes": box[None].astype("float32"),
                                 "labels": np.zeros(1, "int64"),
                                 "difficult": np.zeros(1, bool)})

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def load_image(self, i):
        return picture(self.records[i]["width"], self.records[i]["height"])[0]


def oracle(images):
    """A stand-in network: finds the white rectangle in each rendered input
    and answers with it, normalised to the input (as the decoder does)."""
    images = np.asarray(images)
    b, h, w = images.shape[:3]
    boxes = np.zeros((b, 1, 4), "float32")
    for j in range(b):
        ys, xs = np.nonzero(images[j].min(axis=2) > 200)
        if len(xs):
            boxes[j, 0] = [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]
    return {"boxes": boxes, "scores": np.full((b, 1), 0.9, "float32"),
            "labels": np.zeros((b, 1), "int32"), "num_detections": np.ones((b,), "int32")}


@pytest.fixture(scope="module", params=[False, True], ids=["stretch", "letterbox"])
def model(request, make_tiny_model):
    return make_tiny_model(num_classes=1, image_size=INPUT, letterbox=request.param)


@pytest.fixture
def finder(model, make_oracle_model):
    """`oracle` as a model with `model`'s config (input size, letterbox)."""
    return make_oracle_model(model.config, oracle, top_k=1)


def _tolerance(width, height, letterbox):
    if letterbox:
        sx, sy, _, _ = letterbox_geometry(width, height, INPUT)
        return 1.01 / min(sx, sy)
    return 1.01 * max(width / INPUT[1], height / INPUT[0])


def test_images_are_rendered_as_the_model_was_trained(model):
    assert model.config.image_shape == INPUT
    image, _ = picture(400, 200)
    batch, sizes = load_batch([image], model.config.image_shape, model.config.letterbox)
    assert batch.shape == (1,) + INPUT + (3,) and sizes == [(400, 200)]
    expected, _ = load_for_model(image, INPUT, letterbox=model.config.letterbox)
    np.testing.assert_array_equal(batch[0], expected)
    top_rows = batch[0, :10].astype(np.uint8)
    assert np.all(top_rows == np.asarray(MEAN_RGB, np.uint8)) == model.config.letterbox


def test_predict_maps_boxes_back_to_the_original_pixels(model, finder):
    images, boxes = zip(*(picture(w, h) for w, h in SIZES))
    dets = predict_images(finder, list(images), batch_size=3)
    for (w, h), box, det in zip(SIZES, boxes, dets):
        assert det["boxes"].shape == (1, 4) and det["names"] == ["class_0"]
        np.testing.assert_allclose(det["boxes"][0], box,
                                   atol=_tolerance(w, h, model.config.letterbox))


def test_evaluation_renders_and_maps_back_as_prediction_does(model, finder):
    dataset = WhiteBoxes()
    detections = predict_dataset(finder, dataset, batch_size=2, verbose=0)
    for (w, h), record, det in zip(SIZES, dataset.records, detections):
        np.testing.assert_allclose(det["boxes"][0], record["boxes"][0],
                                   atol=_tolerance(w, h, model.config.letterbox))


def test_to_pixels_undoes_the_letterbox():
    out = {"boxes": np.array([[[0.25, 0.25, 0.75, 0.75]]], "float32"),
           "scores": np.array([[0.9]], "float32"), "labels": np.array([[0]])}
    # 400x200 in 160x224: scale 0.56, 24 rows of padding top and bottom.
    det = to_pixels(out, 0, 400, 200, input_size=INPUT, letterbox=True)
    expected = source_boxes(out["boxes"][0], 400, 200, INPUT, letterbox=True)
    np.testing.assert_allclose(det["boxes"], expected)
    np.testing.assert_allclose(det["boxes"][0], [100, (40 - 24) / 0.56, 300,
                                                 (120 - 24) / 0.56], rtol=1e-5)
    stretched = to_pixels(out, 0, 400, 200)
    np.testing.assert_allclose(stretched["boxes"][0], [100, 50, 300, 150])
    with pytest.raises(ValueError, match="input_size"):
        to_pixels(out, 0, 400, 200, letterbox=True)


def test_a_saved_model_keeps_the_letterbox(make_tiny_model, tmp_path):
    from keras_ssd.saving import load_model

    model = make_tiny_model(num_classes=1, image_size=INPUT, letterbox=True)
    path = str(tmp_path / "detector.keras")
    model.save(path)
    loaded = load_model(path, compile=False)
    assert loaded.config == model.config and loaded.config.letterbox is True
    assert loaded.prediction_decoder.config == model.config
