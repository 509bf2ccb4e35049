"""The CPU this process runs on, and the tuning choices that follow it.

The speed-ups of `keras_ssd.accel` were measured on particular CPUs, and
what wins on one can lose on another: the Winograd tile table
(`keras_ssd.accel.winograd_conv.table_tile`) comes from a CPU with AVX-512
and native bfloat16, and bfloat16 only pays where the CPU computes it
natively (AVX512_BF16 or AMX), elsewhere it is emulated. This module reads
the CPU once and names its *kind*, the key every per-machine choice uses:

| kind | CPUs | native bfloat16 |
|---|---|---|
| `x86-avx512-bf16-amx` | Intel Xeon with AMX (Sapphire Rapids and later) | yes |
| `x86-avx512-bf16` | AMD Zen 4 / Zen 5, Intel Cooper Lake | yes |
| `x86-avx512` | AVX-512 without bfloat16 (e.g. Skylake-X) | no |
| `x86-avx2` | AVX2 + FMA only | no |
| `other` | anything else (non-x86, or no /proc/cpuinfo) | no |

It also holds the per-machine tuning cache: a JSON file per kind under
`$KERAS_SSD_CACHE_DIR/tuning/` (default `~/.cache/keras_ssd/tuning/`),
where choices measured at first use are kept (`TuningCache`), and the
per-kind table of the XLA choice for TensorFlow on CPU
(`cpu_jit_compile`).

Overrides (environment):

- `KERAS_SSD_CPU_KIND`: use this kind instead of the detected one (to test
  a rule, or to share the choices of a kind you know your CPU behaves like);
  `native_bfloat16()` follows it (a kind with a `bf16` part is native).
- `KERAS_SSD_CACHE_DIR`: keras-ssd's cache folder (default
  `$XDG_CACHE_HOME/keras_ssd`, i.e. `~/.cache/keras_ssd`).

Example:

>>> from keras_ssd.accel import machine
>>> machine.machine_kind()
'x86-avx512-bf16'
>>> print(machine.describe())
AMD EPYC (AuthenticAMD family 26 model 2); kind x86-avx512-bf16; avx2 fma avx512f ...
"""

import dataclasses
import functools
import json
import os
import platform
import re
import tempfile
import threading
import warnings

KIND_ENV = "KERAS_SSD_CPU_KIND"
CACHE_ENV = "KERAS_SSD_CACHE_DIR"

#: The flags that decide a kind (and that benchmarks print).
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
         "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")

#: The kinds `machine_kind()` detects, most capable first.
KINDS = ("x86-avx512-bf16-amx", "x86-avx512-bf16", "x86-avx512", "x86-avx2", "other")

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_KIND_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")

#: `jit_compile` for TensorFlow on CPU, per kind (`cpu_jit_compile`). XLA
#: compiles the whole SSD; plain graphs run the convolutions through oneDNN.
#: Measured for the SSD300 forward pass at batch 1 (figures in
#: `docs/performance.md`): on every kind measured XLA was no faster than the
#: default beyond the noise of a shared machine, so it stays off. Add a kind
#: here once XLA measures faster on it.
CPU_JIT_COMPILE = {
    "x86-avx512-bf16": False,
    "x86-avx512-bf16-amx": False,
}

#: `jit_compile` for TensorFlow on CPU on kinds not in `CPU_JIT_COMPILE`.
DEFAULT_CPU_JIT_COMPILE = False


@dataclasses.dataclass(frozen=True)
class CPUFeatures:
    """What `/proc/cpuinfo` says about the first CPU.

    Attributes:
        vendor: e.g. `"AuthenticAMD"`, `"GenuineIntel"` (`""` when unknown).
        model_name: e.g. `"AMD EPYC 9R14 96-Core Processor"`.
        family: CPU family number, or `None`.
        model: model number, or `None`.
        flags: the flags of `FLAGS` the CPU has.
        arch: `platform.machine()`, e.g. `"x86_64"`, `"aarch64"`.
    """

    vendor: str
    model_name: str
    family: object
    model: object
    flags: frozenset
    arch: str = ""

    def as_dict(self):
        """The features as JSON-ready values (flags sorted)."""
        out = dataclasses.asdict(self)
        out["flags"] = sorted(self.flags)
        return out


def _int_or_none(text):
    try:
        return int(str(text).strip(), 0)
    except (TypeError, ValueError):
        return None


