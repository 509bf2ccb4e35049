"""Property-based fuzzing of the `.pth` reader (Hypothesis): every mutation of
a small valid file, zip and legacy, byte edits anywhere or edits of the
pickle inside a re-made zip, gives arrays or a `PthFormatError` /
`PthSecurityError` naming the file, never another exception, and never an
allocation beyond a bound (traced peak memory). The number of cases per
fuzzer is `KERAS_SSD_FUZZ_EXAMPLES` (see tests/conftest.py)."""

import os
import tempfile
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_pth import legacy_bytes, sample, write_zip  # noqa: E402

from keras_ssd import pth  # noqa: E402

#: Peak traced memory one case may allocate: the files hold under 1 kB of
#: tensors, so anything near this is a size taken from the file unchecked.
PEAK_BOUND = 32 << 20
CASE_SECONDS = 10

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _zip_bytes():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "m.pth")
        write_zip(path, sample()[0])
        with open(path, "rb") as f:
            return f.read()


ZIP = _zip_bytes()
LEGACY = legacy_bytes(sample()[0])
with zipfile.ZipFile(__import__("io").BytesIO(ZIP)) as _archive:
    ENTRIES = {n: _archive.read(n) for n in _archive.namelist()}
PICKLE = ENTRIES["m/data.pkl"]


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="keras_ssd_pth_fuzz_") as path:
        yield path


def arrays_or_pth_error(path):
    started = time.monotonic()
    tracemalloc.start()
    try:
        obj = pth.load_pth(path)
    except pth.PthError as e:
        assert str(e).startswith(path), str(e)
        obj = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_BOUND, peak
    assert time.monotonic() - started < CASE_SECONDS
    if isinstance(obj, dict):
        for value in obj.values():
            assert not hasattr(value, "fn")  # no stand-in callable leaks out
            if isinstance(value, np.ndarray):
                assert value.flags.c_contiguous


def mutate(data, edits):
    data = bytearray(data)
    for at, new in edits:
        at %= max(len(data), 1)
        data[at : at + 1] = new
    return bytes(data)


edits = st.lists(
    st.tuples(st.integers(0, 1 << 20), st.binary(max_size=4)), min_size=1, max_size=6
)


@FUZZ
@given(edits=edits, cut=st.none() | st.integers(0, len(LEGACY)))
def test_fuzzed_legacy_files_give_arrays_or_a_pth_error(folder, edits, cut):
    path = os.path.join(folder, "legacy.pth")
    data = mutate(LEGACY, edits)
    with open(path, "wb") as f:
        f.write(data if cut is None else data[:cut])
    arrays_or_pth_error(path)


@FUZZ
@given(edits=edits)
def test_fuzzed_zip_files_give_arrays_or_a_pth_error(folder, edits):
    path = os.path.join(folder, "zip.pth")
    with open(path, "wb") as f:
        f.write(mutate(ZIP, edits))
    arrays_or_pth_error(path)


@FUZZ
@given(edits=edits, deflate=st.booleans())
def test_fuzzed_pickles_in_a_well_formed_zip_give_arrays_or_a_pth_error(
    folder, edits, deflate
):
    path = os.path.join(folder, "m.pth")
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in ENTRIES.items():
            archive.writestr(name, mutate(PICKLE, edits) if name == "m/data.pkl" else data)
    arrays_or_pth_error(path)
