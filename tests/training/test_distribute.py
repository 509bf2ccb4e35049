"""Data-parallel training: strategy selection, batch splitting and the
equivalence of one split step with one single-device step."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_ssd.training import distribute

pytestmark = pytest.mark.backend

# One SGD step of the tiny SSD on one device and split over 2 devices of this
# CPU, in a fresh process (the device split and the backend are fixed at
# start-up). Images 0-1 hold few objects and 2-3 many, so the replicas see
# different numbers of positives: a per-replica N_pos would show.
STEP_SCRIPT = textwrap.dedent('''
    import json, os, sys
    out_dir = sys.argv[1]
    backend = os.environ["KERAS_BACKEND"]
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_force_host_platform_device_count=2")
    else:
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import keras_ssd.losses
    from keras_ssd.training import distribute
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.targets import TargetEncoder
    from keras_ssd.models import SSDTiny

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(4, 160, 160, 3)).astype("float32")
    boxes = [
        [[0.1, 0.1, 0.5, 0.6]],
        [[0.2, 0.3, 0.4, 0.5]],
        [[0.05, 0.05, 0.45, 0.5], [0.5, 0.5, 0.95, 0.9], [0.1, 0.6, 0.4, 0.95],
         [0.6, 0.1, 0.9, 0.3]],
        [[0.3, 0.3, 0.9, 0.9], [0.0, 0.0, 0.3, 0.3], [0.6, 0.05, 0.95, 0.45]],
    ]
    keras.utils.set_random_seed(1)
    base = SSDTiny(num_classes=2, weight_decay=5e-4)
    initial = [keras.ops.convert_to_numpy(w) for w in base.get_weights()]
    encoder = TargetEncoder(generate_anchors(base.config), num_classes=2)
    targets = np.stack([encoder(np.asarray(b, "float32"), np.arange(len(b)) % 2)
                        for b in boxes])

    def one_step(strategy):
        def build():
            model = SSDTiny(num_classes=2, weight_decay=5e-4)
            model.set_weights(initial)
            return model
        model = distribute.build_and_compile(
            build, strategy, optimizer=lambda: keras.optimizers.SGD(1e-3, momentum=0.9))
        with distribute.strategy_scope(strategy):
            history = model.fit(images, targets, batch_size=4, epochs=1,
                                shuffle=False, verbose=0)
        return model, history.history["loss"][0]

    result = {"npos": (targets[..., 4] > 0).sum(axis=1).tolist()}
    arrays = {"initial": initial}
    strategies = {"single": distribute.get_strategy("none"),
                  "split": distribute.get_strategy("mirrored")}
    for key, strategy in strategies.items():
        result[key + "_replicas"] = distribute.num_replicas(strategy)
        model, result[key + "_loss"] = one_step(strategy)
        arrays[key] = [keras.ops.convert_to_numpy(w) for w in model.get_weights()]
    bn = [layer for layer in model.layers
          if isinstance(layer, keras.layers.BatchNormalization)]
    result["bn_layers"] = len(bn)
    result["bn_synchronized"] = all(layer.synchronized for layer in bn)
    result["bn_config_synchronized"] = any(
        layer.get_config()["synchronized"] for layer in bn)
    if backend == "tensorflow":
        # The same split step with N_pos counted per replica (no all-reduce).
        keras_ssd.losses.cross_replica_sum = lambda x: x
        model, result["local_loss"] = one_step(strategies["split"])
        arrays["local"] = [keras.ops.convert_to_numpy(w) for w in model.get_weights()]
    np.savez(os.path.join(out_dir, "weights.npz"),
             **{f"{k}_{i}": w for k, ws in arrays.items() for i, w in enumerate(ws)})
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(result, f)
''')


def _run_step(backend, tmp_path):
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    weights = np.load(tmp_path / "weights.npz")
    n = len([k for k in weights.files if k.startswith("initial_")])

    def tensors(key):
        return [weights[f"{key}_{i}"] for i in range(n)]

    return result, tensors


def _max_rel(actual, expected):
    """Largest per-tensor max|a - e| / max|e| over a list of tensors."""
    worst = 0.0
    for a, e in zip(actual, expected):
        scale = float(np.max(np.abs(e)))
        if scale > 0:
            worst = max(worst, float(np.max(np.abs(a - e))) / scale)
    return worst


def _global_rel(actual, expected):
    """||a - e|| / ||e|| over all tensors as one vector."""
    diff = sum(float(np.sum((a.astype("float64") - e) ** 2))
               for a, e in zip(actual, expected))
    norm = sum(float(np.sum(e.astype("float64") ** 2)) for e in expected)
    return (diff / norm) ** 0.5


def _updates(after, before):
    return [a - b for a, b in zip(after, before)]


def _check_equivalence(result, tensors):
    npos = result["npos"]
    assert npos[0] + npos[1] != npos[2] + npos[3]  # the replicas differ
    assert result["single_replicas"] == 1 and result["split_replicas"] == 2
    assert result["split_loss"] == pytest.approx(result["single_loss"], rel=1e-4)
    single, split, initial = tensors("single"), tensors("split"), tensors("initial")
    assert _global_rel(single, initial) > 1e-4  # the step moved the weights
    assert _global_rel(split, single) < 1e-4
    # The updates themselves (learning rate x gradient) agree too. Not to
    # 1e-4: `after - before` loses float32 digits at this learning rate, and
    # under TensorFlow the replicas sum their batch-norm statistics in a different
    # order than one device, and a float32 rounding difference can flip a
    # few ReLU / max-pool decisions in the first layers (in float64 the two
    # runs agree to 1e-14).
    assert _max_rel(_updates(split, initial), _updates(single, initial)) < 2e-2


# Both step tests set their own backend; run them from the default process only.
_from_tf_process = pytest.mark.skipif(
    __import__("keras").backend.backend() != "tensorflow",
    reason="subprocess test, driven from the TensorFlow process")


@_from_tf_process
def test_mirrored_step_matches_one_device_with_the_global_batch(tmp_path):
    result, tensors = _run_step("tensorflow", tmp_path)
    _check_equivalence(result, tensors)
    # Batch norm used global-batch statistics, yet saves as a plain layer.
    assert result["bn_layers"] > 0 and result["bn_synchronized"]
    assert not result["bn_config_synchronized"]
    # Sensitivity: with N_pos counted per replica the same step is wrong.
    single, initial = tensors("single"), tensors("initial")
    assert abs(result["local_loss"] / result["single_loss"] - 1) > 0.05
    assert _max_rel(_updates(tensors("local"), initial), _updates(single, initial)) > 0.2


@_from_tf_process
def test_jax_data_parallel_step_matches_one_device_with_the_global_batch(tmp_path):
    pytest.importorskip("jax")
    result, tensors = _run_step("jax", tmp_path)
    _check_equivalence(result, tensors)
    assert result["bn_layers"] > 0 and not result["bn_config_synchronized"]


# ------------------------------------------------------------ unit tests
class _FakeStrategy:
    def __init__(self, replicas):
        self.num_replicas_in_sync = replicas


def test_unknown_strategy_name_is_a_value_error_listing_the_choices():
    with pytest.raises(ValueError, match="none, mirrored, multi-worker"):
        distribute.get_strategy("horovod")


def test_none_strategy_is_one_replica_and_its_scope_works():
    strategy = distribute.get_strategy("none")
    assert distribute.num_replicas(strategy) == 1
    with distribute.strategy_scope(strategy):
        pass
    assert distribute.num_replicas(None) == 1
    with distribute.strategy_scope(None):
        pass


def test_strategy_names_accept_underscore_and_case():
    assert distribute._normalize_name("Multi_Worker") == "multi-worker"
    assert distribute._normalize_name(None) == "none"


def test_global_batch_is_split_evenly_or_rejected():
    assert distribute.check_global_batch_size(32, _FakeStrategy(4)) == 8
    assert distribute.check_global_batch_size(3, None) == 3
    with pytest.raises(ValueError, match="not divisible by the 2 replicas"):
        distribute.check_global_batch_size(5, _FakeStrategy(2))
    with pytest.raises(ValueError, match="positive int"):
        distribute.check_global_batch_size(0, _FakeStrategy(2))


def test_cross_replica_sum_is_the_identity_on_one_device():
    import keras

    x = keras.ops.convert_to_tensor(7.0)
    assert float(keras.ops.convert_to_numpy(distribute.cross_replica_sum(x))) == 7.0


def test_prepare_model_leaves_a_one_device_model_unchanged():
    from keras_ssd.models import SSDTiny

    model = SSDTiny(num_classes=1)
    distribute.prepare_model(model, None)
    bn = [l for l in model.layers if l.__class__.__name__ == "BatchNormalization"]
    assert bn and not any(l.synchronized for l in bn)
    with pytest.raises(ValueError, match="sync_batchnorm"):
        distribute.prepare_model(model, None, sync_batchnorm="yes")


def test_build_and_compile_checks_build_fn():
    with pytest.raises(ValueError, match="callable"):
        distribute.build_and_compile("ssd300")
    with pytest.raises(ValueError, match="keras.Model"):
        distribute.build_and_compile(lambda: 3)


def test_build_and_compile_compiles_with_ssd_loss():
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSDTiny

    import keras

    model = distribute.build_and_compile(lambda: SSDTiny(num_classes=1),
                                         optimizer=lambda: keras.optimizers.SGD(1e-3))
    assert model.compiled and isinstance(model.loss, SSDLoss)


def test_distributed_training_checks_the_batch_and_yields_the_strategy():
    with distribute.distributed_training("none", batch_size=8) as strategy:
        assert distribute.num_replicas(strategy) == 1
    with pytest.raises(ValueError, match="positive int"):
        with distribute.distributed_training("none", batch_size=0):
            pass
    with pytest.raises(ValueError, match="multi-worker"):
        with distribute.distributed_training("ring"):
            pass


TWO_WORKERS = {"cluster": {"worker": ["host1:12345", "host2:12345"]},
               "task": {"type": "worker", "index": 1}}


def test_tf_config_is_parsed_into_workers_and_task():
    cluster = distribute.parse_tf_config({"TF_CONFIG": json.dumps(TWO_WORKERS)})
    assert cluster == {"workers": ["host1:12345", "host2:12345"], "task_type": "worker",
                       "task_index": 1, "address": "host2:12345"}
    assert distribute.parse_tf_config({}) is None


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "no 'cluster'"),
    (json.dumps({"cluster": {"worker": [12]}, "task": {"type": "worker", "index": 0}}),
     "host:port"),
    (json.dumps({"cluster": {"worker": ["a:1"]}}), "needs a 'task'"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}),
     "out of range"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}),
     "not 'chief' or 'worker'"),
])
def test_malformed_tf_config_is_a_clear_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        distribute.parse_tf_config({"TF_CONFIG": text})
