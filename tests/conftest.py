"""Fixtures shared by the whole suite: a small SSD configuration, a tiny
SSD model and a small synthetic VOC dataset."""

import http.server
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

# Keep TensorFlow's C++ start-up chatter out of test output (and out of the
# subprocesses tests start, which inherit the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The same speed choices on every CPU kind, and no tuning cache written to
# the user's home: Winograd tiles come from the measured table (tests that
# pin the per-machine rule set their own), the cache goes to a temporary
# folder.
os.environ.setdefault("KERAS_SSD_WINOGRAD", "table")
if "KERAS_SSD_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["KERAS_SSD_CACHE_DIR"] = tempfile.mkdtemp(prefix="keras_ssd_test_cache_")

# The fuzzers' budget (tests/*/test_*fuzz*.py): KERAS_SSD_FUZZ_EXAMPLES
# generated cases per fuzzer (CI: the default), no example database written,
# and no per-case deadline (the tests time each case themselves, with a bound
# generous enough for a loaded shared machine).
try:
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile(
        "keras_ssd", max_examples=int(os.environ.get("KERAS_SSD_FUZZ_EXAMPLES", "200")),
        deadline=None, database=None, print_blob=True)
    _hypothesis_settings.load_profile("keras_ssd")
except ImportError:  # the fuzz tests skip themselves
    pass

#: A 32-pixel geometry with two maps (4x4 with 4 priors per cell, 2x2 with
#: 6): 88 priors, small enough to check by hand.
SMALL_GEOMETRY = dict(
    image_size=32,
    feature_map_sizes=[4, 2],
    steps=[8, 16],
    min_sizes=[8, 16],
    max_sizes=[16, 24],
    aspect_ratios=[[2], [2, 3]],
)


@pytest.fixture(scope="session")
def tiny_config():
    """Factory `tiny_config(num_classes=3, **changes)` of small `SSDConfig`s
    (`SMALL_GEOMETRY`, fields overridden by `changes`)."""
    from keras_ssd.config import SSDConfig

    def make(num_classes=3, **changes):
        return SSDConfig(num_classes=num_classes, **{**SMALL_GEOMETRY, **changes})

    return make


@pytest.fixture(scope="session")
def make_tiny_model():
    """Factory `make_tiny_model(num_classes=2, seed=1, **kwargs)`: a fresh
    `SSDTiny` (160 px, 2390 priors) with seeded random weights."""

    def make(num_classes=2, seed=1, **kwargs):
        import keras

        from keras_ssd.models import SSDTiny

        keras.utils.set_random_seed(seed)
        return SSDTiny(num_classes=num_classes, **kwargs)

    return make


def assert_same_outputs(got, expected, atol=0.0):
    """Every tensor of two outputs (a tensor, or a dict or list of them)
    equal to `atol`."""
    import keras

    got, expected = keras.tree.flatten(got), keras.tree.flatten(expected)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a),
                                   keras.ops.convert_to_numpy(b), rtol=0, atol=atol)


@pytest.fixture
def keras_round_trip(tmp_path):
    """`keras_round_trip(model, x, atol=0.0, compile=None, load=None)`: save
    `model` to a `.keras` file, load it (`keras.saving.load_model`, or
    `load`), assert the loaded model's outputs on `x` equal the original's
    (to `atol`) and return the loaded model."""
    import keras

    def check(model, x, atol=0.0, compile=None, load=None):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        kwargs = {} if compile is None else {"compile": compile}
        loaded = (load or keras.saving.load_model)(str(path), **kwargs)
        assert_same_outputs(loaded(x), model(x), atol)
        return loaded

    return check


@pytest.fixture(scope="session")
def config_round_trip():
    """`config_round_trip(layer, x=None)`: rebuild `layer` from its
    `get_config()` and through Keras' serialization, assert both copies have
    the same config (and, given `x`, the same outputs on it) and return the
    `from_config` copy."""

    def check(layer, x=None):
        import keras

        config = layer.get_config()
        clone = type(layer).from_config(config)
        again = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer))
        for copy in (clone, again):
            assert type(copy) is type(layer) and copy.get_config() == config
            if x is not None:
                assert_same_outputs(copy(x), layer(x))
        return clone

    return check


