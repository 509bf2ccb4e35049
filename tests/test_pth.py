"""keras_ssd.pth: the torch-free, restricted `.pth` reader.

The files are written by a minimal writer in this file that emits the same
bytes `torch.save` does (its pickles go through the pure-Python pickler,
with torch's globals written by name and torch's persistent ids); the tests
marked with `pytest.importorskip("torch")` check that claim against real
torch files, and read real torch checkpoints (torchvision's SSD300 too).
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from keras_ssd import pth

# --- a minimal torch.save ----------------------------------------------------


class Global:
    """A global the writer emits by name (GLOBAL 'module name')."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # save_reduce wants a callable
        raise AssertionError("never called")


REBUILD_V2 = Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_V3 = Global("torch._utils", "_rebuild_tensor_v3")
REBUILD_PARAMETER = Global("torch._utils", "_rebuild_parameter")
UNTYPED = Global("torch.storage", "UntypedStorage")
STORAGE_TYPES = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
STORAGE_GLOBALS = {d: Global("torch", n) for d, n in STORAGE_TYPES.items()}
DTYPE_GLOBALS = {}


class Storage:
    """A storage: raw little-endian bytes; `dtype` None for untyped."""

    def __init__(self, values, dtype, untyped=False, module="torch"):
        self.values = np.ascontiguousarray(values)
        self.dtype = None if untyped else dtype
        self.type = UNTYPED if untyped else (
            STORAGE_GLOBALS[dtype] if module == "torch"
            else Global(module, STORAGE_TYPES[dtype]))
        self.data = self.values.astype(self.values.dtype.newbyteorder("<")).tobytes()
        self.numel = len(self.data) if untyped else self.values.size


class Tensor:
    """A tensor over a `Storage`: offset, size, stride in elements."""

    def __init__(self, storage, offset, size, stride, dtype=None, parameter=False):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)
        self.dtype, self.parameter = dtype, parameter

    def __reduce_ex__(self, protocol):
        if self.parameter:
            plain = Tensor(self.storage, self.offset, self.size, self.stride, self.dtype)
            return REBUILD_PARAMETER, (plain, False, collections.OrderedDict())
        # Fresh tuples, as tensor.size()/stride() give (a shared one would be
        # memoized: BINGET instead of torch's bytes).
        args = (self.storage, self.offset, tuple(list(self.size)), tuple(list(self.stride)),
                False, collections.OrderedDict())
        if self.storage.dtype is None:  # torch 2.x: new dtypes over untyped storage
            dtype = DTYPE_GLOBALS.setdefault(self.dtype, Global("torch", self.dtype))
            return REBUILD_V3, args + (dtype,)
        return REBUILD_V2, args


