"""`DecodingPredictions`: the model mixin whose `predict` returns detections.

keras-hub's object detectors decode in `predict_step` with a settable
`prediction_decoder`; `SSD` and the speed-up views of
`keras_ssd.accel.prepare_for_inference` do the same through this mixin, so
`model.predict(images)` gives detections while `model(images)` (training, the
loss, export) gives the raw heads.
"""

from keras import ops


def add_category_ids(detections, category_ids):
    """`detections` (the decoder's dict) plus `"category_ids"`: the COCO
    category id of each row's label, -1 on padding rows and for placeholder
    outputs (`None` in `category_ids`)."""
    ids = [-1 if c is None else int(c) for c in category_ids] + [-1]
    labels = detections["labels"]
    rows = ops.where(labels < 0, len(ids) - 1, labels)
    return {**detections,
            "category_ids": ops.take(ops.convert_to_tensor(ids, "int32"), rows)}


class DecodingPredictions:
    """Mixin for a `keras.Model` with raw SSD heads: `predict`,
    `predict_on_batch` and `predict_step` return the decoded detections.

    The class using it provides `prediction_decoder` (a
    `keras_ssd.layers.DecodeDetections`). The output is the decoder's dict
    (`boxes`, `scores`, `labels`, `num_detections`; docs/outputs.md) plus
    `category_ids` when the decoder's config has COCO category ids.
    """

    def decode_predictions(self, predictions):
        """The detections of raw predictions `(B, N, 4 + num_classes + 1)`."""
        decoder = self.prediction_decoder
        detections = dict(decoder(predictions))
        category_ids = decoder.config.detection_category_ids
        if category_ids is not None:
            detections = add_category_ids(detections, category_ids)
        return detections

    def predict_step(self, *args):
        outputs = super().predict_step(*args)
        if isinstance(outputs, tuple):  # JAX: (outputs, non-trainable variables)
            return self.decode_predictions(outputs[0]), outputs[1]
        return self.decode_predictions(outputs)
