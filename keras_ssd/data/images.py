"""Decoding images into RGB uint8, whatever their file says.

Every path here turns a PIL failure into a `DataError` naming the file:
corrupt or truncated files, unknown formats, decompression bombs. EXIF
orientation is applied, so pixels are in the displayed orientation (the one
annotation tools show and the boxes refer to). Grayscale, palette, CMYK,
16-bit and alpha images all come out as 3-channel RGB.

`load_image` is the one entry point for what users call "an image": a file
path, a PIL image or an array.
"""

import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from keras_ssd.data.errors import DataError

# The VOC / ImageNet mean pixel in RGB order (Caffe's (104, 117, 123) BGR).
# Expand fills with it and transparent pixels are composited onto it, so
# after the model's mean subtraction both are zero.
MEAN_RGB = (123, 117, 104)

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


def _open(path):
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataError(path, "image file not found") from None
    except Image.DecompressionBombError as e:
        raise DataError(path, f"image refused as a decompression bomb ({e})") from None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(path, f"not a readable image ({e})") from None


def _orientation(img):
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # broken EXIF block: treat as unrotated
        return 1


def image_size(path):
    """`(width, height)` of an image as displayed (EXIF orientation applied).

    Reads the header only.

    Raises:
        DataError: missing or unreadable file.
    """
    with _open(path) as img:
        w, h = img.size
        if _orientation(img) in _SWAPS_AXES:
            w, h = h, w
    return int(w), int(h)


def _to_rgb(img):
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if a.size and a.max() > 255:
            a = a * (255.0 / 65535.0)
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(a[..., None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, MEAN_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(path, expected_size=None, reduce_factor=1):
    """Decode an image file to an RGB PIL image in displayed orientation.

    Args:
        path: image file.
        expected_size: optional `(width, height)` the displayed image must
            have (the annotation's size); a mismatch is a `DataError`, since
            the boxes would otherwise silently land in the wrong place.
        reduce_factor: the caller needs the image at most this many times
            smaller. JPEGs are then decoded at a reduced DCT scale (1/2, 1/4
            or 1/8; exact geometry: reduced pixel `i` covers original pixels
            `[i k, (i + 1) k)`), which is much faster.

    Returns:
        `(image, k)`: the RGB `PIL.Image` and the integer factor `k` by which
        it is smaller than the displayed original (1 unless reduced).

    Raises:
        DataError: unreadable, corrupt, truncated or mis-sized image.
    """
    img = _open(path)
    try:
        stored_w, stored_h = img.size
        orientation = _orientation(img)
        k = 1
        if reduce_factor >= 2 and img.format == "JPEG":
            want = 2 ** min(3, int(math.floor(math.log2(reduce_factor))))
            img.draft("RGB", (max(1, stored_w // want), max(1, stored_h // want)))
            if img.size != (stored_w, stored_h):
                k = int(round(stored_w / img.size[0]))
                k = 2 ** int(round(math.log2(max(k, 1))))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        img = _to_rgb(img)
    except DataError:
        raise
    except Image.DecompressionBombWarning as e:
        raise DataError(path, f"image refused as a decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(path, f"corrupt or truncated image ({e})") from None
    if expected_size is not None:
        w, h = (int(v) for v in expected_size)
        got_w, got_h = img.size
        exp = (math.ceil(w / k), math.ceil(h / k))
        if (got_w, got_h) != exp:
            got = (stored_w, stored_h)
            if orientation in _SWAPS_AXES:
                got = (stored_h, stored_w)
            raise DataError(
                path,
                f"image is {got[0]}x{got[1]} (width x height, EXIF orientation "
                f"applied) but its annotation says {w}x{h}",
            )
    return img, k


def check_image_file(path):
    """`path` as a `str`, or a `DataError` saying that no such image file exists."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(None, f"image file not found: {path}")
    return path


def load_image(image, expected_size=None):
    """Return `image` as a new RGB uint8 array of shape `(H, W, 3)`.

    Args:
        image: a file path (`str` or `os.PathLike`), a `PIL.Image.Image`, or
            an array `(H, W)`, `(H, W, 1)`, `(H, W, 3)` or `(H, W, 4)`
            (uint8, or floats with values in [0, 255]). Files are decoded as
            `decode_image` does (EXIF orientation applied; grayscale,
            palette, CMYK, 16-bit converted; alpha composited onto
            `MEAN_RGB`); for PIL images and arrays, alpha is dropped.
        expected_size: files only: the `(width, height)` the displayed image
            must have, see `decode_image`.

    Returns:
        A C-contiguous `(H, W, 3)` uint8 array.

    Raises:
        DataError: (a `ValueError`) the file is missing, unreadable,
            corrupt or mis-sized; the message names it.
        ValueError: an array of unsupported shape, empty or with non-finite
            values, or an object that is no image.
    """
    if isinstance(image, (str, os.PathLike)):
        img, _ = decode_image(check_image_file(image), expected_size)
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
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
