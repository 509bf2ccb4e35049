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

    #: The reductions that average over the batch (the others sum).
    MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")

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

    def loss_and_parts(self, y_true, y_pred):
        """The batch's loss and its confidence and localisation parts, from
        one hard negative mining.

        Reduced as the loss is (the default `"sum"` over the batch, or the
        mean for `"sum_over_batch_size"`): `loss` is what calling this loss
        returns, `conf` is `L_conf / N_pos`, `loc` is `alpha * L_loc / N_pos`,
        and `conf + loc == loss` up to float rounding. Under a
        `tf.distribute` strategy a mean is also divided by the number of
        replicas, as Keras divides a mean loss. `SSD.compute_loss`
        uses it to train on `loss` and report the parts.

        Returns:
            `(loss, conf, loc)`, three float32 scalars.

        Raises:
            ValueError: a reduction that leaves one value per image.

        Example:

        >>> loss, conf, loc = SSDLoss().loss_and_parts(y_true, y_pred)
        """
        if self.reduction not in ("sum",) + self.MEAN_REDUCTIONS:
            raise ValueError(
                f"SSDLoss.loss_and_parts: reduction {self.reduction!r} leaves one value "
                "per image; use 'sum' or 'sum_over_batch_size'")
        conf, loc, total_pos = self._normalised(y_true, y_pred)
        values = [ops.sum((conf + loc) / total_pos), ops.sum(conf / total_pos),
                  ops.sum(loc / total_pos)]
        if self.reduction in self.MEAN_REDUCTIONS:
            # As Keras reduces a mean loss: scaled down per tf.distribute replica.
            size = ops.cast(ops.shape(y_true)[0], "float32") * float(replicas_in_sync())
            values = [value / size for value in values]
        return tuple(values)

    def parts(self, y_true, y_pred):
        """`(conf, loc)` of `loss_and_parts`: the batch's confidence and
        localisation parts, adding up to the loss.

        Example:

        >>> conf, loc = SSDLoss().parts(y_true, y_pred)
        """
        return self.loss_and_parts(y_true, y_pred)[1:]

    def get_config(self):
        config = super().get_config()
        config.update({"neg_pos_ratio": self.neg_pos_ratio, "alpha": self.alpha})
        return config


def replicas_in_sync():
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
