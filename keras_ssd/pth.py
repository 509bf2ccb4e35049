"""Read PyTorch `.pth` checkpoints into numpy, without torch and without
running code from the file.

`torch.save` writes a pickle, and unpickling a downloaded file with the
standard `pickle` module can call any Python function the file names. This
module reads both torch formats with a restricted unpickler: the only
globals a file may name are the handful torch uses to describe tensors
(`torch._utils._rebuild_tensor_v2` and relatives, the storage classes, the
dtype objects, `torch.Size`) and two plain containers
(`collections.OrderedDict`, `collections.Counter`). Each maps to a stand-in
defined here; torch is never imported, and any other global is refused with
`PthSecurityError` before anything runs.

Formats:

* **zip** (`torch.save` since torch 1.6): a zip archive with
  `<name>/data.pkl` (the pickle), `<name>/data/<key>` (one raw storage per
  key), `<name>/byteorder`, `<name>/version`.
* **legacy** (torch 0.4 to 1.5, and `_use_new_zipfile_serialization=False`):
  consecutive pickles in one file: the magic number, the protocol version
  (1001), a dict of system info, the object, the sorted list of storage
  keys; then, per key in that order, an 8-byte little-endian element count
  and the storage's raw bytes.

The older tar format (torch < 0.4) and TorchScript archives are refused with
`PthFormatError`.

Sizes a file declares are checked before anything is allocated for them:
each pickle's opcodes are scanned first (a `BINBYTES8` or `BINUNICODE8`
may not declare more bytes than follow it), every zip entry's declared
size against its compressed size (`keras_ssd.archives`), each storage against
the bytes in the file, and the arrays made from the storages against the
stored bytes (`MAX_COPY_FACTOR`, `COPY_SLACK_BYTES`: a tensor whose
strides repeat a small storage into gigabytes, or hundreds of tensors
viewing one storage, are refused). Peak memory stays within a small multiple
of the file's tensor bytes; see docs/security.md.

Tensors come back as C-contiguous numpy arrays that own their memory
(views with any strides and offsets are copied out). bfloat16 tensors come
back as float32 (exact: the 16 stored bits are the top half of a float32),
so the result never depends on `ml_dtypes` being installed.

Example:

```python
from keras_ssd import pth

checkpoint = pth.load_pth("vgg_ssd300_voc0712.pth")   # {"model": {...}, ...}
weights = pth.state_dict(checkpoint)                   # {"backbone.vgg.0.weight": ...}
weights = pth.load_pth("ssd300_mAP_77.43_v2.pth", map_key="auto")  # the state dict directly
```
"""

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

from keras_ssd.archives import declared_size_problem

__all__ = [
    "PthError",
    "PthFormatError",
    "PthSecurityError",
    "ALLOWED_GLOBALS",
    "load_pth",
    "state_dict",
]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

#: The arrays made from a file may total at most this many times its stored
#: tensor bytes (plus `COPY_SLACK_BYTES`): a tensor whose strides repeat
#: its storage, or many tensors viewing one storage, each copied out.
MAX_COPY_FACTOR = 4
COPY_SLACK_BYTES = 16 << 20


class PthError(ValueError):
    """Base class of the errors this module raises for a file."""


class PthFormatError(PthError):
    """The file is not a readable torch checkpoint (corrupt, truncated,
    unknown format, a storage record missing)."""


class PthSecurityError(PthError):
    """The file's pickle names a global outside the allow-list; nothing from
    the file was run."""


# --- dtypes ---------------------------------------------------------------

#: torch dtype name -> (numpy dtype it is read as, stored bytes per element).
#: bfloat16 is read as raw uint16 bits and widened to float32 afterwards.
_DTYPES = {
    "float32": (np.dtype("<f4"), 4),
    "float64": (np.dtype("<f8"), 8),
    "float16": (np.dtype("<f2"), 2),
    "bfloat16": (np.dtype("<u2"), 2),
    "int64": (np.dtype("<i8"), 8),
    "int32": (np.dtype("<i4"), 4),
    "int16": (np.dtype("<i2"), 2),
    "int8": (np.dtype("i1"), 1),
    "uint8": (np.dtype("u1"), 1),
    "uint16": (np.dtype("<u2"), 2),
    "uint32": (np.dtype("<u4"), 4),
    "uint64": (np.dtype("<u8"), 8),
    "bool": (np.dtype("?"), 1),
    "complex64": (np.dtype("<c8"), 8),
    "complex128": (np.dtype("<c16"), 16),
}