def parse_cpuinfo(text, arch=None):
    """`CPUFeatures` from the text of `/proc/cpuinfo` (its first processor).

    Args:
        text: the file's contents.
        arch: `platform.machine()` of the CPU; defaults to this one's.

    Returns:
        `CPUFeatures`; fields the text lacks are empty (`""`, `None`,
        no flags).
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    # x86 says "flags", ARM "Features".
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    arch = platform.machine() if arch is None else arch
    return CPUFeatures(
        vendor=fields.get("vendor_id", ""),
        model_name=fields.get("model name", "") or platform.processor() or arch,
        family=_int_or_none(fields.get("cpu family")),
        model=_int_or_none(fields.get("model")),
        flags=frozenset(flags & set(FLAGS)),
        arch=arch,
    )


@functools.lru_cache(maxsize=1)
def cpu_features():
    """The `CPUFeatures` of this machine, read once.

    Reads `/proc/cpuinfo` on Linux; elsewhere (or when it cannot be read)
    the model name is `platform.processor()` and there are no flags, so the
    kind is `"other"`. Never raises.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        arch = platform.machine()
        return CPUFeatures(vendor="", model_name=platform.processor() or arch,
                           family=None, model=None, flags=frozenset(), arch=arch)


def kind_of(features):
    """The kind (see the module's table) of a `CPUFeatures`."""
    flags = features.flags
    if str(features.arch).lower() not in _X86:
        return "other"
    if "avx512f" in flags:
        if "amx_bf16" in flags:
            return "x86-avx512-bf16-amx"
        if "avx512_bf16" in flags:
            return "x86-avx512-bf16"
        return "x86-avx512"
    if "avx2" in flags and "fma" in flags:
        return "x86-avx2"
    return "other"


def kind_override():
    """The kind set by `KERAS_SSD_CPU_KIND`, or `None`.

    Raises:
        ValueError: the value is not a short lower-case name (it names a
            file of the tuning cache).
    """
    value = os.environ.get(KIND_ENV, "").strip()
    if not value:
        return None
    if not _KIND_PATTERN.match(value):
        raise ValueError(
            f"environment variable {KIND_ENV} must be a short lower-case name such as "
            f"{', '.join(repr(k) for k in KINDS)}, got {value!r}"
        )
    return value


def machine_kind():
    """A short, stable name of this CPU's kind, e.g. `"x86-avx512-bf16"`;
    `KERAS_SSD_CPU_KIND` overrides the detection."""
    return kind_override() or kind_of(cpu_features())