@pytest.fixture(scope="session")
def make_confident_tiny_ssd():
    """Factory `make_confident_tiny_ssd(seed=1, decode=None)`: an `SSDTiny`
    (3 classes, 160 px) whose heads give real, image-dependent detections,
    built with `decode` as its `postprocessing` when given.

    Class heads: random kernels x4 (scores spread over [0, 1] and depend on
    the image) and a +1 bias on one class per prior shape, so confident
    candidates exist. Box heads: random kernels x0.1, so boxes move off the
    priors but neighbours still overlap and NMS has work to do.
    """

    def make(seed=1, decode=None):
        import keras

        from keras_ssd.models import SSDTiny

        keras.utils.set_random_seed(seed)
        model = SSDTiny(num_classes=3)
        for layer in model.layers:
            kernel_and_bias = layer.get_weights()
            if layer.name.endswith("_mbox_conf"):
                kernel, bias = kernel_and_bias
                shapes = np.arange(bias.size // 4)
                bias = np.zeros_like(bias)
                bias[shapes * 4 + 1 + shapes % 3] = 1.0
                layer.set_weights([kernel * 4.0, bias])
            elif layer.name.endswith("_mbox_loc"):
                kernel, bias = kernel_and_bias
                layer.set_weights([kernel * 0.1, bias])
        if decode is None:
            return model
        tuned = type(model).from_config({**model.get_config(), "postprocessing": decode})
        tuned.set_weights(model.get_weights())
        return tuned

    return make


@pytest.fixture(scope="module")
def tiny_model(make_tiny_model):
    """An untrained `SSDTiny` for 2 classes (seed 1), shared within a module:
    tests must not train or change it."""
    return make_tiny_model()


@pytest.fixture(scope="session")
def make_oracle_model():
    """Factory `make_oracle_model(config, answer, top_k=10)`: a stand-in for a
    keras-ssd model whose `predict_on_batch(images)` returns `answer(images)`
    (a decoded dict: `boxes` normalised xyxy, `scores`, `labels`), so that
    everything around the network (rendering, batching, pixels, matching,
    scoring) can be checked exactly. `model.calls` lists the batch shapes."""
    import keras

    from keras_ssd.layers import DecodeDetections

    class OracleModel(keras.Model):
        def __init__(self, config, answer, top_k=10):
            super().__init__()
            self.config = config
            self.prediction_decoder = DecodeDetections(config, top_k=top_k)
            self.answer = answer
            self.calls = []

        def predict_on_batch(self, x):
            self.calls.append(np.shape(x))
            return self.answer(np.asarray(x))

    return OracleModel


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory):
    """A small synthetic VOC directory (shapes at 160 px: 12 trainval and 4
    test images, seed 3), shared read-only by the whole session."""
    from keras_ssd.data import make_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic_voc") / "shapes"
    make_synthetic_voc(root, num_trainval=12, num_test=4, image_size=160, seed=3)
    return str(root)


@pytest.fixture
def synthetic_train(synthetic_voc):
    """Factory `synthetic_train(images=None)`: a fresh `VOCDataset` of
    `synthetic_voc`'s trainval split (its four classes), cut to its first
    `images` records when given."""

    def make(images=None):
        from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

        train = VOCDataset(synthetic_voc, "trainval", class_names=SYNTHETIC_CLASSES)
        if images is not None:
            train.records = train.records[:images]
        return train

    return make


@pytest.fixture
def fine_tune(tmp_path):
    """`fine_tune(model, train, batch_size, learning_rate)`: three epochs of
    `train_detector` without augmentation, warm-up, validation loss or logs
    (the checkpoints go to a temporary folder); returns the `History`."""

    def run(model, train, batch_size, learning_rate):
        from keras_ssd.training.fit import train_detector

        return train_detector(model, train, epochs=3, batch_size=batch_size, augment=False,
                              workers=0, learning_rate=learning_rate, warmup_epochs=0,
                              checkpoint_dir=str(tmp_path / "run"), val_loss=False,
                              log_dir=False, csv=False, plot=False, verbose=0)

    return run


#: (width, height) of `ToyDataset`'s images.
TOY_SIZES = [(120, 90), (200, 160), (64, 256), (160, 160), (333, 101)]