class TorchPickler(pickle._Pickler):
    """Protocol 2, `Global`s by name, storages as torch's persistent ids."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy, keys=None):
        super().__init__(file, protocol=2)
        self.legacy, self.keys, self.storages = legacy, keys or {}, {}

    def save_global_by_name(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[Global] = save_global_by_name

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        if self.legacy:  # str(storage._cdata): a fresh string each time
            key = self.keys.get(id(obj)) or str(140000000000000 + 64 * len(self.storages))
            self.storages[key] = obj
            return ("storage", obj.type, str(int(key)), "cpu", obj.numel, None)
        key = self.keys.setdefault(id(obj), str(len(self.keys)))
        self.storages[key] = obj
        return ("storage", obj.type, key, "cpu", obj.numel)


def dumps(obj, legacy, keys=None):
    buffer = io.BytesIO()
    pickler = TorchPickler(buffer, legacy, keys)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def write_zip(path, obj, name=None, skip=(), byteorder="little"):
    """torch.save(obj, path): the same records with the same contents (the
    zip container itself is Python's, without miniz's 64-byte alignment)."""
    name = name or os.path.splitext(os.path.basename(path))[0]
    data, storages = dumps(obj, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", data)
        archive.writestr(f"{name}/.format_version", "1")
        archive.writestr(f"{name}/.storage_alignment", "64")
        archive.writestr(f"{name}/byteorder", byteorder)
        for key, storage in storages.items():
            if key not in skip:
                raw = storage.data
                if byteorder == "big":
                    values = storage.values
                    raw = values.astype(values.dtype.newbyteorder(">")).tobytes()
                archive.writestr(f"{name}/data/{key}", raw)
        archive.writestr(f"{name}/version", "3\n")
        archive.writestr(f"{name}/.data/serialization_id", "0" * 40)


def legacy_bytes(obj, keys=None, magic=pth.LEGACY_MAGIC):
    """torch.save(obj, f, _use_new_zipfile_serialization=False), byte for byte."""
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (magic, 1001, sys_info))
    data, storages = dumps(obj, legacy=True, keys=keys)
    order = sorted(storages)
    tail = b"".join(struct.pack("<q", storages[k].numel) + storages[k].data for k in order)
    return head + data + pickle.dumps(order, protocol=2) + tail


def write_legacy(path, obj, **kwargs):
    with open(path, "wb") as file:
        file.write(legacy_bytes(obj, **kwargs))


def bf16_bits(values):
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def sample():
    """(state dict of writer tensors, the arrays torch would load)."""
    base = np.arange(12, dtype=np.float32) * 1.5 - 4
    floats = Storage(base, "float32")
    longs = Storage(np.array([3, -1, -7], np.int64), "int64")
    half = np.array([1.5, -2.0, 65504.0, 2.0 ** -24], np.float16)
    bf = np.array([1.0, -2.5, 3.140625, -0.0], np.float32)
    u16 = np.array([0, 1, 65535], np.uint16)
    tensors = collections.OrderedDict([
        ("conv.weight", Tensor(floats, 0, (3, 4), (4, 1))),
        ("transposed", Tensor(floats, 0, (4, 3), (1, 4))),
        ("window", Tensor(floats, 5, (2, 2), (4, 1))),
        ("every_other", Tensor(floats, 1, (2, 3), (6, 2))),
        ("half", Tensor(Storage(half, "float16"), 0, (2, 2), (2, 1))),
        ("scalar", Tensor(longs, 2, (), ())),
        ("num_batches_tracked", Tensor(longs, 0, (), ())),
        ("double", Tensor(Storage(np.array([np.pi, -1e300]), "float64"), 0, (2,), (1,))),
        ("bf16", Tensor(Storage(bf16_bits(bf), "bfloat16"), 0, (4,), (1,))),
        ("i32", Tensor(Storage(np.array([-2**31, 7], np.int32), "int32"), 0, (2,), (1,))),
        ("i16", Tensor(Storage(np.array([-300], np.int16), "int16"), 0, (1,), (1,))),
        ("i8", Tensor(Storage(np.array([-128, 127], np.int8), "int8"), 0, (2,), (1,))),
        ("u8", Tensor(Storage(np.array([0, 255], np.uint8), "uint8"), 0, (1, 2), (2, 1))),
        ("mask", Tensor(Storage(np.array([True, False, True]), "bool"), 0, (3,), (1,))),
        ("empty", Tensor(Storage(np.zeros(0, np.float32), "float32"), 0, (0, 3), (3, 1))),
        ("u16", Tensor(Storage(u16, "uint16", untyped=True), 0, (3,), (1,), "uint16")),
    ])
    grid = base.reshape(3, 4)
    expected = collections.OrderedDict([
        ("conv.weight", grid), ("transposed", grid.T), ("window", grid[1:3, 1:3]),
        ("every_other", base[1::2].reshape(2, 3)),
        ("half", half.reshape(2, 2)), ("scalar", np.array(-7, np.int64)),
        ("num_batches_tracked", np.array(3, np.int64)),
        ("double", np.array([np.pi, -1e300])), ("bf16", bf),
        ("i32", np.array([-2**31, 7], np.int32)), ("i16", np.array([-300], np.int16)),
        ("i8", np.array([-128, 127], np.int8)), ("u8", np.array([[0, 255]], np.uint8)),
        ("mask", np.array([True, False, True])), ("empty", np.zeros((0, 3), np.float32)),
        ("u16", u16),
    ])
    return tensors, expected


def assert_same_arrays(got, expected):
    assert list(got) == list(expected)
    for key, want in expected.items():
        assert isinstance(got[key], np.ndarray), key
        assert got[key].dtype == want.dtype, key
        assert got[key].shape == want.shape, key
        assert got[key].flags["C_CONTIGUOUS"] and got[key].flags["OWNDATA"], key
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        assert got[key].tobytes() == np.ascontiguousarray(want).tobytes(), key


WRITERS = {"zip": write_zip, "legacy": write_legacy}


# --- reading ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reads_views_offsets_scalars_and_every_dtype_exactly(tmp_path, fmt):
    tensors, expected = sample()
    path = tmp_path / f"weights_{fmt}.pth"
    WRITERS[fmt](str(path), tensors)
    loaded = pth.load_pth(path)
    assert type(loaded) is collections.OrderedDict
    assert_same_arrays(loaded, expected)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_nested_checkpoint_keeps_its_structure(tmp_path, fmt):
    tensors, expected = sample()
    momentum = Tensor(Storage(np.array([0.5, -0.25], np.float32), "float32"), 0, (2,), (1,))
    checkpoint = {
        "model": tensors,
        "optimizer": {"state": {0: {"momentum_buffer": momentum}},
                      "param_groups": [{"lr": 1e-3, "momentum": 0.9, "params": [0, 1]}]},
        "scheduler": {"milestones": [80000, 100000], "last_epoch": 120000},
        "iteration": 120000,
        "pair": (tensors["scalar"], "text", None, True),
    }
    path = tmp_path / f"checkpoint_{fmt}.pth"
    WRITERS[fmt](str(path), checkpoint)
    loaded = pth.load_pth(path)
    assert_same_arrays(loaded["model"], expected)
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["momentum_buffer"],
                                  np.array([0.5, -0.25], np.float32))
    assert loaded["optimizer"]["param_groups"] == [
        {"lr": 1e-3, "momentum": 0.9, "params": [0, 1]}]
    assert loaded["scheduler"] == {"milestones": [80000, 100000], "last_epoch": 120000}
    assert loaded["iteration"] == 120000
    assert loaded["pair"][1:] == ("text", None, True)
    np.testing.assert_array_equal(loaded["pair"][0], np.array(-7, np.int64))
    assert pth.state_dict(loaded) is loaded["model"]
    assert list(pth.load_pth(path, map_key="auto")) == list(expected)
    assert list(pth.load_pth(path, map_key="model")) == list(expected)


def test_parameters_counter_and_cuda_storages_read_as_plain_arrays(tmp_path):
    storage = Storage(np.array([1.0, 2.0], np.float32), "float32", module="torch.cuda")
    weight = Tensor(storage, 0, (2,), (1,), parameter=True)
    counter = Global("collections", "Counter")

    class CounterStandIn:
        def __reduce_ex__(self, protocol):
            return counter, ({80000: 1},)

    path = tmp_path / "params.pth"
    write_legacy(str(path), {"params": [weight], "milestones": CounterStandIn()})
    loaded = pth.load_pth(path)
    np.testing.assert_array_equal(loaded["params"][0], np.array([1.0, 2.0], np.float32))
    assert loaded["milestones"] == collections.Counter({80000: 1})


def test_big_endian_zip_reads_the_same_values(tmp_path):
    tensors, expected = sample()
    path = tmp_path / "big.pth"
    write_zip(str(path), tensors, byteorder="big")
    assert_same_arrays(pth.load_pth(path), expected)


def test_a_shared_tensor_is_one_array(tmp_path):
    tensors, _ = sample()
    path = tmp_path / "shared.pth"
    write_zip(str(path), {"a": tensors["window"], "b": tensors["window"]})
    loaded = pth.load_pth(path)
    assert loaded["a"] is loaded["b"]


# --- state_dict ---------------------------------------------------------------


def test_state_dict_finds_bare_model_and_state_dict_entries():
    weights = collections.OrderedDict(w=np.zeros(2), b=np.ones(1))
    assert pth.state_dict(weights) is weights
    assert pth.state_dict({"model": weights, "optimizer": {}}) is weights
    assert pth.state_dict({"state_dict": weights, "epoch": 3}) is weights
    assert pth.state_dict({"ema": weights, "model": {}}, key="ema") is weights


def test_state_dict_error_lists_the_top_level_keys():
    with pytest.raises(pth.PthFormatError, match=r"'net', 'epoch'.*key="):
        pth.state_dict({"net": {"w": np.zeros(1)}, "epoch": 3})
    with pytest.raises(pth.PthFormatError, match=r"no entry 'model'.*'net'"):
        pth.state_dict({"net": {}}, key="model")
    with pytest.raises(pth.PthFormatError, match=r"'epoch' is not a state dict"):
        pth.state_dict({"epoch": 3}, key="epoch")
    with pytest.raises(pth.PthFormatError, match=r"it is a list"):
        pth.state_dict([np.zeros(1)])


def test_map_key_error_names_the_file(tmp_path):
    path = tmp_path / "wrapped.pth"
    write_zip(str(path), {"net": sample()[0]})
    with pytest.raises(pth.PthFormatError, match=r"wrapped\.pth: no state dict.*'net'"):
        pth.load_pth(path, map_key="auto")


# --- refusing code ------------------------------------------------------------


def call_pickle(module, name, argument):
    """A protocol-2 pickle that calls module.name(argument) when loaded."""
    return (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X"
            + struct.pack("<I", len(argument.encode())) + argument.encode() + b"\x85R.")


MALICIOUS = [
    ("os", "system", "touch {sentinel}"),
    ("posix", "system", "touch {sentinel}"),
    ("builtins", "exec", "open(r'{sentinel}', 'w').close()"),
    ("builtins", "eval", "open(r'{sentinel}', 'w').close()"),
    ("subprocess", "getoutput", "touch {sentinel}"),
    ("numpy.core.multiarray", "_reconstruct", "x"),
    ("torch", "load", "{sentinel}"),
]


@pytest.mark.parametrize("module,name,argument", MALICIOUS)
@pytest.mark.parametrize("where", ["zip", "legacy_object", "legacy_magic", "legacy_keys"])
def test_malicious_global_is_refused_and_nothing_runs(tmp_path, module, name, argument,
                                                      where):
    sentinel = tmp_path / "sentinel"
    evil = call_pickle(module, name, argument.format(sentinel=sentinel))
    path = tmp_path / "evil.pth"
    if where == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", evil)
    else:
        parts = [pickle.dumps(x, 2) for x in (pth.LEGACY_MAGIC, 1001, {}, {}, [])]
        parts[{"legacy_magic": 0, "legacy_object": 3, "legacy_keys": 4}[where]] = evil
        path.write_bytes(b"".join(parts))
    with pytest.raises(pth.PthSecurityError) as caught:
        pth.load_pth(path)
    assert str(path) in str(caught.value) and f"{module}.{name}" in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert not sentinel.exists()


def test_a_refused_global_in_a_non_model_entry_refuses_the_file(tmp_path):
    sentinel = tmp_path / "sentinel"

    class Evil:
        def __reduce_ex__(self, protocol):
            return Global("os", "system"), (f"touch {sentinel}",)

    path = tmp_path / "checkpoint.pth"
    write_zip(str(path), {"model": sample()[0], "args": Evil()})
    with pytest.raises(pth.PthSecurityError, match="os.system"):
        pth.load_pth(path)
    assert not sentinel.exists()


def short_str(text):
    return b"X" + struct.pack("<I", len(text)) + text.encode()


@pytest.mark.parametrize("module,name,attribute", [
    ("collections", "OrderedDict", "fn"),
    ("torch", "FloatStorage", "dtype"),
    ("torch", "float32", "name"),
])
def test_build_cannot_alter_the_allowed_stand_ins(tmp_path, module, name, attribute):
    # GLOBAL module.name, then BUILD with (None, {attribute: "float64"}):
    # would set a slot of the shared stand-in if it allowed it.
    evil = (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"N}" + short_str(attribute)
            + short_str("float64") + b"s\x86b.")
    path = tmp_path / "build.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("build/data.pkl", evil)
    with pytest.raises(pth.PthSecurityError, match=f"{module}.{name}"):
        pth.load_pth(path)
    assert getattr(pth.ALLOWED_GLOBALS[f"{module}.{name}"], attribute) != "float64"
    tensors, expected = sample()
    write_zip(str(path), tensors)
    assert_same_arrays(pth.load_pth(path), expected)


def test_allow_list_holds_only_tensor_machinery_and_containers():
    names = set(pth.ALLOWED_GLOBALS)
    assert {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
            "torch._utils._rebuild_parameter", "torch.FloatStorage",
            "torch.storage.UntypedStorage", "torch.Size", "torch.float32"} <= names
    for name in names:
        assert name.startswith(("torch.", "collections.")), name
    assert not names & {"builtins.eval", "builtins.getattr", "os.system", "torch.load",
                        "numpy.core.multiarray._reconstruct", "torch.nn.Module",
                        "torch._tensor._rebuild_from_type_v2"}


# --- broken files -------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_truncated_zip_gives_a_format_error(tmp_path, keep):
    path = tmp_path / "cut.pth"
    write_zip(str(path), sample()[0])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(pth.PthFormatError, match=r"cut\.pth: .*(truncated|damaged)"):
        pth.load_pth(path)


@pytest.mark.parametrize("cut", [5, 60, 400, -200, -3])
def test_truncated_legacy_file_gives_a_format_error(tmp_path, cut):
    data = legacy_bytes(sample()[0])
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:cut])
    with pytest.raises(pth.PthFormatError, match=r"cut\.pth: ") as caught:
        pth.load_pth(path)
    assert "truncated" in str(caught.value) or "not a torch checkpoint" in str(caught.value)


def test_zip_missing_a_storage_record_names_it(tmp_path):
    path = tmp_path / "holes.pth"
    write_zip(str(path), sample()[0], skip=("2",))
    with pytest.raises(pth.PthFormatError,
                       match=r"holes\.pth: .*'holes/data/2' is missing"):
        pth.load_pth(path)


def test_storage_record_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "short.pth"
    tensors, _ = sample()
    write_zip(str(path), tensors, skip=("0",))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("short/data/0", b"\0" * 8)
    with pytest.raises(pth.PthFormatError,
                       match=r"'short/data/0' has 8 bytes, expected 48"):
        pth.load_pth(path)


def test_tensor_reading_past_its_storage_is_refused(tmp_path):
    storage = Storage(np.zeros(4, np.float32), "float32")
    path = tmp_path / "overrun.pth"
    write_zip(str(path), {"w": Tensor(storage, 2, (2, 2), (2, 1))})
    with pytest.raises(pth.PthFormatError, match=r"reads element 5 .* which has 4"):
        pth.load_pth(path)


def test_wrong_legacy_magic_is_refused(tmp_path):
    path = tmp_path / "magic.pth"
    path.write_bytes(legacy_bytes(sample()[0], magic=0x1950A86A20F9469CFC6D))
    with pytest.raises(pth.PthFormatError, match=r"magic\.pth: wrong magic number"):
        pth.load_pth(path)


def test_wrong_legacy_protocol_version_is_refused(tmp_path):
    path = tmp_path / "version.pth"
    data = legacy_bytes(sample()[0])
    magic = pickle.dumps(pth.LEGACY_MAGIC, 2)
    rest = data[len(magic) + len(pickle.dumps(1001, 2)):]
    path.write_bytes(magic + pickle.dumps(1000, 2) + rest)
    with pytest.raises(pth.PthFormatError, match="protocol version 1000"):
        pth.load_pth(path)


def test_legacy_storage_count_disagreeing_with_the_pickle_is_refused(tmp_path):
    storage = Storage(np.zeros(3, np.float32), "float32")
    data = bytearray(legacy_bytes({"w": Tensor(storage, 0, (3,), (1,))}))
    at = len(data) - 12 - 8
    data[at: at + 8] = struct.pack("<q", 2)
    path = tmp_path / "count.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(pth.PthFormatError, match="records 2 elements, the pickle says 3"):
        pth.load_pth(path)


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"hello, not a checkpoint", "not a torch checkpoint"),
    (b"PK\x03\x04" + b"\0" * 40, "damaged zip"),
])
def test_other_files_are_not_checkpoints(tmp_path, content, message):
    path = tmp_path / "other.pth"
    path.write_bytes(content)
    with pytest.raises(pth.PthFormatError, match=message):
        pth.load_pth(path)


def test_torchscript_and_tar_archives_are_named(tmp_path):
    script = tmp_path / "script.pt"
    with zipfile.ZipFile(script, "w") as archive:
        archive.writestr("script/constants.pkl", b"")
        archive.writestr("script/code/__torch__.py", b"")
    with pytest.raises(pth.PthFormatError, match="TorchScript"):
        pth.load_pth(script)
    import tarfile

    old = tmp_path / "old.pth"
    with tarfile.open(old, "w") as tar:
        info = tarfile.TarInfo("storages")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(pth.PthFormatError, match="tar format"):
        pth.load_pth(old)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        pth.load_pth(tmp_path / "absent.pth")


# --- against real torch (skipped without it) ------------------------------------
#
# Importing torch's compiler stack or torchvision after TensorFlow (which
# `keras_ssd` imports) can crash the process, so everything torch does runs
# in one child process that imports torch and this module's reader by file
# path only, never TensorFlow.

TORCH_CHILD = r"""
import collections, hashlib, importlib.util, json, os, sys, zipfile
import numpy as np
import torch

