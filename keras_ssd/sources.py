"""Input sources for prediction: anything a user points `predict` at, as a
stream of RGB frames.

`iter_sources(sources)` takes one source or an iterable of them:

* an image file; a folder (searched recursively for images and videos);
  a glob pattern (`photos/**/*.jpg`);
* an `http://` or `https://` URL of an image (or of a video file, by its
  extension), read with a timeout and a size limit;
* a video file (`.mp4`, `.avi`, `.mov`, `.mkv`, `.webm`, ...), decoded frame
  by frame; a camera index (`0`, or the string `"0"`), read until stopped;
  both need PyAV (`pip install 'keras-ssd[video]'`);
* a numpy array `(H, W, 3)` (or a batch `(B, H, W, 3)`), a PIL image;
* any iterable (list, generator) of the above.

and yields `SourceItem`s one at a time (a generator: a folder of a million
images or an hour of video is never held in memory). An input that cannot
be read (a missing file, a corrupt image, a URL that answers 404 or times
out, a video that stops decoding) is yielded as an item with `error` set
and no image, so the caller reports it on its own line and goes on.

Video is decoded and written with PyAV (FFmpeg's libraries, in binary
wheels for Linux, macOS and Windows): it decodes every container and codec
FFmpeg does, gives exact frame counts and rates, reports a truncated file as
an error instead of an early end, and is a smaller, numpy-only dependency
than OpenCV's wheel (docs/video.md says more).

numpy, Pillow and the standard library only (PyAV for video): no TensorFlow.
"""

import dataclasses
import glob
import io
import os
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image

#: Files a folder or glob contributes as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Files read as videos (case-insensitive).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".ts")
#: Seconds a URL may take to answer (and between received blocks).
URL_TIMEOUT = 15.0
#: The largest download read from a URL.
MAX_URL_BYTES = 200 * 1024 * 1024


@dataclasses.dataclass
class SourceItem:
    """One image or video frame of a source, or one input that failed.

    Attributes:
        name: what the item is called in messages and outputs: the path or
            URL of an image, `"clip.mp4#12"` for frame 12 of a video,
            `"camera0#12"`, `"array0"`, `"pil0"`.
        image: RGB uint8 `(H, W, 3)`, or None when `error` is set.
        source: the input the item came from (path, URL, `"camera0"`, ...).
        kind: `"image"`, `"video"` (a frame of a file or camera), or
            `"error"`.
        frame: the frame index within a video, else None.
        fps: the video's frame rate, else None.
        error: why the input could not be read (one line), else None.
        path: a local image file not decoded yet (`iter_sources(...,
            decode_files=False)`: `image` is None and the reader decodes it,
            e.g. DCT-scaled for a small network input), else None.
    """

    name: str
    image: object = None
    source: str = ""
    kind: str = "image"
    frame: int = None
    fps: float = None
    error: str = None
    path: str = None

    @property
    def ok(self):
        return self.error is None


def _failed(name, reason):
    return SourceItem(name=str(name), source=str(name), kind="error", error=str(reason))


def is_url(text):
    return isinstance(text, str) and text.lower().startswith(("http://", "https://"))


def _is_video_name(name):
    path = urllib.parse.urlparse(name).path if is_url(name) else name
    return str(path).lower().endswith(VIDEO_EXTENSIONS)


def _is_image_name(name):
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def _has_glob(text):
    return any(c in text for c in "*?[")


def require_av():
    """PyAV, or an ImportError with the install command."""
    try:
        import av
    except ImportError:
        raise ImportError("video input and output need PyAV: "
                          "pip install 'keras-ssd[video]'") from None
    return av


def _rgb(array):
    from keras_ssd.data.images import load_image

    return load_image(array)