class ToyDataset:
    """Records-interface dataset; image i is filled with the value i + 1."""

    def __init__(self, class_names=("cat", "dog"), sizes=TOY_SIZES):
        self.class_names = tuple(class_names)
        rng = np.random.default_rng(0)
        self.records = []
        for i, (w, h) in enumerate(sizes):
            g = 1 + i % 3
            xy = rng.uniform(0, 0.5, size=(g, 2)) * [w, h]
            wh = rng.uniform(0.2, 0.45, size=(g, 2)) * [w, h]
            self.records.append(
                {
                    "image_id": f"img{i}",
                    "image_path": f"img{i}.jpg",
                    "width": w,
                    "height": h,
                    "boxes": np.concatenate([xy, xy + wh], 1).astype("float32"),
                    "labels": (np.arange(g) % len(self.class_names)).astype("int64"),
                    "difficult": np.zeros((g,), bool),
                }
            )

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def load_image(self, i):
        r = self.records[i]
        return np.full((r["height"], r["width"], 3), i + 1, dtype=np.uint8)


@pytest.fixture(scope="session")
def toy_dataset():
    """The `ToyDataset` class: a records-interface dataset whose image i is
    filled with the value i + 1 (`toy_dataset(class_names=..., sizes=...)`)."""
    return ToyDataset


def _writer_tensors(obj):
    """numpy arrays (anywhere in dicts/lists) -> the minimal torch writer's
    tensors of tests/test_pth.py (C-order strides, float32 as FloatStorage)."""
    import collections

    from test_pth import Storage, Tensor

    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        dtype = str(array.dtype)
        strides = [s // array.itemsize for s in array.strides]
        return Tensor(Storage(array.reshape(-1), dtype), 0, array.shape, strides)
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _writer_tensors(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_writer_tensors(v) for v in obj)
    return obj


@pytest.fixture(scope="session")
def save_pth():
    """`save_pth(path, obj, legacy=False)`: what `torch.save(obj, path)` writes
    (zip, or the legacy format), without torch: numpy arrays in `obj` become
    tensors (the minimal writer of tests/test_pth.py)."""

    def save(path, obj, legacy=False):
        from test_pth import write_legacy, write_zip

        (write_legacy if legacy else write_zip)(str(path), _writer_tensors(obj))
        return path

    return save


# ------------------------------------------------ prediction input sources
class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; /slow/PATH answers PATH after 3 s (the timeout test)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/slow"):
            time.sleep(3)
            self.path = self.path[len("/slow"):]
        try:
            return super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def image_tree(tmp_path_factory):
    """a.png, sub/b.jpg, sub/deeper/c.png, bad.jpg (not an image), notes.txt."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    for rel, size in (("a.png", (40, 30)), ("sub/b.jpg", (50, 20)),
                      ("sub/deeper/c.png", (16, 16))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / rel)
    (root / "bad.jpg").write_bytes(b"this is not a JPEG")
    (root / "notes.txt").write_text("ignored")
    return root


@pytest.fixture(scope="session")
def serve_folder():
    """Factory `serve_folder(path)`: the URL `http://127.0.0.1:PORT` of an
    HTTP server on a free port serving `path` (/slow... answers after 3 s),
    stopped at the end of the session."""
    servers = []

    def serve(path):
        def handler(*args, **kwargs):
            return _SlowHandler(*args, directory=str(path), **kwargs)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def http_root(image_tree, serve_folder):
    """`http://127.0.0.1:PORT` serving `image_tree` (/slow... answers after 3 s)."""
    return serve_folder(image_tree)


@pytest.fixture
def closed_port_url():
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/a.png"


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """clip.mp4 and clip.avi (12 frames, 64x48, 8 fps, a bright square
    moving over a noisy band), the AVI cut at 70% (clip_cut.avi: its header
    promises 12 frames) and the MP4 cut in half (clip_cut.mp4: its index,
    at the end, is lost)."""
    pytest.importorskip("av")
    from keras_ssd.inference.stream import VideoWriter

    root = tmp_path_factory.mktemp("video")
    rng = np.random.default_rng(0)
    frames = []
    for i in range(12):
        frame = np.full((48, 64, 3), 30, np.uint8)
        frame[10:30, 4 * i:4 * i + 20] = (240, 40, 40)
        frame[40:] = rng.integers(0, 255, (8, 64, 3))  # bytes enough to cut
        frames.append(frame)
    paths = {}
    for name in ("clip.mp4", "clip.avi"):
        with VideoWriter(root / name, fps=8) as writer:
            for frame in frames:
                writer.write(frame)
        paths[name] = root / name
    for name, keep in (("clip.mp4", 0.5), ("clip.avi", 0.7)):
        data = paths[name].read_bytes()
        cut = root / name.replace("clip", "clip_cut")
        cut.write_bytes(data[:int(len(data) * keep)])
        paths[cut.name] = cut
    return {k: str(v) for k, v in paths.items()}
