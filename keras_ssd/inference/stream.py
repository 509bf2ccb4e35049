"""Prediction on streams: `predict_stream` runs `predict_images` over
`keras_ssd.sources.iter_sources` in batches, one item at a time
out; `VideoWriter` writes annotated frames as a video (PyAV)."""

import fractions

from keras_ssd.sources import URL_TIMEOUT, iter_sources, require_av


def predict_stream(model, sources, confidence_threshold=0.5, iou_threshold=0.45, top_k=200,
                   batch_size=8, timeout=URL_TIMEOUT):
    """Detect objects in every image and video frame of `sources`, as a generator.

    At most `batch_size` frames are held at a time, so a long video or a
    huge folder runs in bounded memory.

    Args:
        model: what `predict_images` takes, or an
            `keras_ssd.inference.artifact.ArtifactDetector` (an exported
            artifact; its own NMS settings apply).
        sources: what `iter_sources` takes: files, folders (recursive),
            globs, URLs, video files, camera indices, arrays, PIL images, or
            an iterable of them.
        confidence_threshold, iou_threshold, top_k: decoding options.
        batch_size: frames per forward pass.
        timeout: seconds a URL may take to answer.

    Yields:
        `(item, detections)`: a `SourceItem` and `predict_image`'s dict for
        it (its `"source"` is `item.name`), or `(item, None)` for an input
        that could not be read (`item.error` says why), in input order.

    Example:

    >>> for item, det in predict_stream(model, ["clip.mp4", "photos/"]):
    ...     print(item.name, item.error or len(det["scores"]))
    """
    from keras_ssd.inference.predict import predict_images

    pending = []

    def flush():
        if not pending:
            return []
        images = [it.image for it in pending]
        if hasattr(model, "detect") and hasattr(model, "metadata"):  # an ArtifactDetector
            results = model.detect(images, confidence_threshold=confidence_threshold,
                                   batch_size=batch_size)
        else:
            results = predict_images(model, images,
                                     confidence_threshold=confidence_threshold,
                                     iou_threshold=iou_threshold, top_k=top_k,
                                     batch_size=batch_size)
        for item, detections in zip(pending, results):
            detections["source"] = item.name
        out = list(zip(pending, results))
        pending.clear()
        return out

    for item in iter_sources(sources, timeout=timeout):
        if not item.ok:
            yield from flush()
            yield item, None
            continue
        pending.append(item)
        if len(pending) >= batch_size:
            yield from flush()
    yield from flush()


class VideoWriter:
    """Write RGB frames to a video file (H.264 in .mp4 where the FFmpeg of
    PyAV has it, else MPEG-4 Part 2).

    Args:
        path: output file (.mp4).
        fps: frames per second (default 25 when unknown).

    Example:

    >>> with VideoWriter("out.mp4", fps=30) as writer:
    ...     writer.write(frame)  # (H, W, 3) uint8 RGB
    """

    def __init__(self, path, fps=None):
        self.path = str(path)
        self.fps = float(fps) if fps else 25.0
        self._container = None
        self._stream = None
        self.frames = 0

    def _open(self, height, width):
        av = require_av()
        self._container = av.open(self.path, mode="w")
        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=rate)
        # yuv420p needs even sides: the last row / column is dropped if odd
        self._stream.width, self._stream.height = width - width % 2, height - height % 2
        self._stream.pix_fmt = "yuv420p"

    def write(self, frame):
        """Append one `(H, W, 3)` uint8 RGB frame."""
        import numpy as np

        frame = np.asarray(frame, dtype=np.uint8)
        if self._container is None:
            self._open(*frame.shape[:2])
        frame = np.ascontiguousarray(frame[:self._stream.height, :self._stream.width])
        av = require_av()
        video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self):
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
