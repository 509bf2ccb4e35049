"""Backend-sensitive behaviour, run on the active Keras backend.

CI runs this file (and `tests/test_distribute.py`) twice: with the default
TensorFlow backend and with `KERAS_BACKEND=jax`. The in-process tests check
building, `fit`, `evaluate`, `predict_image`, `.keras` save/load and NMS on
whichever backend is active; the cross-backend test (run from the
TensorFlow process) starts a JAX process to check that `.keras` files move
between the backends in both directions and that the `keras.ops` NMS under
JAX returns the same detections as TensorFlow's XLA fast path.
"""

import os
import subprocess
import sys
import textwrap

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
    ev = model.evaluate(_images(4), _targets(model, 4), batch_size=2, verbose=0)
    assert np.isfinite(ev) and ev > 0


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


# ------------------------------------------------------------ cross-backend
JAX_SIDE = textwrap.dedent('''
    import json, os, sys
    import numpy as np
    import keras
    import keras_ssd
    from keras_ssd.models import SSDTiny
    from keras_ssd.nms import multiclass_nms
    d = sys.argv[1]
    assert keras.backend.backend() == "jax"
    images = np.load(os.path.join(d, "images.npy"))
    # 1. a .keras file saved under TensorFlow
    tf_model = keras.saving.load_model(os.path.join(d, "tf_model.keras"))
    np.save(os.path.join(d, "jax_out_of_tf_model.npy"),
            keras.ops.convert_to_numpy(tf_model(images)))
    # 2. a .keras file saved under JAX (after one fit step)
    keras.utils.set_random_seed(2)
    model = SSDTiny(num_classes=2, class_names=["a", "b"])
    model.compile(optimizer="sgd", loss=keras_ssd.SSDLoss())
    model.fit(images, np.load(os.path.join(d, "targets.npy")), batch_size=2, verbose=0)
    model.save(os.path.join(d, "jax_model.keras"))
    np.save(os.path.join(d, "jax_out.npy"), keras.ops.convert_to_numpy(model(images)))
    # 3. NMS with keras.ops under JAX
    data = np.load(os.path.join(d, "nms_in.npz"))
    out = multiclass_nms(data["boxes"], data["scores"], score_threshold=0.01,
                         iou_threshold=0.45, max_candidates_per_class=200, top_k=100)
    np.savez(os.path.join(d, "jax_nms.npz"),
             **{k: keras.ops.convert_to_numpy(v) for k, v in out.items()})
''')


@pytest.mark.skipif(BACKEND != "tensorflow", reason="driven from the TensorFlow process")
def test_keras_files_and_nms_agree_between_tensorflow_and_jax(tmp_path):
    pytest.importorskip("jax")
    keras.utils.set_random_seed(1)
    tf_model = SSDTiny(num_classes=2, class_names=["a", "b"])
    tf_model.compile(optimizer="sgd", loss=SSDLoss())
    images = _images(2, seed=7)
    tf_model.save(tmp_path / "tf_model.keras")
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "targets.npy", _targets(tf_model, 2))
    boxes, scores = _nms_inputs(seed=2)
    np.savez(tmp_path / "nms_in.npz", boxes=boxes, scores=scores)
    script = tmp_path / "jax_side.py"
    script.write_text(JAX_SIDE)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # TensorFlow-saved model, run under JAX: the same predictions.
    np.testing.assert_allclose(np.load(tmp_path / "jax_out_of_tf_model.npy"),
                               keras.ops.convert_to_numpy(tf_model(images)),
                               rtol=1e-4, atol=1e-4)
    # JAX-saved (trained) model, loaded here under TensorFlow.
    jax_model = keras.saving.load_model(tmp_path / "jax_model.keras")
    assert jax_model.class_names == ["a", "b"] and isinstance(jax_model.loss, SSDLoss)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(jax_model(images)),
                               np.load(tmp_path / "jax_out.npy"), rtol=1e-4, atol=1e-4)
    # NMS: TensorFlow's XLA fast path vs keras.ops under JAX.
    tf_nms = multiclass_nms(boxes, scores, score_threshold=0.01, iou_threshold=0.45,
                            max_candidates_per_class=200, top_k=100, use_xla=True)
    tf_nms = {k: keras.ops.convert_to_numpy(v) for k, v in tf_nms.items()}
    jax_nms = np.load(tmp_path / "jax_nms.npz")
    assert tf_nms["num_detections"].min() > 10
    np.testing.assert_array_equal(jax_nms["num_detections"], tf_nms["num_detections"])
    np.testing.assert_array_equal(jax_nms["labels"], tf_nms["labels"])
    np.testing.assert_allclose(jax_nms["boxes"], tf_nms["boxes"], atol=1e-6)
    np.testing.assert_allclose(jax_nms["confidence"], tf_nms["confidence"], atol=1e-6)