out, reader = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("pth_alone", reader)
pth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pth)
torch.manual_seed(0)
report = {"torch": torch.__version__}

# The writer's sample tensors, made by torch over the same storage sharing.
base = torch.arange(12, dtype=torch.float32) * 1.5 - 4
grid = base.reshape(3, 4)
sample = collections.OrderedDict([
    ("conv.weight", grid), ("transposed", grid.t()), ("window", grid[1:3, 1:3]),
    ("half", torch.tensor([[1.5, -2.0], [65504.0, 2.0 ** -24]], dtype=torch.float16)),
    ("scalar", torch.tensor([3, -1, -7])[2]),
    ("bf16", torch.tensor([1.0, -2.5, 3.140625, -0.0], dtype=torch.bfloat16)),
    ("mask", torch.tensor([True, False, True])),
    ("u16", torch.tensor([0, 1, 65535], dtype=torch.uint16)),
])
layer = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
layer(torch.randn(2, 3, 8, 8))  # running statistics and num_batches_tracked move
optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
layer(torch.randn(2, 3, 8, 8)).sum().backward()
optimizer.step()
# torch's own legacy loader cannot read the uint16 tensor back (its
# UntypedStorage has no dtype there), so the checkpoint torch reloads leaves it out.
without_u16 = collections.OrderedDict((k, v) for k, v in sample.items() if k != "u16")
checkpoint = {"model": layer.state_dict(), "params": list(layer.parameters()),
              "optimizer": optimizer.state_dict(), "sample": without_u16, "iteration": 7}