def native_bfloat16(kind=None):
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX):
    a kind with a `bf16` part.

    Args:
        kind: a kind; defaults to `machine_kind()` (so `KERAS_SSD_CPU_KIND`
            decides when set).
    """
    kind = machine_kind() if kind is None else kind
    return "bf16" in str(kind).split("-")


def cpu_jit_compile(kind=None):
    """`jit_compile` for TensorFlow on this CPU kind: `CPU_JIT_COMPILE`'s
    entry, else `DEFAULT_CPU_JIT_COMPILE` (False on every kind so far)."""
    kind = machine_kind() if kind is None else kind
    return CPU_JIT_COMPILE.get(kind, DEFAULT_CPU_JIT_COMPILE)


def describe():
    """One line for benchmark output: model name, vendor/family/model, kind
    (marked when overridden) and the flags that decide it."""
    f = cpu_features()
    kind = machine_kind()
    detected = kind_of(f)
    where = ", ".join(str(x) for x in (f.vendor, f"family {f.family}" if f.family is not None
                                       else None, f"model {f.model}" if f.model is not None
                                       else None) if x)
    kind_text = kind if kind == detected else f"{kind} (set by {KIND_ENV}; detected {detected})"
    flags = " ".join(x for x in FLAGS if x in f.flags) or "none of " + "/".join(FLAGS[:3])
    return (f"{f.model_name}" + (f" ({where})" if where else "")
            + f"; kind {kind_text}; native bfloat16 {'yes' if native_bfloat16() else 'no'}"
            + f"; flags: {flags}")


def features_dict():
    """This CPU's features, kind and native-bfloat16 answer as a dict for
    JSON (benchmark results)."""
    out = cpu_features().as_dict()
    out["kind"] = machine_kind()
    out["detected_kind"] = kind_of(cpu_features())
    out["native_bfloat16"] = native_bfloat16()
    return out


# ------------------------------------------------------------ tuning cache
def cache_dir():
    """keras-ssd's cache folder: `$KERAS_SSD_CACHE_DIR`, else
    `$XDG_CACHE_HOME/keras_ssd` (`~/.cache/keras_ssd`)."""
    path = os.environ.get(CACHE_ENV, "").strip()
    if not path:
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(
            os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "keras_ssd")
    return os.path.abspath(os.path.expanduser(path))


def tuning_path(kind=None):
    """The tuning cache file of a kind: `cache_dir()/tuning/<kind>.json`."""
    return os.path.join(cache_dir(), "tuning", f"{kind or machine_kind()}.json")


_FORMAT = 1


def _well_formed(cpus):
    """True for `{cpu: {section: {key: record dict}}}`."""
    return isinstance(cpus, dict) and all(
        isinstance(sections, dict) and all(
            isinstance(records, dict) and all(isinstance(r, dict) for r in records.values())
            for records in sections.values())
        for sections in cpus.values())


class TuningCache:
    """Choices measured on this machine, kept in `tuning_path(kind)`.

    The file holds, per CPU model name (machines of one kind may share a
    home folder), per section (e.g. `"winograd"`), `{key: record}`. It is
    read once, and written (merged with what the file holds then, replaced
    atomically) whenever a record is added. An unreadable or corrupt file
    gives a warning and counts as empty (and is replaced on the next
    write); a file that cannot be written gives a warning once, and the
    records stay in memory for this process. Neither raises.

    Args:
        kind: the machine kind; defaults to `machine_kind()`.
        path: the file; defaults to `tuning_path(kind)`.
    """

    def __init__(self, kind=None, path=None):
        self.kind = kind or machine_kind()
        self.path = path or tuning_path(self.kind)
        self.cpu = cpu_features().model_name or "unknown"
        self._lock = threading.RLock()
        self._data = None
        self._write_failed = False

    def _read_file(self, warn=True):
        """`{cpu: {section: {key: record}}}` of the file, `{}` when it is
        missing, unreadable or not a tuning cache."""
        try:
            with open(self.path, encoding="utf-8") as f:
                raw = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return {}  # nothing stored yet (or no folder for it)
        except (OSError, ValueError) as exc:
            if warn:
                warnings.warn(f"keras-ssd tuning cache {self.path} is unreadable "
                              f"({type(exc).__name__}: {exc}); ignoring it (the choices "
                              "are measured again and the file replaced)",
                              RuntimeWarning, stacklevel=4)
            return {}
        cpus = raw.get("cpus") if isinstance(raw, dict) else None
        if not _well_formed(cpus):
            if warn:
                warnings.warn(f"keras-ssd tuning cache {self.path} is not a tuning cache "
                              "(expected {'format': 1, 'cpus': {cpu: {section: {key: "
                              "record}}}}); ignoring it (the choices are measured again "
                              "and the file replaced)", RuntimeWarning, stacklevel=4)
            return {}
        return cpus

    def _records(self):
        if self._data is None:
            self._data = self._read_file()
        return self._data.setdefault(self.cpu, {})

    def get(self, section, key):
        """The record stored for `key` in `section`, or `None`."""
        with self._lock:
            return self._records().get(section, {}).get(key)

    def put(self, section, key, record, persist=True):
        """Store `record` (a JSON-ready dict) for `key` in `section`, and
        write the file unless `persist` is false (then it lasts for this
        process only)."""
        with self._lock:
            self._records().setdefault(section, {})[key] = dict(record)
            if persist:
                self._write(section, key, record)

    def _write(self, section, key, record):
        cpus = self._read_file(warn=False)
        cpus.setdefault(self.cpu, {}).setdefault(section, {})[key] = dict(record)
        payload = {"format": _FORMAT, "kind": self.kind, "cpus": cpus}
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tuning-", suffix=".json", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(payload, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError as exc:
            if not self._write_failed:
                self._write_failed = True
                warnings.warn(f"keras-ssd could not write its tuning cache {self.path} "
                              f"({type(exc).__name__}: {exc}); the measured choices last "
                              f"for this process only (set {CACHE_ENV} to a writable "
                              "folder)", RuntimeWarning, stacklevel=4)


_CACHES = {}
_CACHES_LOCK = threading.Lock()


def tuning_cache(kind=None):
    """The process's `TuningCache` for `kind` (default `machine_kind()`)
    at the current `tuning_path`, made once per (kind, path)."""
    kind = kind or machine_kind()
    path = tuning_path(kind)
    with _CACHES_LOCK:
        cache = _CACHES.get((kind, path))
        if cache is None:
            cache = _CACHES[(kind, path)] = TuningCache(kind, path)
        return cache


def forget_tuning_caches():
    """Drop the in-memory tuning caches (the files stay): the next look-up
    reads the file again. For tests, and after editing a file by hand."""
    with _CACHES_LOCK:
        _CACHES.clear()
