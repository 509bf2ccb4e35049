"""Turn what users call "an image" (a path, a PIL image, an array) into RGB uint8."""

import os

import numpy as np
from PIL import Image

__all__ = ["load_image"]


def load_image(image):
    """Return `image` as an RGB uint8 array of shape `(H, W, 3)`.

    Files are decoded with their EXIF orientation applied.

    Args:
        image: a file path (`str` or `os.PathLike`), a `PIL.Image.Image`, or
            an array `(H, W)`, `(H, W, 1)`, `(H, W, 3)` or `(H, W, 4)`
            (uint8, or floats with values in [0, 255]; alpha is dropped).

    Returns:
        A new C-contiguous `(H, W, 3)` uint8 array.

    Raises:
        ValueError: the file is missing or not a readable image, or the
            array has an unsupported shape or non-finite values.
    """
    if isinstance(image, (str, os.PathLike)):
        # The data pipeline's decoder: EXIF orientation, CMYK / palette /
        # 16-bit / alpha handled, errors (DataError, a ValueError) name the file.
        from keras_ssd.data.images import load_image as decode_file

        path = os.fspath(image)
        if not os.path.isfile(path):
            raise ValueError(f"image file not found: {path}")
        return np.ascontiguousarray(decode_file(path))
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"), dtype=np.uint8)
    try:
        array = np.asarray(image)
    except Exception:  # noqa: BLE001 - any non-array-like input
        array = None
    if array is None or array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise ValueError(
            "image must be a file path, a PIL image or a numeric array, got "
            f"{type(image).__name__}"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            "image array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"got {tuple(np.shape(image))}"
        )
    array = array[..., :3]
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array is empty: shape {tuple(np.shape(image))}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("image array contains NaN or infinite values")
    return np.ascontiguousarray(np.clip(np.rint(array), 0, 255).astype(np.uint8))
