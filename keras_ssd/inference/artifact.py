"""Run an exported artifact (SavedModel, .onnx, .tflite from `keras-ssd
export`) as a detector, from the metadata stored in it: images are rendered
at its input size (letterboxed if it was), and its normalised boxes mapped
back to each image's pixels, as `predict_images` does for a Keras model.

Example:

>>> detector = ArtifactDetector("detector.onnx")
>>> detector.detect(["street.jpg"])[0]["names"]
"""

import os

import numpy as np

from keras_ssd.artifact_metadata import (artifact_format, is_artifact_path,  # noqa: F401
                                         read_metadata)


class ArtifactDetector:
    """An exported keras-ssd artifact, ready to detect.

    Args:
        path: a SavedModel folder, `.onnx` or `.tflite` file written by
            `keras-ssd export` (with its metadata; `ValueError` naming the
            file otherwise).

    Attributes:
        metadata: the stored metadata (`keras_ssd.artifact_metadata`).
        class_names, image_size (`(height, width)`), letterbox, format.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.format = artifact_format(self.path)
        self.metadata = read_metadata(self.path)
        self.image_size = tuple(int(v) for v in self.metadata["image_size"])
        self.letterbox = bool(self.metadata["letterbox"])
        self.class_names = list(self.metadata["class_names"])
        self.input_dtype = np.dtype(self.metadata.get("input_dtype", "float32"))
        self._run = getattr(self, f"_runner_{self.format}")()

    # ------------------------------------------------------------ runners
    def _runner_onnx(self):
        try:
            import onnxruntime
        except ImportError:
            raise ImportError("running an .onnx artifact needs onnxruntime: "
                              "pip install 'keras-ssd[export]'") from None
        session = onnxruntime.InferenceSession(self.path,
                                               providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        fixed = session.get_inputs()[0].shape[0]

        def run(batch):
            if isinstance(fixed, int) and fixed != len(batch):
                return _concat([run(batch[i:i + 1]) for i in range(len(batch))])
            return dict(zip(names, session.run(names, {"images": batch})))

        return run

    def _runner_litert(self):
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=self.path)
        runner = interpreter.get_signature_runner()
        fixed = int(interpreter.get_input_details()[0]["shape"][0])

        def run(batch):
            if fixed != len(batch):  # a .tflite has a fixed batch: that many at a time
                parts = []
                for i in range(0, len(batch), fixed):
                    chunk = batch[i:i + fixed]
                    pad = fixed - len(chunk)
                    if pad:
                        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)])
                    out = runner(images=chunk)
                    parts.append({k: np.asarray(v)[:fixed - pad] for k, v in out.items()})
                return _concat(parts)
            return {k: np.asarray(v) for k, v in runner(images=batch).items()}

        return run

    def _runner_tf_saved_model(self):
        import tensorflow as tf

        serve = tf.saved_model.load(self.path).signatures["serving_default"]

        def run(batch):
            return {k: v.numpy() for k, v in serve(images=tf.constant(batch)).items()}

        return run

    # ------------------------------------------------------------ detect
    def detect(self, images, confidence_threshold=None, batch_size=8):
        """Detections per image, as `predict_images` returns them.

        Args:
            images: list of paths, PIL images or `(H, W, 3)` arrays.
            confidence_threshold: keep detections scoring above this (the
                artifact's own threshold applies in any case).
            batch_size: images per call.

        Returns:
            list of dicts `boxes` (pixel xyxy, clipped), `scores`, `labels`,
            `names`.
        """
        from keras_ssd.data.augment import source_boxes
        from keras_ssd.inference.pixels import load_for_model

        results = []
        images = list(images)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            loaded = [load_for_model(im, self.image_size, self.letterbox) for im in chunk]
            batch = np.stack([a for a, _ in loaded]).astype(self.input_dtype)
            out = self._run(batch)
            for i, (_, (width, height)) in enumerate(loaded):
                n = int(np.asarray(out["num_detections"])[i])
                scores = np.asarray(out["scores"])[i, :n].astype(np.float32)
                labels = np.asarray(out["labels"])[i, :n].astype(np.int64)
                boxes = source_boxes(np.asarray(out["boxes"])[i, :n], width, height,
                                     self.image_size, self.letterbox)
                boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
                keep = labels >= 0
                if confidence_threshold is not None:
                    keep &= scores > confidence_threshold
                results.append({"boxes": boxes[keep], "scores": scores[keep],
                                "labels": labels[keep],
                                "names": [self.class_names[j] for j in labels[keep]]})
        return results


def _concat(parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