def _read_image_file(path):
    from keras_ssd.data.images import decode_image

    image, _ = decode_image(path)  # (RGB image in displayed orientation, scale 1)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _image_item(name, loader):
    try:
        image = loader()
    except Exception as e:  # noqa: BLE001 - any failure is one unreadable input
        reason = _reason(e)
        # the item names the input already
        for prefix in (f"{name}: ", f"{os.path.abspath(str(name))}: "):
            if reason.startswith(prefix):
                reason = reason[len(prefix):]
        return _failed(name, reason)
    return SourceItem(name=str(name), image=image, source=str(name), kind="image")


def _reason(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:300]


def fetch_url(url, timeout=URL_TIMEOUT, max_bytes=None):
    """The body of `url` (bytes); `ValueError` naming the URL when it cannot
    be fetched (HTTP error status, timeout, refused, too large). Only the
    bytes are read: nothing fetched is executed or unpickled.

    Args:
        url: an `http://` or `https://` URL.
        timeout: seconds to wait for an answer (and between blocks).
        max_bytes: the largest body read (default: `MAX_URL_BYTES`); a
            longer one is refused after reading `max_bytes + 1` bytes.
    """
    max_bytes = MAX_URL_BYTES if max_bytes is None else int(max_bytes)
    request = urllib.request.Request(url, headers={"User-Agent": "keras-ssd"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        raise ValueError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise ValueError(f"{url}: no answer within {timeout:g} s") from None
        raise ValueError(f"{url}: {reason}") from None
    except TimeoutError:
        raise ValueError(f"{url}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise ValueError(f"{url}: {e}") from None
    if len(body) > max_bytes:
        raise ValueError(f"{url}: larger than the {_size(max_bytes)} limit "
                         "(keras_ssd.sources.MAX_URL_BYTES)")
    return body


def _size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def _url_image(url, timeout):
    body = fetch_url(url, timeout)
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            return _rgb(np.asarray(image.convert("RGB")))
    except Exception:  # noqa: BLE001 - PIL raises several kinds for a non-image
        raise ValueError(f"{url}: not an image ({len(body):,} bytes that PIL cannot "
                         "read)") from None


def iter_video(path, name=None, fmt=None):
    """The frames of a video file (or device) as `SourceItem`s; a decoding
    failure ends the stream with one error item saying where it stopped."""
    name = str(name or path)
    try:
        av = require_av()
    except ImportError as e:
        yield _failed(name, e)
        return
    try:
        container = av.open(str(path), format=fmt)
    except Exception as e:  # noqa: BLE001 - FFmpeg errors of every kind
        reason = _reason(e).replace(f": '{path}'", "")
        yield _failed(name, f"not a readable video: {reason}")
        return
    frame_index = 0
    try:
        if not container.streams.video:
            yield _failed(name, "has no video stream")
            return
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        expected = _expected_frames(container, stream, fps)
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            yield SourceItem(name=f"{name}#{frame_index}", image=image, source=name,
                             kind="video", frame=frame_index, fps=fps)
            frame_index += 1
        if frame_index == 0:
            yield _failed(name, "no frame could be decoded")
        elif expected and frame_index < expected:
            yield _failed(name, f"truncated: decoding stopped at frame {frame_index} of "
                                f"{expected}")
    except Exception as e:  # noqa: BLE001
        yield _failed(name, f"decoding stopped at frame {frame_index}: {_reason(e)}")
    finally:
        container.close()


def _expected_frames(container, stream, fps):
    """The frame count the container promises (0: unknown): its frame count,
    else its duration times the rate (Matroska stores no count; MPEG-TS
    durations are estimates, so a cut there is found only when the estimate
    holds)."""
    if stream.frames:
        return int(stream.frames)
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # av.time_base: microseconds
    if seconds and fps:
        # a tolerance of one frame: durations round to the container's clock
        return max(0, int(round(seconds * fps)) - 1)
    return 0


def iter_camera(index):
    """Frames of camera `index` (Linux: /dev/videoN through v4l2)."""
    device = f"/dev/video{int(index)}"
    name = f"camera{int(index)}"
    if not os.path.exists(device):
        yield _failed(name, f"no camera {index} ({device} not found)")
        return
    yield from iter_video(device, name=name, fmt="v4l2")


def _expand_folder(folder):
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if _is_image_name(f) or _is_video_name(f)]
    return found


def _iter_path(text, timeout, decode_files=True):
    if is_url(text):
        if _is_video_name(text):
            # FFmpeg reads http(s) itself, streaming
            yield from iter_video(text)
        else:
            yield _image_item(text, lambda: _url_image(text, timeout))
        return
    if text.isdigit() and not os.path.exists(text):
        yield from iter_camera(int(text))
        return
    if os.path.isdir(text):
        found = _expand_folder(text)
        if not found:
            yield _failed(text, f"no images or videos ({', '.join(IMAGE_EXTENSIONS)}; "
                                f"{', '.join(VIDEO_EXTENSIONS[:4])}, ...) in folder")
        for path in found:
            yield from _iter_file(path, decode_files)
        return
    if not os.path.exists(text) and _has_glob(text):
        found = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        if not found:
            yield _failed(text, "no file matches this pattern")
        for path in found:
            yield from _iter_file(path, decode_files)
        return
    yield from _iter_file(text, decode_files)


def _iter_file(path, decode_files=True):
    if _is_video_name(path):
        if os.path.exists(path):
            yield from iter_video(path)
        else:
            yield _failed(path, "file not found")
    elif not decode_files:  # the reader decodes it (and names it if it cannot)
        yield SourceItem(name=path, source=path, kind="image", path=path)
    elif not os.path.exists(path):
        yield _failed(path, "file not found")
    else:
        yield _image_item(path, lambda: _read_image_file(path))


def iter_sources(sources, timeout=URL_TIMEOUT, decode_files=True):
    """Stream `SourceItem`s from `sources` (see the module docstring).

    Args:
        sources: one source or an iterable of sources: paths, folders,
            globs, URLs, video files, camera indices, arrays, PIL images.
        timeout: seconds a URL may take to answer.
        decode_files: False: local image files (named, or found in a folder
            or by a pattern) are yielded undecoded, with `path` set and no
            `image`, even when missing or unreadable: the caller decodes
            them and reports their errors (`predict_images` does, so large
            JPEGs are decoded DCT-scaled).

    Yields:
        `SourceItem`, in input order (folders and globs sorted by name);
        unreadable inputs as items with `error` set.

    Example:

    >>> for item in iter_sources(["photos/", "https://example.com/a.jpg", "clip.mp4"]):
    ...     print(item.name, item.error or item.image.shape)
    """
    counters = {"array": 0, "pil": 0}

    def walk(source):
        if isinstance(source, (str, os.PathLike)):
            yield from _iter_path(os.fspath(source), timeout, decode_files)
        elif isinstance(source, (bytes, bytearray)):  # an encoded image
            name = f"bytes{counters['array']}"
            counters["array"] += 1
            yield _image_item(name, lambda: _rgb(np.asarray(
                Image.open(io.BytesIO(bytes(source))).convert("RGB"))))
        elif isinstance(source, bool):
            yield _failed(repr(source), "not an image source")
        elif isinstance(source, (int, np.integer)):
            yield from iter_camera(int(source))
        elif isinstance(source, Image.Image):
            name = f"pil{counters['pil']}"
            counters["pil"] += 1
            yield _image_item(name, lambda: _rgb(source))
        elif isinstance(source, np.ndarray):
            batch = source if source.ndim == 4 else [source]
            for array in batch:
                name = f"array{counters['array']}"
                counters["array"] += 1
                yield _image_item(name, lambda a=array: _rgb(a))
        elif hasattr(source, "__iter__"):
            for each in source:
                yield from walk(each)
        else:
            yield _failed(repr(source)[:80], f"not an image source "
                                             f"({type(source).__name__})")

    yield from walk(sources)
