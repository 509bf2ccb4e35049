"""Backend-sensitive behaviour, run on the active Keras backend.

CI runs this file (and the other tests marked `backend`) three times: with
the default TensorFlow backend, with `KERAS_BACKEND=jax` and with
`KERAS_BACKEND=torch`. The tests check building every variant, `fit`,
`evaluate`, `predict_image`, `.keras` save/load and NMS on whichever backend
is active. Files moving between the backends: tests/test_cross_backend.py.
"""

import keras
import numpy as np
import pytest

from keras_ssd.config import SSDConfig
from keras_ssd.losses import SSDLoss
from keras_ssd.models import SSDTiny
from keras_ssd.nms import multiclass_nms

pytestmark = pytest.mark.backend

BACKEND = keras.backend.backend()


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 160, 160, 3)).astype("float32")


def _nms_inputs(seed=0):
    """Boxes in overlapping clusters, some exactly tied scores."""
    rng = np.random.default_rng(seed)
    b, n, c = 2, 300, 3
    centres = rng.uniform(0.2, 0.8, (b, 12, 2))
    pick = rng.integers(0, 12, (b, n))
    cxy = (np.take_along_axis(centres, pick[..., None], axis=1)
           + rng.normal(0, 0.03, (b, n, 2)))
    wh = rng.uniform(0.1, 0.3, (b, n, 2))
    boxes = np.concatenate([cxy - wh / 2, cxy + wh / 2], axis=-1).astype("float32")
    scores = rng.uniform(0, 1, (b, n, c)).astype("float32") ** 3
    scores[:, 20:40] = scores[:, 0:20]  # ties between different boxes
    return boxes, scores


def _targets(model, n, seed=0):
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.targets import TargetEncoder

    rng = np.random.default_rng(seed)
    enc = TargetEncoder(generate_anchors(model.config), num_classes=model.num_classes)
    out = []
    for _ in range(n):
        xy = rng.uniform(0.0, 0.6, (2, 2))
        wh = rng.uniform(0.2, 0.4, (2, 2))
        out.append(enc(np.concatenate([xy, xy + wh], 1).astype("float32"),
                       np.array([0, 1])))
    return np.stack(out)


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = SSDTiny(num_classes=2, class_names=["circle", "square"], weight_decay=5e-4)
    model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss())
    images = _images(4)
    targets = _targets(model, 4)
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights]
    history = model.fit(images, targets, batch_size=2, epochs=2, verbose=0, shuffle=False)
    return model, history, before


def test_fit_trains_on_the_active_backend(trained):
    model, history, before = trained
    losses = history.history["loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and losses[0] > 0
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    assert any(not np.allclose(a, b) for a, b in zip(after, before))
    ev = model.evaluate(_images(4), _targets(model, 4), batch_size=2, verbose=0,
                        return_dict=True)
    assert np.isfinite(ev["loss"]) and ev["loss"] > 0


def test_loss_value_matches_the_numpy_formula_on_the_active_backend():
    # One image, 2 priors: one positive, one negative (mined: 3 x 1 >= 1).
    y_true = np.array([[[0.5, -0.5, 0.0, 2.0, 1.0], [0, 0, 0, 0, 0.0]]], "float32")
    y_pred = np.array([[[0.0, 0.0, 0.0, 0.0, 0.1, 0.7, 0.2],
                        [1.0, 1.0, 1.0, 1.0, 0.3, 0.2, 0.9]]], "float32")

    def ce(logits, k):
        return -(logits[k] - np.log(np.sum(np.exp(logits))))

    loc = 0.5 * 0.25 + 0.5 * 0.25 + 0.0 + (2.0 - 0.5)
    expected = loc + ce(y_pred[0, 0, 4:], 1) + ce(y_pred[0, 1, 4:], 0)
    got = float(keras.ops.convert_to_numpy(SSDLoss()(y_true, y_pred)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_keras_file_round_trip_on_the_active_backend(trained, tmp_path):
    model, _, _ = trained
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = _images(2, seed=3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, training=False)),
        keras.ops.convert_to_numpy(model(images, training=False)), rtol=1e-5, atol=1e-5)
    assert loaded.class_names == ["circle", "square"]
    assert isinstance(loaded.config, SSDConfig)
    assert isinstance(loaded.loss, SSDLoss)


def test_predict_image_on_the_active_backend(trained):
    from keras_ssd.inference.predict import predict_image

    model, _, _ = trained
    image = _images(1, seed=5)[0][:120].astype("uint8")  # 120 x 160, not square
    det = predict_image(model, image, confidence_threshold=0.0, top_k=10)
    assert det["boxes"].shape == (10, 4) and det["labels"].shape == (10,)
    assert np.all(det["boxes"][:, [0, 2]] <= 160) and np.all(det["boxes"][:, [1, 3]] <= 120)
    assert np.all(np.diff(det["scores"]) <= 0)
    assert set(det["names"]) <= {"circle", "square"}


def test_evaluate_on_synthetic_voc_on_the_active_backend(trained, tmp_path):
    from keras_ssd.data import VOCDataset, make_synthetic_voc
    from keras_ssd.evaluation import evaluate

    model, _, _ = trained
    root = make_synthetic_voc(tmp_path / "voc", num_trainval=2, num_test=4,
                              image_size=(96, 80), class_names=("circle", "square"))
    dataset = VOCDataset(root, "test", class_names=["circle", "square"])
    result = evaluate(model, dataset, batch_size=3, verbose=0)
    assert result["num_images"] == 4 and 0.0 <= result["mAP"] <= 1.0


@pytest.mark.parametrize("name, normalization", [
    ("ssd300", "l2"), ("ssd300", "batchnorm"), ("ssd512", None), ("mobilenet_v2", None),
    ("tiny", None)])
def test_every_variant_runs_forward_on_the_active_backend(name, normalization):
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.models import build_model

    keras.utils.set_random_seed(0)
    kwargs = {"normalization": normalization} if normalization else {}
    model = build_model(name, num_classes=3, **kwargs)
    h, w = model.config.image_shape
    x = np.random.default_rng(0).uniform(0, 255, (1, h, w, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (1, len(generate_anchors(model.config)), 4 + 3 + 1)
    assert np.isfinite(out).all()


def test_keras_ops_nms_matches_a_numpy_greedy_reference():
    boxes, scores = _nms_inputs(seed=1)
    out = multiclass_nms(boxes, scores, score_threshold=0.05, iou_threshold=0.45,
                         max_candidates_per_class=400, top_k=1000)
    out = {k: keras.ops.convert_to_numpy(v) for k, v in out.items()}

    def iou(a, b):
        iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
        ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
        inter = iw * ih
        area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
        return inter / (area - inter)

    for i in range(boxes.shape[0]):
        expected = set()
        for c in range(scores.shape[2]):
            order = np.argsort(-scores[i, :, c], kind="stable")
            kept = []
            for j in order:
                if scores[i, j, c] <= 0.05:
                    break
                if all(iou(boxes[i, j], boxes[i, k]) <= 0.45 for k in kept):
                    kept.append(j)
            expected |= {(c, j) for j in kept}
        n = int(out["num_detections"][i])
        assert n == len(expected)
        got = set()
        for box, label in zip(out["boxes"][i, :n], out["labels"][i, :n]):
            j = int(np.argmin(np.abs(boxes[i] - box).sum(axis=1)))
            got.add((int(label), j))
        assert got == expected
