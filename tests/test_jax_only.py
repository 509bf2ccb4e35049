"""keras-ssd without TensorFlow: the JAX-only and torch-only installs, as a
tested promise.

Each test starts a Python process whose `sitecustomize` (put first on
`PYTHONPATH`) installs a meta-path finder that refuses TensorFlow and every
package a JAX-only install (keras, jax, numpy, pillow, pyyaml, defusedxml;
docs/getting_started.md) would not have: `import tensorflow` raises
`ImportError` as if it were not installed. In that process, under
`KERAS_BACKEND=jax` (and again under `KERAS_BACKEND=torch`, torch then
allowed), `keras-ssd train --model tiny`, `evaluate`, `predict` and a
`.keras` save/load run, and `export` answers with one line saying it needs
TensorFlow.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

#: Top-level packages the child process cannot import.
BLOCKED = ("tensorflow", "tensorflow_io_gcs_filesystem", "tf_keras", "tf2onnx",
           "tensorboard", "onnx", "onnxruntime", "matplotlib", "pycocotools",
           "torch", "torchvision", "skimage", "jax", "jaxlib")

#: What each backend's process may import of `BLOCKED`.
ALLOWED = {"jax": ("jax", "jaxlib"), "torch": ("torch",)}


def _sitecustomize(blocked):
    return textwrap.dedent(f'''
    import importlib.abc
    import importlib.machinery
    import sys

    BLOCKED = {blocked!r}


    class _NotInstalled(importlib.abc.MetaPathFinder):
        """sys.path's finder, blind to the blocked packages: `import` raises
        ModuleNotFoundError and `importlib.util.find_spec` returns None for
        them, as if they were not installed (torch probes some that way)."""

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)


    sys.meta_path[:] = [_NotInstalled() if f is importlib.machinery.PathFinder else f
                        for f in sys.meta_path]
''')

CHILD = textwrap.dedent('''
    import contextlib, io, json, os, sys

    d = sys.argv[1]
    out = {"blocked": []}
    for name in ("tensorflow", "tf2onnx", "tensorboard"):
        try:
            __import__(name)
        except ImportError:
            out["blocked"].append(name)

    import numpy as np
    import keras
    from keras_ssd.cli import main
    from keras_ssd.data import make_synthetic_voc

    out["backend"] = keras.backend.backend()
    root = make_synthetic_voc(os.path.join(d, "voc"), num_trainval=4, num_test=2,
                              image_size=160, seed=3)
    ckpt = os.path.join(d, "ckpt")

    def cli(*argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return code, err.getvalue()

    out["train"] = cli("train", "--data", root, "--classes",
                       os.path.join(root, "labels.txt"), "--model", "tiny",
                       "--epochs", 1, "--batch-size", 2, "--workers", 1,
                       "--checkpoint-dir", ckpt)
    model_file = os.path.join(ckpt, "latest.keras")
    out["evaluate"] = cli("evaluate", "--data", root, "--split", "test",
                          "--model-file", model_file,
                          "--json", os.path.join(d, "eval.json"))
    image = os.path.join(root, "JPEGImages", sorted(os.listdir(
        os.path.join(root, "JPEGImages")))[0])
    out["predict"] = cli("predict", "--model-file", model_file, image, "--out",
                         os.path.join(d, "pred"), "--threshold", "0.0")
    out["export"] = cli("export", "--model-file", model_file, "--out",
                        os.path.join(d, "exported"))

    # .keras save / load, and the Python export API
    import keras_ssd
    model = keras_ssd.load_model(model_file)
    again = os.path.join(d, "again.keras")
    model.save(again)
    loaded = keras_ssd.load_model(again)
    x = np.random.default_rng(0).uniform(0, 255, (1, 160, 160, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(loaded(x, training=False))
    out["round_trip_max_diff"] = float(np.max(np.abs(a - b)))
    out["round_trip_classes"] = [list(model.class_names), list(loaded.class_names)]
    from keras_ssd.export import export
    try:
        export(model, os.path.join(d, "api_exported"))
        out["api_export"] = None
    except ImportError as e:
        out["api_export"] = [type(e).__name__, str(e)]

    out["tensorflow_imported"] = sorted(
        m for m in sys.modules if m.partition(".")[0] == "tensorflow")
    with open(os.path.join(d, "out.json"), "w") as f:
        json.dump(out, f)
''')


def _blocked_env(tmp_path, allow=(), **env):
    """The environment of a child process in which TensorFlow (and `BLOCKED`
    but for `allow`) is missing."""
    site = tmp_path / "site"
    site.mkdir()
    blocked = tuple(name for name in BLOCKED if name not in allow)
    (site / "sitecustomize.py").write_text(_sitecustomize(blocked))
    child = dict(os.environ)
    for key in ("KERAS_BACKEND", "KERAS_HOME"):
        child.pop(key, None)
    child["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    child.update({"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    return child


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_evaluate_predict_and_save_load_run_without_tensorflow(tmp_path, backend):
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    env = _blocked_env(tmp_path, allow=ALLOWED[backend], KERAS_BACKEND=backend)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["blocked"] == ["tensorflow", "tf2onnx", "tensorboard"]
    assert out["backend"] == backend

    code, err = out["train"]
    assert code == 0, err
    assert (tmp_path / "ckpt" / "latest.keras").is_file()
    assert (tmp_path / "ckpt" / "history.csv").is_file()  # logs without TensorBoard

    code, err = out["evaluate"]
    assert code == 0, err
    result = json.loads((tmp_path / "eval.json").read_text())
    assert 0.0 <= result["mAP"] <= 1.0 and result["num_images"] == 2

    code, err = out["predict"]
    assert code == 0, err
    detections = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert len(detections["images"]) == 1 and detections["images"][0]["detections"]
    assert len(list((tmp_path / "pred").glob("*.png"))) == 1

    code, err = out["export"]
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("keras-ssd export: error: export needs TensorFlow, "
                               "which is not installed")
    assert "pip install tensorflow" in lines[0]
    assert not (tmp_path / "exported").exists()

    name, message = out["api_export"]
    assert name == "MissingExportDependency"
    assert "needs TensorFlow, which is not installed" in message

    assert out["round_trip_max_diff"] < 1e-5
    assert out["round_trip_classes"][0] == out["round_trip_classes"][1]
    assert out["tensorflow_imported"] == []


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_default_backend_without_tensorflow_is_a_one_line_error(
        tmp_path, synthetic_voc, command):
    # No KERAS_BACKEND and no keras.json: Keras would load TensorFlow.
    home = tmp_path / "keras_home"
    home.mkdir()
    env = _blocked_env(tmp_path, KERAS_HOME=str(home))
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never read
    argv = {"evaluate": ["evaluate", "--data", synthetic_voc, "--model-file", str(model)],
            "train": ["train", "--data", synthetic_voc, "--classes",
                      os.path.join(synthetic_voc, "labels.txt"), "--model", "tiny",
                      "--checkpoint-dir", str(tmp_path / "ckpt")]}[command]
    proc = subprocess.run([sys.executable, "-m", "keras_ssd", *argv], env=env,
                          capture_output=True, text=True, timeout=60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(
        f"keras-ssd {command}: error: Keras' backend is 'tensorflow' (the default), "
        "but tensorflow is not installed")
    assert "KERAS_BACKEND=jax" in lines[0]
    assert not (tmp_path / "ckpt").exists()


def test_a_keras_json_backend_names_the_file(tmp_path, synthetic_voc):
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "tensorflow"}))
    env = _blocked_env(tmp_path, KERAS_HOME=str(home))
    model = tmp_path / "model.keras"
    model.write_bytes(b"PK\x05\x06" + bytes(18))
    proc = subprocess.run([sys.executable, "-m", "keras_ssd", "predict", "--model-file",
                           str(model), os.path.join(synthetic_voc, "JPEGImages"), "--out",
                           str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert str(home / "keras.json") in proc.stderr and "Traceback" not in proc.stderr


def test_the_documented_jax_only_package_list_is_setup_pys_with_jax_for_tensorflow():
    import ast
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    tree = ast.parse((root / "setup.py").read_text())
    requires = next(
        kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
        for kw in node.keywords if kw.arg == "install_requires")
    names = {re.split(r"[<>=!~ ;\[]", ast.literal_eval(elt))[0].lower()
             for elt in requires.elts}
    assert "tensorflow" in names  # the default install keeps TensorFlow
    doc = (root / "docs" / "getting_started.md").read_text()
    section = doc.split("### Without TensorFlow (JAX only)", 1)[1]
    line = next(line for line in section.splitlines()
                if line.startswith("pip install keras"))
    documented = set(line.split("#", 1)[0].split()[2:])
    assert documented == (names - {"tensorflow"}) | {"jax"}
