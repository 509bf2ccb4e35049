"""Hostile `.pth` files that try to exhaust memory: each is refused with a
`PthFormatError` naming the file, from the sizes it declares, before the
memory is allocated (peak traced memory stays at a few MiB).

The files are written by the minimal torch writer of tests/test_pth.py.
"""

import pickle
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from test_pth import Storage, Tensor, legacy_bytes, write_zip

from keras_ssd import pth

#: Peak traced memory allowed while a hostile file is refused.
BOUND = 8 << 20


def refused_within(path, bound=BOUND, match=None):
    """`load_pth(path)` raises PthFormatError naming the file; the peak
    traced memory meanwhile, checked against `bound`."""
    tracemalloc.start()
    try:
        with pytest.raises(pth.PthFormatError, match=match) as info:
            pth.load_pth(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(str(path))
    assert peak < bound, f"peak traced memory {peak} bytes"
    return info.value


def test_strides_spreading_a_tiny_storage_into_gigabytes_are_refused(tmp_path):
    tiny = Storage(np.zeros(4, np.float32), "float32")
    path = tmp_path / "spread.pth"
    write_zip(str(path), {"w": Tensor(tiny, 0, (8192, 8192), (0, 0))})  # 256 MiB out
    refused_within(path, match="views that repeat their storage")


def test_many_tensors_viewing_one_storage_are_refused_beyond_the_bound(tmp_path):
    shared = Storage(np.zeros(1 << 14, np.float32), "float32")  # 64 KiB
    path = tmp_path / "many.pth"
    write_zip(
        str(path), {f"t{i}": Tensor(shared, 0, (1 << 14,), (1,)) for i in range(2000)}
    )
    refused_within(path, bound=24 << 20, match="views that repeat their storage")


def test_a_few_tensors_viewing_one_storage_still_read(tmp_path):
    shared = Storage(np.arange(6, dtype=np.float32), "float32")
    path = tmp_path / "few.pth"
    write_zip(
        str(path),
        {
            "a": Tensor(shared, 0, (6,), (1,)),
            "b": Tensor(shared, 0, (2, 3), (3, 1)),
            "c": Tensor(shared, 2, (2,), (1,)),
        },
    )
    got = pth.load_pth(path)
    assert got["b"].tolist() == [[0, 1, 2], [3, 4, 5]] and got["c"].tolist() == [2, 3]


def _deflated(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def test_a_storage_entry_inflating_far_beyond_its_size_is_refused(tmp_path):
    big = Storage(np.zeros(16 << 20, np.float32), "float32")  # 64 MiB of zeros
    path = tmp_path / "bomb.pth"
    write_zip(str(path), {"w": Tensor(big, 0, (16 << 20,), (1,))})
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    _deflated(path, entries)
    assert path.stat().st_size < 1 << 20
    refused_within(path, match=r"'bomb/data/0' would inflate from \d+ to 67108864 bytes")


def test_a_pickle_entry_inflating_far_beyond_its_size_is_refused(tmp_path):
    path = tmp_path / "pkl.pth"
    _deflated(path, {"pkl/data.pkl": pickle.dumps({"pad": b"\0" * (64 << 20)}, protocol=2)})
    refused_within(path, match=r"'pkl/data.pkl' would inflate")


def test_a_pickle_declaring_gigabytes_it_does_not_hold_is_refused(tmp_path):
    path = tmp_path / "claim.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "claim/data.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 31) + b"x."
        )
    refused_within(path, match="corrupt pickle data")


def test_a_legacy_storage_declaring_a_count_beyond_the_file_is_refused(tmp_path):
    storage = Storage(np.zeros(3, np.float32), "float32")
    storage.numel = 1 << 33  # the pickle and the count both claim 32 GiB
    path = tmp_path / "count.pth"
    path.write_bytes(legacy_bytes({"w": Tensor(storage, 0, (3,), (1,))}))
    refused_within(
        path,
        match=r"storage '\d+' declares 8589934592 elements .* refused "
        r"before reading",
    )


def test_the_arrays_of_a_real_sized_file_fit_the_bound(tmp_path):
    """A plain state dict of 4 MiB reads with peak memory a small multiple of it."""
    rng = np.random.default_rng(0)
    weights = {
        f"layer{i}.weight": rng.standard_normal((256, 512)).astype(np.float32)
        for i in range(8)
    }
    tensors = {
        k: Tensor(Storage(v.reshape(-1), "float32"), 0, v.shape, (512, 1))
        for k, v in weights.items()
    }
    path = tmp_path / "real.pth"
    write_zip(str(path), tensors)
    tracemalloc.start()
    try:
        got = pth.load_pth(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for k, v in weights.items():
        np.testing.assert_array_equal(got[k], v)
    assert peak < 3 * 8 * 256 * 512 * 4


@pytest.mark.parametrize("damage", ["version", "local header"])
def test_a_damaged_zip_directory_or_entry_header_is_a_format_error(tmp_path, damage):
    """Found by the fuzzer: zipfile raised NotImplementedError (an unknown
    version needed to extract) and BadZipFile (a local header's magic) past
    the reader's checks."""
    path = tmp_path / "damaged.pth"
    write_zip(str(path), {"w": Tensor(Storage(np.zeros(3, np.float32), "float32"), 0, (3,),
                                      (1,))})
    data = bytearray(path.read_bytes())
    if damage == "version":
        at = data.index(b"PK\x01\x02") + 6  # the first central record's version
        data[at : at + 2] = b"\xff\x00"
    else:
        at = data.rindex(b"PK\x03\x04", 0, data.index(b"damaged/byteorder"))
        data[at : at + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    refused_within(path, match="damaged zip archive")


def test_a_memo_index_far_beyond_the_pickle_is_refused(tmp_path):
    """Found by the fuzzer: `LONG_BINPUT 57158769` made the C unpickler grow
    its memo array to that many entries (914 MiB traced) for a 1 kB file."""
    path = tmp_path / "memo.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("memo/data.pkl", b"\x80\x02]r" + struct.pack("<I", 57158769) + b".")
    refused_within(path, match=r"memo index 57158769 in a pickle of 9 bytes")
