"""Declared sizes of an untrusted zip archive (a `.pth` or `.keras` file),
checked from its central directory before any entry is read."""

import zipfile

#: A compressed entry may inflate to at most this many times its compressed
#: size (plus `INFLATION_SLACK_BYTES`): `torch.save` and Keras store entries
#: uncompressed, and real tensors do not compress 100-fold.
MAX_INFLATION = 100
INFLATION_SLACK_BYTES = 1 << 20


def declared_size_problem(info):
    """Why a `zipfile.ZipInfo`'s declared sizes cannot be trusted, or None:
    a stored entry must declare the bytes it holds, a compressed one may
    inflate at most `MAX_INFLATION` times (plus `INFLATION_SLACK_BYTES`)."""
    size, packed = info.file_size, info.compress_size
    if info.compress_type == zipfile.ZIP_STORED and size != packed:
        return (f"the stored entry {info.filename!r} declares {size} bytes but holds "
                f"{packed}; refused before reading")
    if size > MAX_INFLATION * packed + INFLATION_SLACK_BYTES:
        return (f"the entry {info.filename!r} would inflate from {packed} to {size} bytes "
                f"(more than {MAX_INFLATION} times); refused before reading")
    return None