#: Other names of the same dtypes under `torch.<name>`.
_DTYPE_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
}

#: Legacy typed storage class -> dtype name.
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class _StandIn:
    """Base of the objects the unpickler builds: no `__dict__`, and BUILD
    (`__setstate__`) is refused, so a pickle cannot alter one, in particular
    not the shared stand-ins in `ALLOWED_GLOBALS`."""

    __slots__ = ()

    def __setstate__(self, state):
        raise PthSecurityError(f"refusing to BUILD {self!r} from pickle state")

    def __reduce__(self):
        raise TypeError("pth stand-ins cannot be pickled")


class _Dtype(_StandIn):
    """Stands in for a `torch.<dtype>` object named by the pickle."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType(_StandIn):
    """Stands in for a storage class (`torch.FloatStorage`,
    `torch.storage.UntypedStorage`, ...); `dtype` is None for untyped ones
    (bytes)."""

    __slots__ = ("qualname", "dtype")

    def __init__(self, qualname, dtype):
        self.qualname = qualname
        self.dtype = dtype

    def __repr__(self):
        return self.qualname


class _Storage(_StandIn):
    """One storage record: its dtype, element count and (once read) bytes.

    A legacy view of another storage has `root` and an element `offset`."""

    __slots__ = ("key", "dtype", "numel", "data", "root", "offset")

    def __init__(self, key, dtype, numel, root=None, offset=0):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data = None
        self.root = root
        self.offset = offset

    def __repr__(self):
        return f"<storage {self.key!r}>"


class _PendingTensor(_StandIn):
    """A tensor whose storage bytes may not have been read yet (the legacy
    format stores them after the pickle); replaced by an array at the end."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype", "negate")

    def __init__(self, storage, offset, size, stride, dtype=None, negate=False):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype = dtype or storage.dtype
        self.negate = negate

    def __repr__(self):
        return f"<tensor {self.size} of storage {self.storage.key!r}>"


class _Global(_StandIn):
    """What `find_class` hands the unpickler for an allowed global: a
    callable wrapper around one of this module's functions."""

    __slots__ = ("qualname", "fn")

    def __init__(self, qualname, fn):
        self.qualname = qualname
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __repr__(self):
        return self.qualname


# --- the stand-ins for torch's rebuild functions ----------------------------


def _check_int(value, what):
    if type(value) is not int:  # bool is excluded on purpose
        raise PthFormatError(f"{what} is {value!r}, not an int")
    return value


def _check_shape(value, what):
    if not isinstance(value, tuple):
        raise PthFormatError(f"{what} is {value!r}, not a tuple")
    for item in value:
        if type(item) is not int or item < 0:
            raise PthFormatError(f"{what} {value!r} holds {item!r}")
    return tuple(value)


