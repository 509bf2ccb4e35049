"""Fixtures of the model tests: the torch references of the conversion
equality tests (`test_convert_*_equality.py`)."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

# `benchmarks` (`benchmarks.torch_reference`, what the equality tests share
# with the benchmarks) lives at the repository root.
ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def torch_photo_reference(tmp_path_factory):
    """Factory `torch_photo_reference(code, size, folder, needs=("torch",))`:
    scikit-image's astronaut at `size` x `size` (RGB float32) saved as
    `image.npy` in a fresh folder named after `folder`, then the torch-only
    script `code` run on it (`benchmarks.torch_reference.record_reference`).
    Skips the test when a package of `needs` or scikit-image is missing
    (torch is looked for, never imported here: importing it after
    TensorFlow can crash the process).

    Returns:
        `(folder, report dict, {name: array}, image)`.
    """

    def record(code, size, folder, needs=("torch",)):
        missing = [name for name in needs if importlib.util.find_spec(name) is None]
        if missing:
            pytest.skip(f"{' and '.join(missing)} not installed")
        pytest.importorskip("skimage.data")  # the photo (the `bench` extra)
        from benchmarks.torch_reference import photo, record_reference

        out = tmp_path_factory.mktemp(folder)
        image = photo("astronaut", size)
        np.save(out / "image.npy", image)
        report, arrays = record_reference(code, out)
        return out, report, arrays, image

    return record
