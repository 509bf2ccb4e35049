"""The SSD multibox loss with per-image hard negative mining."""

import keras
from keras import ops



@keras.saving.register_keras_serializable(package="keras_ssd")
class SSDLoss(keras.losses.Loss):
    """SSD multibox loss: `(L_conf + alpha * L_loc) / N_pos` (Liu et al. 2016).

    - `L_loc`: smooth L1 (Huber with delta 1) **summed** over the 4 encoded
      coordinates of every positive prior.
    - `L_conf`: softmax cross-entropy over all positives plus the hardest
      negatives: in each image separately, the `neg_pos_ratio` x (number of
      positives in that image) negatives with the largest background loss.
      Only negatives (class 0) are ranked: positives and ignored priors
      (class -1) are never picked as hard negatives, and ignored priors
      contribute nothing at all.
    - `N_pos`: number of positives in the whole batch, `max(N_pos, 1)`. A
      batch without any positive has no loss terms (no positives and 0 hard
      negatives per image), so the loss is exactly 0 with zero gradients,
      never NaN.

    Computed in float32 whatever the model's dtype policy.

    Reduction: `call` returns one value per image, image `i`'s terms divided
    by the batch's `N_pos`, and the default `reduction="sum"` adds them, so
    the loss `model.compile(loss=SSDLoss())` reports (and optimises) per batch
    is exactly `(L_conf + alpha * L_loc) / N_pos` of the batch, not divided
    again by the batch size. (Epoch averages in `fit` logs are batch-size
    weighted means of the per-batch values.) Passing
    `reduction="sum_over_batch_size"` would divide by the batch size as
    well.

    Args:
        neg_pos_ratio: float > 0, hard negatives per positive. Defaults to 3.
        alpha: float >= 0, weight of the localisation loss. Defaults to 1.
        **kwargs: `name`, `reduction` (default `"sum"`), `dtype`.

    Call arguments:
        y_true: `(B, N, 5)`: 4 encoded offsets, then the class as a float
            (0 = background, 1..C objects, -1 = ignore), as made by
            `keras_ssd.targets.TargetEncoder`.
        y_pred: `(B, N, 4 + C + 1)` model output: offsets then logits (index
            0 = background).

    Returns:
        The scalar loss (after reduction); `call` gives `(B,)` per-image
        shares.

    Example:

    >>> model.compile(optimizer="sgd", loss=SSDLoss(neg_pos_ratio=3))
    """

    def __init__(self, neg_pos_ratio=3.0, alpha=1.0, name="ssd_loss", reduction="sum",
                 **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        try:
            self.neg_pos_ratio = float(neg_pos_ratio)
            self.alpha = float(alpha)
        except (TypeError, ValueError):
            raise ValueError(
                "SSDLoss: neg_pos_ratio and alpha must be numbers, got "
                f"neg_pos_ratio={neg_pos_ratio!r}, alpha={alpha!r}"
            )
        if not self.neg_pos_ratio > 0:
            raise ValueError(f"SSDLoss: neg_pos_ratio must be > 0, got {neg_pos_ratio!r}")
        if not self.alpha >= 0:
            raise ValueError(f"SSDLoss: alpha must be >= 0, got {alpha!r}")

    def components(self, y_true, y_pred):
        """Per-image sums before dividing by `N_pos`.

        Returns:
            `(loc, conf, num_pos)`, each float32 `(B,)`: summed smooth L1 of
            the positives, summed cross-entropy of positives and mined
            negatives, number of positives.
        """
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if len(y_true.shape) != 3 or (y_true.shape[-1] is not None
                                       and y_true.shape[-1] != 5):
            raise ValueError(
                f"SSDLoss: y_true must be (batch, num_priors, 5), got {y_true.shape}"
            )
        if len(y_pred.shape) != 3 or (y_pred.shape[-1] is not None
                                       and y_pred.shape[-1] < 6):
            raise ValueError(
                "SSDLoss: y_pred must be (batch, num_priors, 4 + num_classes + 1), "
                f"got {y_pred.shape}"
            )
        labels = y_true[..., 4]
        positive = ops.cast(labels > 0, "float32")
        negative = labels == 0

        # Localisation: smooth L1 summed over the 4 coordinates.
        diff = ops.abs(y_pred[..., :4] - y_true[..., :4])
        smooth_l1 = ops.where(diff < 1.0, 0.5 * ops.square(diff), diff - 0.5)
        loc = ops.sum(ops.sum(smooth_l1, axis=-1) * positive, axis=-1)

        # Classification: cross-entropy of every prior (ignored -> class 0,
        # masked out below).
        log_probs = ops.log_softmax(y_pred[..., 4:], axis=-1)
        target = ops.cast(ops.maximum(labels, 0.0), "int32")
        ce = -ops.squeeze(
            ops.take_along_axis(log_probs, ops.expand_dims(target, -1), axis=-1), -1
        )

        # Hard negatives per image, ranked among negatives only.
        num_pos = ops.sum(positive, axis=-1)  # (B,)
        num_neg_available = ops.sum(ops.cast(negative, "float32"), axis=-1)
        num_neg = ops.minimum(ops.floor(self.neg_pos_ratio * num_pos), num_neg_available)
        ranking_loss = ops.where(negative, ops.stop_gradient(ce), -1.0)
        order = ops.argsort(-ranking_loss, axis=-1)  # descending
        rank = ops.argsort(order, axis=-1)  # rank of each prior
        hard_negative = ops.logical_and(
            negative, ops.cast(rank, "float32") < ops.expand_dims(num_neg, -1)
        )
        conf_mask = positive + ops.cast(hard_negative, "float32")
        conf = ops.sum(ce * conf_mask, axis=-1)
        return loc, conf, num_pos

    def _normalised(self, y_true, y_pred):
        """Per-image `(conf, alpha * loc, N_pos of the batch)`, before dividing."""
        loc, conf, num_pos = self.components(y_true, y_pred)
        # N_pos of the global batch: summed over the replicas of a
        # tf.distribute step (identity on one device and under JAX).
        total_pos = ops.maximum(cross_replica_sum(ops.sum(num_pos)), 1.0)
        return conf, self.alpha * loc, total_pos

    def call(self, y_true, y_pred):
        conf, loc, total_pos = self._normalised(y_true, y_pred)
        return (conf + loc) / total_pos

    def parts(self, y_true, y_pred):
        """The batch's confidence and localisation parts of the loss.

        Normalised exactly as the loss (`L_conf / N_pos` and
        `alpha * L_loc / N_pos`, summed over the batch as the default
        `"sum"` reduction does, or averaged for `"sum_over_batch_size"`),
        so `conf + loc` is the loss of the batch.

        Returns:
            `(conf, loc)`, two float32 scalars.

        Example:

        >>> conf, loc = SSDLoss().parts(y_true, y_pred)
        """
        conf, loc, total_pos = self._normalised(y_true, y_pred)
        conf, loc = ops.sum(conf / total_pos), ops.sum(loc / total_pos)
        if self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight"):
            size = ops.cast(ops.shape(y_true)[0], "float32")
            conf, loc = conf / size, loc / size
        return conf, loc

    def part_metrics(self):
        """The two Keras metrics reporting this loss's parts in `fit` logs.

        Returns:
            `[ConfidenceLoss, LocalizationLoss]` with this loss's
            `neg_pos_ratio` and `alpha`; pass them to `model.compile(metrics=)`.
        """
        return [ConfidenceLoss(self.neg_pos_ratio, self.alpha, reduction=self.reduction),
                LocalizationLoss(self.neg_pos_ratio, self.alpha, reduction=self.reduction)]

    def get_config(self):
        config = super().get_config()
        config.update({"neg_pos_ratio": self.neg_pos_ratio, "alpha": self.alpha})
        return config


# The parts of the last (y_true, y_pred) pair, so that the two part metrics
# of one step (Keras updates them one after the other with the same tensors,
# in the same traced function) run the loss's hard negative mining once.
_LAST_PARTS = [None]


def _shared_parts(loss, y_true, y_pred):
    """`loss.parts(y_true, y_pred)`, computed once for two consecutive calls."""
    last = _LAST_PARTS[0]
    options = (loss.neg_pos_ratio, loss.alpha, loss.reduction)
    if last is not None and last[0] is y_true and last[1] is y_pred and last[2] == options:
        _LAST_PARTS[0] = None  # the pair's second metric: drop the references
        return last[3]
    parts = loss.parts(y_true, y_pred)
    _LAST_PARTS[0] = (y_true, y_pred, options, parts)
    return parts


class _SSDLossPart(keras.metrics.Metric):
    """Epoch mean of one part of `SSDLoss`, averaged as `fit` averages the loss.

    Each batch's part (`SSDLoss.parts`) is weighted by the batch size, the
    weight Keras's loss tracker gives the batch's loss, so at every batch
    and at the end of the epoch `conf_loss + loc_loss` equals `loss` (plus
    the model's weight penalty, if it has one), also per replica under a
    `tf.distribute` strategy (the tracked value is scaled as Keras scales
    the tracked loss). Sample weights are ignored: the loss
    `train_detector` compiles has none.
    """

    _part = None
    _default_name = None

    def __init__(self, neg_pos_ratio=3.0, alpha=1.0, reduction="sum", name=None,
                 dtype=None):
        super().__init__(name=name or self._default_name, dtype=dtype)
        self._loss = SSDLoss(neg_pos_ratio=neg_pos_ratio, alpha=alpha, reduction=reduction)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                       name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32",
                                       name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        conf, loc = _shared_parts(self._loss, y_true, y_pred)
        value = conf if self._part == "conf" else loc
        if self._loss.reduction not in ("sum_over_batch_size", "mean",
                                        "mean_with_sample_weight"):
            # As Keras tracks the loss under tf.distribute: a "sum" loss is
            # not scaled down per replica but its tracked value is scaled up.
            value = value * float(_num_replicas())
        size = ops.cast(ops.shape(y_true)[0], "float32")
        self.total.assign(self.total + value * size)
        self.count.assign(self.count + size)

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {"neg_pos_ratio": self._loss.neg_pos_ratio, "alpha": self._loss.alpha,
                "reduction": self._loss.reduction, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_ssd")
class ConfidenceLoss(_SSDLossPart):
    """`fit` metric `conf_loss`: the softmax cross-entropy part of `SSDLoss`.

    Positives and mined hard negatives, divided by the batch's positive
    count, as in the loss.

    Args:
        neg_pos_ratio, alpha, reduction: as the compiled `SSDLoss`'s.
        name: log entry (default `"conf_loss"`).

    Example:

    >>> loss = SSDLoss()
    >>> model.compile(optimizer="adam", loss=loss, metrics=loss.part_metrics())
    """

    _part = "conf"
    _default_name = "conf_loss"


@keras.saving.register_keras_serializable(package="keras_ssd")
class LocalizationLoss(_SSDLossPart):
    """`fit` metric `loc_loss`: the smooth-L1 part of `SSDLoss`.

    `alpha` x summed smooth L1 of the positives' offsets, divided by the
    batch's positive count, as in the loss.

    Args:
        neg_pos_ratio, alpha, reduction: as the compiled `SSDLoss`'s.
        name: log entry (default `"loc_loss"`).
    """

    _part = "loc"
    _default_name = "loc_loss"


def _num_replicas():
    """Replicas of the current `tf.distribute` strategy (1 elsewhere)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


def cross_replica_sum(x):
    """Sum of `x` over the replicas of the current `tf.distribute` step.

    Inside a replica function of a TensorFlow strategy with several
    replicas (e.g. the loss in `fit` under `MirroredStrategy`) this is an
    all-reduce; everywhere else (one device, cross-replica context, JAX
    where `DataParallel` programs already see the global batch, other
    backends) it returns `x` unchanged.
    """
    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return x
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_reduce(tf.distribute.ReduceOp.SUM, x)