def _pending(storage, offset, size, stride, dtype=None, metadata=None):
    if not isinstance(storage, _Storage):
        raise PthFormatError(
            f"a tensor's storage is {type(storage).__name__}, not a storage record")
    offset = _check_int(offset, "a tensor's storage offset")
    size = _check_shape(size, "a tensor's size")
    stride = _check_shape(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise PthFormatError(f"a tensor's size {size} and stride {stride} differ in length")
    if offset < 0:
        raise PthFormatError(f"a tensor's storage offset is {offset}")
    negate = False
    if metadata:
        if not isinstance(metadata, dict):
            raise PthFormatError(f"a tensor's metadata is {metadata!r}")
        negate = bool(metadata.get("neg", False))
        if metadata.get("conj", False):
            raise PthFormatError("a tensor with the lazy conjugate bit is not supported")
    return _PendingTensor(storage, offset, size, stride, dtype=dtype, negate=negate)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _pending(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _pending(storage, storage_offset, size, stride, metadata=metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _Dtype):
        raise PthFormatError(f"a tensor's dtype is {dtype!r}")
    return _pending(storage, storage_offset, size, stride, dtype=dtype.name,
                    metadata=metadata)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _PendingTensor):
        raise PthFormatError(f"a parameter's data is {type(data).__name__}, not a tensor")
    return data


def _ordered_dict(*args):
    if args and not (len(args) == 1 and isinstance(args[0], (list, tuple, dict))):
        raise PthFormatError("collections.OrderedDict called with unexpected arguments")
    return collections.OrderedDict(*args)


def _counter(*args):
    if args and not (len(args) == 1 and isinstance(args[0], (list, tuple, dict))):
        raise PthFormatError("collections.Counter called with unexpected arguments")
    return collections.Counter(*args)


def _size(*args):
    if len(args) != 1:
        raise PthFormatError("torch.Size called with unexpected arguments")
    return _check_shape(tuple(args[0]) if isinstance(args[0], (list, tuple)) else args[0],
                        "torch.Size")


def _build_allowed():
    allowed = {
        "collections.OrderedDict": _ordered_dict,
        "collections.Counter": _counter,
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch.Size": _size,
    }
    globals_ = {name: _Global(name, fn) for name, fn in allowed.items()}
    for cls, dtype in _STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda"):
            qualname = f"{module}.{cls}"
            globals_[qualname] = _StorageType(qualname, dtype)
    for qualname in ("torch.storage.UntypedStorage", "torch.UntypedStorage",
                     "torch.storage._UntypedStorage", "torch.cuda.UntypedStorage"):
        globals_[qualname] = _StorageType(qualname, None)
    for qualname in ("torch.storage.TypedStorage", "torch.TypedStorage"):
        # The class itself is never a persistent id's storage type in files
        # torch writes, but it is harmless as a named type.
        globals_[qualname] = _StorageType(qualname, None)
    for name in list(_DTYPES) + list(_DTYPE_ALIASES):
        globals_[f"torch.{name}"] = _Dtype(_DTYPE_ALIASES.get(name, name))
    return globals_


#: Every global a `.pth` file may name, `module.name` -> stand-in.
ALLOWED_GLOBALS = _build_allowed()


# --- unpickling -------------------------------------------------------------


def _ascii(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves globals only from `ALLOWED_GLOBALS`
    and storages only through `persistent_load`."""

    def __init__(self, file, path, storage_for):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._storage_for = storage_for

    def find_class(self, module, name):
        qualname = f"{module}.{name}"
        found = ALLOWED_GLOBALS.get(qualname)
        if found is None:
            raise PthSecurityError(
                f"{self._path}: refusing to load: the pickle names the global "
                f"{qualname!r}, which is not one torch uses for tensors "
                f"(allowed: tensor rebuild functions, storage and dtype types, "
                f"torch.Size, collections.OrderedDict/Counter); nothing from the "
                f"file was run"
            )
        return found

    def persistent_load(self, pid):
        if self._storage_for is None:
            raise PthFormatError(f"{self._path}: unexpected persistent id {pid!r}")
        if not isinstance(pid, tuple) or not pid or _ascii(pid[0]) != "storage":
            raise PthFormatError(f"{self._path}: unknown persistent id {pid!r}")
        return self._storage_for(pid)


_MEMO_OPCODES = ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET")


def _scan_pickle(file, path):
    """Walk one pickle's opcodes without building anything, so that a
    length the pickle declares (`BINBYTES8` of 2**40 bytes) is checked
    against the bytes that follow, and a memo index (`LONG_BINPUT 57158769`:
    the C unpickler's memo is an array, grown to the index) against the
    pickle's size, before the unpickler allocates either; the position of
    `file` is restored."""
    import pickletools

    start = file.tell()
    limit = len(file.getbuffer()) - start  # no pickle holds more objects than bytes
    try:
        for opcode, arg, _ in pickletools.genops(file):
            if opcode.name in _MEMO_OPCODES and arg > limit:
                raise PthFormatError(
                    f"{path}: corrupt pickle data (memo index {arg} in a pickle of "
                    f"{limit} bytes)")
            if opcode.name == "STOP":
                break
    except PthError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, struct.error,
            UnicodeDecodeError) as error:
        raise PthFormatError(f"{path}: corrupt pickle data ({error})") from None
    finally:
        file.seek(start)


def _unpickle(file, path, storage_for=None):
    _scan_pickle(file, path)
    try:
        return _RestrictedUnpickler(file, path, storage_for).load()
    except PthError as error:
        message = str(error)
        if not message.startswith(str(path)):
            raise type(error)(f"{path}: {message}") from None
        raise
    except EOFError:
        raise PthFormatError(
            f"{path}: the file ends inside a pickle (truncated?)") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, OverflowError, MemoryError, UnicodeDecodeError,
            RecursionError, struct.error) as error:
        raise PthFormatError(
            f"{path}: corrupt pickle data ({type(error).__name__}: {error})") from None


def _storage_args(pid, path, legacy):
    """(storage type, key, location, numel[, view metadata]) from a
    persistent id, checked."""
    want = 6 if legacy else 5
    if len(pid) != want:
        raise PthFormatError(
            f"{path}: storage persistent id {pid!r} has {len(pid)} fields, expected {want}")
    storage_type, key, location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
        raise PthFormatError(
            f"{path}: storage type {storage_type!r} is not a storage class")
    key = _ascii(key)
    if not isinstance(key, str):
        raise PthFormatError(f"{path}: storage key {key!r} is not a string")
    if type(numel) is not int or numel < 0:
        raise PthFormatError(f"{path}: storage {key!r} has element count {numel!r}")
    dtype = storage_type.dtype or "uint8"
    return dtype, key, numel, (pid[5] if legacy else None)


def _check_declared_sizes(path, archive):
    """Refuse entries whose declared sizes could not be honest or would
    inflate far beyond their compressed bytes, before any is read."""
    for info in archive.infolist():
        problem = declared_size_problem(info)
        if problem is not None:
            raise PthFormatError(f"{path}: {problem}")


def _load_zip(path, archive):
    _check_declared_sizes(path, archive)
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pickles:
        if any(n.endswith("constants.pkl") for n in names):
            raise PthFormatError(
                f"{path}: a TorchScript archive (torch.jit.save), "
                f"not a torch.save checkpoint")
        raise PthFormatError(
            f"{path}: a zip file without a <name>/data.pkl record, not a torch checkpoint")
    if len(pickles) > 1:
        raise PthFormatError(f"{path}: several data.pkl records: {sorted(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    big_endian = False
    if prefix + "byteorder" in names:
        order = archive.read(prefix + "byteorder").strip()
        if order not in (b"little", b"big"):
            raise PthFormatError(f"{path}: unknown byte order {order!r}")
        big_endian = order == b"big"
    storages = {}

    def storage_for(pid):
        dtype, key, numel, _ = _storage_args(pid, path, legacy=False)
        if key in storages:
            return storages[key]
        record = f"{prefix}data/{key}"
        if record not in names:
            raise PthFormatError(f"{path}: the storage record {record!r} is missing")
        nbytes = numel * _DTYPES[dtype][1]
        # The size the zip declares is checked before reading (and again
        # after), so a record cannot inflate beyond what the pickle says.
        size = archive.getinfo(record).file_size
        data = archive.read(record) if size == nbytes else b""
        if len(data) != nbytes:
            raise PthFormatError(
                f"{path}: the storage record {record!r} has {size} bytes, "
                f"expected {nbytes} ({numel} x {dtype})")
        storage = _Storage(key, dtype, numel)
        storage.data = data
        storages[key] = storage
        return storage

    try:
        pickled = archive.read(pickles[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise PthFormatError(f"{path}: cannot read {pickles[0]!r}: {error}") from None
    try:
        obj = _unpickle(io.BytesIO(pickled), path, storage_for)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise PthFormatError(f"{path}: cannot read a storage record: {error}") from None
    return obj, big_endian, sum(len(s.data) for s in storages.values())


def _load_legacy(path, file):
    try:
        magic = _unpickle(file, path)
    except PthFormatError:
        raise PthFormatError(
            f"{path}: not a torch checkpoint: neither a zip archive nor a legacy "
            f"torch file (which starts with a pickled magic number)") from None
    if magic != LEGACY_MAGIC:
        raise PthFormatError(
            f"{path}: wrong magic number {magic!r} (expected {LEGACY_MAGIC:#x}); "
            f"not a torch checkpoint, or a corrupt one")
    version = _unpickle(file, path)
    if version != LEGACY_PROTOCOL_VERSION:
        raise PthFormatError(
            f"{path}: unsupported legacy protocol version {version!r} (expected 1001)")
    sys_info = _unpickle(file, path)
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    storages = {}

    def storage_for(pid):
        dtype, key, numel, view = _storage_args(pid, path, legacy=True)
        root = storages.get(key)
        if root is None:
            root = storages[key] = _Storage(key, dtype, numel)
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise PthFormatError(f"{path}: storage view metadata {view!r}")
        view_key, offset, view_size = _ascii(view[0]), view[1], view[2]
        if not (type(offset) is int and type(view_size) is int
                and offset >= 0 and view_size >= 0):
            raise PthFormatError(f"{path}: storage view metadata {view!r}")
        name = ("view", view_key)
        if name not in storages:
            storages[name] = _Storage(view_key, dtype, view_size, root=root, offset=offset)
        return storages[name]

    obj = _unpickle(file, path, storage_for)
    keys = _unpickle(file, path)
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise PthFormatError(
            f"{path}: the storage key list is {type(keys).__name__}, not a list of keys")
    for key in map(_ascii, keys):
        storage = storages.get(key)
        if storage is None:
            raise PthFormatError(
                f"{path}: the file holds storage {key!r}, which no tensor names")
        head = file.read(8)
        if len(head) != 8:
            raise PthFormatError(
                f"{path}: the file ends before storage {key!r} (truncated?)")
        (count,) = struct.unpack("<q", head)
        itemsize = _DTYPES[storage.dtype][1]
        left = len(file.getbuffer()) - file.tell()
        if count * itemsize > left:
            raise PthFormatError(
                f"{path}: storage {key!r} declares {count} elements ({count * itemsize} "
                f"bytes) but the file has {left} bytes left (truncated or forged); "
                f"refused before reading")
        if count != storage.numel:
            raise PthFormatError(
                f"{path}: storage {key!r} records {count} elements, "
                f"the pickle says {storage.numel}")
        data = file.read(count * itemsize)
        if len(data) != count * itemsize:
            raise PthFormatError(
                f"{path}: the file ends inside storage {key!r}: {len(data)} of "
                f"{count * itemsize} bytes (truncated?)")
        storage.data = data
    missing = sorted(s.key for s in storages.values() if s.root is None and s.data is None)
    if missing:
        raise PthFormatError(f"{path}: no data in the file for storage(s) {missing}")
    stored = sum(len(s.data) for s in storages.values() if s.root is None)
    return obj, big_endian, stored


# --- from pending tensors to arrays -----------------------------------------


class _CopyBudget:
    """The bytes the arrays of one file may still take (see `MAX_COPY_FACTOR`)."""

    def __init__(self, stored_bytes):
        self.stored = stored_bytes
        self.left = MAX_COPY_FACTOR * stored_bytes + COPY_SLACK_BYTES

    def take(self, nbytes, path, tensor):
        if nbytes > self.left:
            raise PthFormatError(
                f"{path}: the tensors made from the file's {self.stored} stored bytes "
                f"would take more than {MAX_COPY_FACTOR} times as much (the tensor "
                f"{tensor.size} of storage {tensor.storage.key!r} needs {nbytes} more "
                f"bytes): views that repeat their storage; refused before allocating")
        self.left -= nbytes


def _to_array(tensor, path, big_endian, budget):
    storage = tensor.storage
    base_offset = 0
    if storage.root is not None:
        base_offset = storage.offset
        if storage.offset + storage.numel > storage.root.numel:
            raise PthFormatError(
                f"{path}: storage view {storage.key!r} runs past its root storage")
        root = storage.root
    else:
        root = storage
    if tensor.dtype not in _DTYPES:
        raise PthFormatError(f"{path}: unsupported tensor dtype {tensor.dtype}")
    read_dtype, itemsize = _DTYPES[tensor.dtype]
    if _DTYPES[root.dtype][1] * root.numel % itemsize:
        raise PthFormatError(
            f"{path}: storage {root.key!r} does not divide into {tensor.dtype} elements")
    if big_endian:
        read_dtype = read_dtype.newbyteorder(">")
    # Offsets/strides count elements of the tensor's dtype; for untyped
    # (byte) storages, the storage numel counts bytes.
    numel = _DTYPES[root.dtype][1] * root.numel // itemsize
    elements = np.frombuffer(root.data, dtype=read_dtype, count=numel)
    if storage.root is not None:
        scale = _DTYPES[storage.dtype][1] // itemsize or 1
        elements = elements[base_offset * scale: (base_offset + storage.numel) * scale]
    shape, stride, offset = tensor.size, tensor.stride, tensor.offset
    count = 1
    for n in shape:
        count *= n
    # Output bytes, with the float32 widening of bfloat16 and the temporary
    # of a big-endian or negated copy counted once more.
    out_itemsize = 4 if tensor.dtype == "bfloat16" else itemsize
    extra = count * itemsize if (big_endian or tensor.negate
                                 or tensor.dtype == "bfloat16") else 0
    budget.take(count * out_itemsize + extra, path, tensor)
    if 0 in shape:
        array = np.zeros(shape, dtype=read_dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        if last >= elements.size:
            raise PthFormatError(
                f"{path}: a tensor of size {shape}, stride {stride}, offset {offset} "
                f"reads element {last} of storage {storage.key!r}, "
                f"which has {elements.size}")
        view = np.lib.stride_tricks.as_strided(
            elements[offset:], shape=shape, strides=tuple(s * itemsize for s in stride),
            writeable=False)
        array = np.array(view, order="C", copy=True)
    if read_dtype.byteorder == ">":
        array = array.astype(read_dtype.newbyteorder("="))
    if tensor.dtype == "bfloat16":
        widened = np.empty(array.shape, np.float32)
        widened.view(np.uint32)[...] = array.astype(np.uint32) << 16
        array = widened
    if tensor.negate:
        array = -array
    return array


def _resolve(obj, path, big_endian, stored_bytes):
    """Replace every pending tensor in `obj` by its array, in place for
    dicts and lists (tuples are rebuilt); the arrays may total what
    `_CopyBudget(stored_bytes)` allows."""
    seen = {}
    budget = _CopyBudget(stored_bytes)

    def walk(value):
        if isinstance(value, _PendingTensor):
            key = id(value)
            if key not in seen:
                seen[key] = _to_array(value, path, big_endian, budget)
            return seen[key]
        if isinstance(value, (_Storage, _Global, _StorageType, _Dtype)):
            return value
        key = id(value)
        if key in seen:
            return seen[key]
        if isinstance(value, dict):
            seen[key] = value
            for k in list(value):
                value[k] = walk(value[k])
            if hasattr(value, "__dict__"):
                for k in list(vars(value)):
                    setattr(value, k, walk(getattr(value, k)))
            return value
        if isinstance(value, list):
            seen[key] = value
            for i, item in enumerate(value):
                value[i] = walk(item)
            return value
        if isinstance(value, tuple):
            result = tuple(walk(item) for item in value)
            seen[key] = result
            return result
        if isinstance(value, (set, frozenset)):
            return value
        return value

    return walk(obj)


# --- public API ---------------------------------------------------------------


def _load_with_torch(path):
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise PthSecurityError(
            f"{path}: torch.load(weights_only=True) refused the file: {error}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise PthFormatError(
            f"{path}: torch.load could not read the file: {error}") from None
    seen = {}

    def walk(value):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            return tensor.resolve_neg().numpy().copy()
        key = id(value)
        if key in seen:
            return seen[key]
        if isinstance(value, dict):
            seen[key] = value
            for k in list(value):
                value[k] = walk(value[k])
            return value
        if isinstance(value, list):
            seen[key] = value
            value[:] = [walk(item) for item in value]
            return value
        if isinstance(value, tuple):
            return tuple(walk(item) for item in value)
        return value

    return walk(obj)


def load_pth(path, map_key=None, *, use_torch=False):
    """Read a `.pth` checkpoint into numpy without running code from it.

    Args:
        path: the file (zip or legacy torch format).
        map_key: None returns the whole unpickled object. A string returns
            the state dict inside it via `state_dict(obj, key=map_key)`;
            `"auto"` finds it as `state_dict(obj)` does (a bare state dict,
            or the `"model"` / `"state_dict"` entry).
        use_torch: read with `torch.load(path, map_location="cpu",
            weights_only=True)` instead (torch must be installed) and convert
            the tensors to numpy. The default reader needs no torch.

    Returns:
        The unpickled object (typically an `OrderedDict` of parameter name
        -> `numpy.ndarray`, or a dict holding one), with every tensor
        replaced by a C-contiguous numpy array of its dtype (bfloat16 as
        float32); or the state dict when `map_key` is given.

    Raises:
        PthSecurityError: the pickle names a global outside
            `ALLOWED_GLOBALS` (e.g. `os.system`); nothing was run.
        PthFormatError: not a torch checkpoint, corrupt or truncated, or a
            storage record missing.
        FileNotFoundError: no such file.

    Example:

    ```python
    weights = load_pth("ssd300_vgg16_coco-b556d3b4.pth")
    weights["backbone.features.0.weight"].shape   # (64, 3, 3, 3), OIHW
    ```
    """
    path = os.fspath(path)
    if use_torch:
        obj = _load_with_torch(path)
    else:
        obj = _load_restricted(path)
    if map_key is None:
        return obj
    return state_dict(obj, key=None if map_key == "auto" else map_key, path=path)


def _load_restricted(path):
    with open(path, "rb") as file:
        head = file.read(512)
        file.seek(0)
        if not head:
            raise PthFormatError(f"{path}: the file is empty")
        if head[:4] == b"PK\x03\x04":
            try:
                archive = zipfile.ZipFile(file)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError,
                    NotImplementedError) as error:  # NotImplementedError: zip version
                raise PthFormatError(
                    f"{path}: a damaged zip archive (truncated?): {error}") from None
            with archive:
                try:
                    obj, big_endian, stored = _load_zip(path, archive)
                except PthError:
                    raise
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
                        NotImplementedError, RuntimeError) as error:
                    # a damaged entry header, an unknown compression method,
                    # an encrypted entry (RuntimeError)
                    raise PthFormatError(
                        f"{path}: a damaged zip archive: {type(error).__name__}: "
                        f"{error}") from None
        elif len(head) >= 262 and head[257:262] == b"ustar":
            raise PthFormatError(
                f"{path}: the tar format of torch < 0.4 is not supported; re-save the "
                f"file with a newer torch")
        else:
            # The whole file, read once: its real size bounds every read below.
            file.seek(0)
            obj, big_endian, stored = _load_legacy(path, io.BytesIO(file.read()))
    try:
        return _resolve(obj, path, big_endian, stored)
    except PthError:
        raise
    except RecursionError:
        raise PthFormatError(f"{path}: the checkpoint's objects nest too deeply") from None
    except (ValueError, OverflowError, MemoryError) as error:
        raise PthFormatError(f"{path}: a tensor cannot be made ({error})") from None


def _is_state_dict(value):
    return (isinstance(value, dict) and len(value) > 0
            and all(isinstance(k, str) for k in value)
            and all(isinstance(v, np.ndarray) for v in value.values()))


def state_dict(obj, key=None, *, path=None):
    """The state dict (parameter name -> array) inside a loaded checkpoint.

    Args:
        obj: what `load_pth` returned.
        key: the top-level entry holding the state dict; None tries `obj`
            itself (a bare state dict, as torchvision and amdegroot/ssd.pytorch
            save), then the `"model"` entry (lufficc/SSD's
            `{"model": ..., "optimizer": ..., ...}`), then `"state_dict"`.
        path: the file, for error messages only.

    Returns:
        The mapping of names to numpy arrays (the object from the file, not
        a copy).

    Raises:
        PthFormatError: no state dict where one was looked for; the message
            lists the top-level keys.

    Example:

    ```python
    weights = state_dict(load_pth("vgg_ssd300_voc0712.pth"))   # its "model" entry
    ```
    """
    where = f"{path}: " if path else ""
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise PthFormatError(
                f"{where}no entry {key!r} in the checkpoint; its top-level keys are "
                f"{_describe_keys(obj)}")
        if not _is_state_dict(obj[key]):
            raise PthFormatError(
                f"{where}the entry {key!r} is not a state dict "
                f"(a mapping of names to tensors)")
        return obj[key]
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for candidate in ("model", "state_dict"):
            if candidate in obj and _is_state_dict(obj[candidate]):
                return obj[candidate]
    raise PthFormatError(
        f"{where}no state dict found: the checkpoint is neither a mapping of names to "
        f"tensors nor a dict with a 'model' or 'state_dict' entry holding one; its "
        f"top-level keys are {_describe_keys(obj)}; pass key= to pick an entry")


def _describe_keys(obj):
    if not isinstance(obj, dict):
        return f"(none: it is a {type(obj).__name__})"
    keys = list(obj)
    shown = ", ".join(repr(k) for k in keys[:20])
    return f"[{shown}{', ...' if len(keys) > 20 else ''}]"