np.savez(os.path.join(out, "layer_expected.npz"),
         **{k: v.numpy() for k, v in layer.state_dict().items()},
         **{f"param{i}": p.detach().numpy() for i, p in enumerate(layer.parameters())},
         momentum0=optimizer.state_dict()["state"][0]["momentum_buffer"].numpy())
report["layer_metadata"] = {k: dict(v) for k, v in layer.state_dict()._metadata.items()}
for zip_format, name in [(True, "zip"), (False, "legacy")]:
    torch.save(sample, os.path.join(out, f"torch_sample_{name}.pth"),
               _use_new_zipfile_serialization=zip_format)
    path = os.path.join(out, f"torch_checkpoint_{name}.pth")
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    via = pth.load_pth(path, use_torch=True)
    np.savez(os.path.join(out, f"use_torch_{name}.npz"), **via["model"],
             **{f"sample.{k}": v for k, v in via["sample"].items()})

# Files the test's writer made: torch must read them as what they claim.
for name in ("zip", "legacy"):
    got = torch.load(os.path.join(out, f"ours_{name}.pth"), map_location="cpu",
                     weights_only=True)
    np.savez(os.path.join(out, f"torch_read_ours_{name}.npz"),
             **{k: (v.float() if v.dtype == torch.bfloat16 else v).numpy()
                for k, v in got.items()})

