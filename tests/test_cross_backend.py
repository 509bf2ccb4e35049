"""`.keras` files move between all three Keras backends.

One process per backend trains the tiny model with `keras-ssd train` (its
default recipe: AdamW, the optimizer whose torch class once made torch files
unloadable elsewhere), saves it, and records its own detections on the test
images. Then one process per backend loads the other two backends' files,
checks that the optimizer and its state came along (public class, same step
count, one more training step runs), and records the detections. Every pair
(saved under A, loaded under B) must give the same labels and counts, boxes
within 1e-4 of the input size, as A gave itself. The NMS of each backend is
compared on the same inputs too.

The processes of a phase run side by side; the test runs once, in the main
(TensorFlow) run, and needs jax and torch installed.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax", "torch")

TRAIN = textwrap.dedent('''
    import contextlib, io, os, sys
    import numpy as np
    import keras
    import keras_ssd
    from keras_ssd.cli import main
    from keras_ssd.inference.predict import predict_images
    from keras_ssd.nms import multiclass_nms

    d, backend = sys.argv[1], sys.argv[2]
    assert keras.backend.backend() == backend, keras.backend.backend()
    root = os.path.join(d, "voc")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", "--data", root, "--classes",
                     os.path.join(root, "labels.txt"), "--model", "tiny",
                     "--epochs", "1", "--batch-size", "2", "--workers", "0",
                     "--no-augment", "--no-logs", "--eval-every", "100",
                     "--checkpoint-dir", os.path.join(d, backend)])
    assert code == 0, err.getvalue()[-3000:]
    model = keras_ssd.load_model(os.path.join(d, backend, "latest.keras"))
    assert type(model.optimizer).__name__ == "AdamW"
    images = np.load(os.path.join(d, "images.npy"))
    dets = predict_images(model, images, confidence_threshold=0.05, top_k=50)
    np.savez(os.path.join(d, f"det_{backend}_under_{backend}.npz"),
             iterations=int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
             **{f"{k}_{i}": det[k] for i, det in enumerate(dets)
                for k in ("boxes", "scores", "labels")})
    data = np.load(os.path.join(d, "nms_in.npz"))
    out = multiclass_nms(data["boxes"], data["scores"], score_threshold=0.01,
                         iou_threshold=0.45, max_candidates_per_class=200, top_k=100)
    np.savez(os.path.join(d, f"nms_{backend}.npz"),
             **{k: keras.ops.convert_to_numpy(v) for k, v in out.items()})
''')

LOAD = textwrap.dedent('''
    import os, sys
    import numpy as np
    import keras
    import keras_ssd
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.inference.predict import predict_images
    from keras_ssd.targets import TargetEncoder

    d, backend, others = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert keras.backend.backend() == backend, keras.backend.backend()
    images = np.load(os.path.join(d, "images.npy"))
    for saved in others:
        model = keras_ssd.load_model(os.path.join(d, saved, "latest.keras"))
        opt = model.optimizer
        assert type(opt).__name__ == "AdamW", type(opt)
        assert not type(opt).__module__.startswith(
            tuple(f"keras.src.backend.{b}" for b in others)), type(opt).__module__
        iterations = int(keras.ops.convert_to_numpy(opt.iterations))
        encoder = TargetEncoder(generate_anchors(model.config),
                                num_classes=model.num_classes)
        target = encoder(np.array([[0.1, 0.2, 0.5, 0.6]], "float32"), np.array([0]))
        targets = np.stack([target, target])
        dets = predict_images(model, images, confidence_threshold=0.05, top_k=50)
        x = np.random.default_rng(1).uniform(
            0, 255, (2, *model.config.image_shape, 3)).astype("float32")
        loss = model.train_on_batch(x, targets)
        assert np.all(np.isfinite(loss)), loss
        assert int(keras.ops.convert_to_numpy(opt.iterations)) == iterations + 1
        np.savez(os.path.join(d, f"det_{saved}_under_{backend}.npz"),
                 iterations=iterations,
                 **{f"{k}_{i}": det[k] for i, det in enumerate(dets)
                    for k in ("boxes", "scores", "labels")})
''')


def _run_side_by_side(tmp_path, script, argvs):
    path = tmp_path / "child.py"
    path.write_text(script)
    procs = []
    for backend, argv in argvs:
        env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
        procs.append((backend, subprocess.Popen(
            [sys.executable, str(path), str(tmp_path), backend, *argv], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    for backend, proc in procs:
        try:
            _, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 0, f"{backend}:\n{err[-3000:]}"


def _detections(path, n):
    data = np.load(path)
    return int(data["iterations"]), [
        {k: data[f"{k}_{i}"] for k in ("boxes", "scores", "labels")} for i in range(n)]


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("tensorflow", "jax", "torch")),
    reason="needs tensorflow, jax and torch installed")
def test_a_model_trained_under_each_backend_detects_the_same_under_the_other_two(
        tmp_path):
    from keras_ssd.data import make_synthetic_voc

    make_synthetic_voc(tmp_path / "voc", num_trainval=4, num_test=2, image_size=160,
                       seed=3)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, 120, 200, 3)).astype("uint8")  # not the input size
    np.save(tmp_path / "images.npy", images)
    boxes = rng.uniform(0, 0.7, (2, 300, 2))
    boxes = np.concatenate([boxes, boxes + rng.uniform(0.1, 0.3, (2, 300, 2))], -1)
    np.savez(tmp_path / "nms_in.npz", boxes=boxes.astype("float32"),
             scores=(rng.uniform(0, 1, (2, 300, 3)) ** 3).astype("float32"))

    _run_side_by_side(tmp_path, TRAIN, [(b, []) for b in BACKENDS])
    _run_side_by_side(tmp_path, LOAD,
                      [(b, [o for o in BACKENDS if o != b]) for b in BACKENDS])

    size = 200  # the images' larger side: boxes are in their pixels
    for saved in BACKENDS:
        steps, own = _detections(tmp_path / f"det_{saved}_under_{saved}.npz", len(images))
        assert steps == 2  # 4 images, batch 2, 1 epoch
        assert sum(len(d["labels"]) for d in own) > 0
        for loader in BACKENDS:
            if loader == saved:
                continue
            got_steps, got = _detections(
                tmp_path / f"det_{saved}_under_{loader}.npz", len(images))
            assert got_steps == steps, (saved, loader)
            for mine, theirs in zip(own, got):
                assert len(theirs["labels"]) == len(mine["labels"]), (saved, loader)
                np.testing.assert_array_equal(theirs["labels"], mine["labels"])
                np.testing.assert_allclose(theirs["boxes"], mine["boxes"],
                                           atol=1e-4 * size, rtol=0)
                np.testing.assert_allclose(theirs["scores"], mine["scores"], atol=1e-4)

    reference = np.load(tmp_path / "nms_tensorflow.npz")
    assert reference["num_detections"].min() > 10
    for backend in ("jax", "torch"):
        other = np.load(tmp_path / f"nms_{backend}.npz")
        np.testing.assert_array_equal(other["num_detections"], reference["num_detections"])
        np.testing.assert_array_equal(other["labels"], reference["labels"])
        np.testing.assert_allclose(other["boxes"], reference["boxes"], atol=1e-6)
        np.testing.assert_allclose(other["confidence"], reference["confidence"], atol=1e-6)