# use_torch=True on a malicious file.
sentinel = os.path.join(out, "sentinel")
evil = os.path.join(out, "evil.pth")
with zipfile.ZipFile(evil, "w") as archive:
    archive.writestr("evil/data.pkl", bytes.fromhex(sys.argv[3]))
    archive.writestr("evil/version", "3\n")
try:
    pth.load_pth(evil, use_torch=True)
    report["evil"] = "loaded"
except Exception as error:
    report["evil"] = type(error).__name__
report["sentinel"] = os.path.exists(sentinel)

try:
    from torchvision.models.detection import ssd300_vgg16
except ImportError:
    report["torchvision"] = None
else:
    import torchvision
    report["torchvision"] = torchvision.__version__
    weights = ssd300_vgg16(weights=None, weights_backbone=None).state_dict()
    report["ssd"] = [[k, list(v.shape), str(v.dtype),
                      hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()]
                     for k, v in weights.items()]
    for zip_format, name in [(True, "zip"), (False, "legacy")]:
        torch.save(weights, os.path.join(out, f"ssd300_vgg16_{name}.pth"),
                   _use_new_zipfile_serialization=zip_format)
with open(os.path.join(out, "report.json"), "w") as file:
    json.dump(report, file)
"""


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """The folder where a torch child process saved its files (see
    TORCH_CHILD) and its report; skips when torch is not installed."""
    import importlib.util
    import json
    import subprocess
    import sys

    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    out = tmp_path_factory.mktemp("torch_files")
    tensors, _ = sample()
    write_zip(str(out / "ours_zip.pth"), tensors)
    # (without uint16, which torch's legacy loader cannot read)
    write_legacy(str(out / "ours_legacy.pth"),
                 collections.OrderedDict((k, v) for k, v in tensors.items() if k != "u16"))
    evil = call_pickle("os", "system", f"touch {out / 'sentinel'}")
    result = subprocess.run(
        [sys.executable, "-c", TORCH_CHILD, str(out), pth.__file__, evil.hex()],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(out / "report.json") as file:
        return out, json.load(file)


def writer_tensors():
    """The part of `sample()` the torch child makes too."""
    tensors, expected = sample()
    keep = ["conv.weight", "transposed", "window", "half", "scalar", "bf16", "mask", "u16"]
    return (collections.OrderedDict((k, tensors[k]) for k in keep),
            collections.OrderedDict((k, expected[k]) for k in keep))


def legacy_keys_in_order(data):
    """The storage keys of a legacy file, in the order its pickle names them."""
    import pickletools

    stream = io.BytesIO(data)
    for _ in range(3):
        pickle.load(stream)
    keys = []
    for opcode, arg, _ in pickletools.genops(stream):
        is_key = opcode.name == "BINUNICODE" and arg.isdigit() and len(arg) > 6
        if is_key and arg not in keys:
            keys.append(arg)
        if opcode.name == "STOP":
            break
    return keys


def test_writer_emits_the_bytes_torch_writes(tmp_path, torch_files):
    out, _ = torch_files
    ours, _ = writer_tensors()
    write_zip(str(tmp_path / "ours.pth"), ours)
    with zipfile.ZipFile(out / "torch_sample_zip.pth") as a, \
            zipfile.ZipFile(tmp_path / "ours.pth") as b:
        records = ["data.pkl", ".format_version", ".storage_alignment", "byteorder",
                   "version"] + [f"data/{k}" for k in range(6)]
        assert sorted(a.namelist()) == sorted(
            f"torch_sample_zip/{r}" for r in records + [".data/serialization_id"])
        for record in records:
            assert a.read(f"torch_sample_zip/{record}") == b.read(f"ours/{record}"), record
    # Legacy: the whole file, once the writer uses torch's storage keys
    # (torch names each storage by its memory address).
    data = (out / "torch_sample_legacy.pth").read_bytes()
    keys = legacy_keys_in_order(data)
    storages = list({id(t.storage): t.storage for t in ours.values()})
    assert len(keys) == len(storages) == 6
    assert legacy_bytes(ours, keys=dict(zip(storages, keys))) == data


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reader_matches_torch_saved_files(torch_files, fmt):
    out, report = torch_files
    _, expected = writer_tensors()
    assert_same_arrays(pth.load_pth(out / f"torch_sample_{fmt}.pth"), expected)
    loaded = pth.load_pth(out / f"torch_checkpoint_{fmt}.pth")
    want = np.load(out / "layer_expected.npz")
    model = loaded["model"]
    assert list(model) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                           "1.running_var", "1.num_batches_tracked"]
    for key in model:
        assert model[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(model[key], want[key], err_msg=key)
    assert int(model["1.num_batches_tracked"]) == 2
    assert {k: dict(v) for k, v in model._metadata.items()} == report["layer_metadata"]
    for i, param in enumerate(loaded["params"]):
        np.testing.assert_array_equal(param, want[f"param{i}"])
    np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["momentum_buffer"],
                                  want["momentum0"])
    assert loaded["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert loaded["optimizer"]["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert loaded["iteration"] == 7
    assert pth.state_dict(loaded) is model
    expected.pop("u16")
    assert_same_arrays(loaded["sample"], expected)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_use_torch_reads_the_same_arrays(torch_files, fmt):
    out, _ = torch_files
    via_torch = np.load(out / f"use_torch_{fmt}.npz")
    restricted = pth.load_pth(out / f"torch_checkpoint_{fmt}.pth")
    flat = dict(restricted["model"])
    flat.update((f"sample.{k}", v) for k, v in restricted["sample"].items())
    assert sorted(via_torch.files) == sorted(flat)
    for key, array in flat.items():
        assert via_torch[key].dtype == array.dtype, key
        np.testing.assert_array_equal(via_torch[key], array, err_msg=key)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_loads_the_writer_files(torch_files, fmt):
    out, _ = torch_files
    got = np.load(out / f"torch_read_ours_{fmt}.npz")
    _, expected = sample()
    if fmt == "legacy":
        expected.pop("u16")
    assert sorted(got.files) == sorted(expected)
    for key, want in expected.items():
        assert got[key].dtype == want.dtype, key
        np.testing.assert_array_equal(got[key], want, err_msg=key)


def test_use_torch_refuses_a_malicious_file(torch_files):
    _, report = torch_files
    assert report["evil"] == "PthSecurityError"
    assert report["sentinel"] is False


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torchvision_ssd300_state_dict_reads_exactly(torch_files, fmt):
    import hashlib

    out, report = torch_files
    if report["torchvision"] is None:
        pytest.skip("torchvision not installed")
    loaded = pth.load_pth(out / f"ssd300_vgg16_{fmt}.pth", map_key="auto")
    assert [k for k, *_ in report["ssd"]] == list(loaded)
    assert sum(v.size for v in loaded.values()) == 35_641_826
    assert loaded["backbone.features.0.weight"].shape == (64, 3, 3, 3)
    assert loaded["head.classification_head.module_list.0.weight"].shape == (364, 512, 3, 3)
    for key, shape, dtype, digest in report["ssd"]:
        array = loaded[key]
        assert list(array.shape) == shape and f"torch.{array.dtype}" == dtype, key
        assert hashlib.sha256(array.tobytes()).hexdigest() == digest, key
