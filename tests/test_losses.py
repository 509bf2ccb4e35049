import math

import numpy as np
import pytest

import keras

from keras_ssd.losses import SSDLoss


def _reference_loss(y_true, y_pred, neg_pos_ratio=3.0, alpha=1.0):
    """Loop-by-loop SSD loss: per image, positives + hardest negatives."""
    total_conf = total_loc = 0.0
    total_pos = 0
    for t, p in zip(y_true, y_pred):
        labels = t[:, 4]
        ce = []
        for n in range(len(labels)):
            logits = p[n, 4:].astype(np.float64)
            m = logits.max()
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            ce.append(lse - logits[int(max(labels[n], 0))])
        pos = [n for n in range(len(labels)) if labels[n] > 0]
        neg = [n for n in range(len(labels)) if labels[n] == 0]
        for n in pos:
            for c in range(4):
                d = abs(float(p[n, c]) - float(t[n, c]))
                total_loc += 0.5 * d * d if d < 1 else d - 0.5
            total_conf += ce[n]
        k = min(int(neg_pos_ratio * len(pos)), len(neg))
        hardest = sorted(neg, key=lambda n: -ce[n])[:k]
        total_conf += sum(ce[n] for n in hardest)
        total_pos += len(pos)
    return (total_conf + alpha * total_loc) / max(total_pos, 1)


def _value(loss, y_true, y_pred):
    return float(np.asarray(loss(np.asarray(y_true, "float32"), np.asarray(y_pred, "float32"))))


def test_hand_computed_single_image():
    # 4 priors, 1 class (+ background). Prior 0 positive (class 1), the rest
    # negatives with background losses log 4, log 2, log 8.
    y_true = np.zeros((1, 4, 5), "float32")
    y_true[0, 0] = [0.0, 0.0, 0.0, 0.0, 1.0]
    y_pred = np.zeros((1, 4, 6), "float32")
    y_pred[0, 0, :4] = [0.5, 2.0, 0.0, 0.0]  # smooth L1: 0.125 + 1.5
    y_pred[0, 1, 4:] = [0.0, math.log(3.0)]  # p(bg) = 1/4
    y_pred[0, 3, 4:] = [0.0, math.log(7.0)]  # p(bg) = 1/8
    # ratio 2: the two hardest negatives are priors 3 and 1.
    expected = (math.log(2.0) + math.log(8.0) + math.log(4.0)) + 1.625
    assert _value(SSDLoss(neg_pos_ratio=2), y_true, y_pred) == pytest.approx(expected, rel=1e-6)
    # alpha weights the localisation part only.
    expected_half = math.log(64.0) + 0.5 * 1.625
    assert _value(SSDLoss(neg_pos_ratio=2, alpha=0.5), y_true, y_pred) == pytest.approx(
        expected_half, rel=1e-6
    )
    # ratio 3 takes all three negatives.
    assert _value(SSDLoss(), y_true, y_pred) == pytest.approx(
        math.log(2.0) + math.log(4.0 * 2.0 * 8.0) + 1.625, rel=1e-6
    )


def test_matches_loop_reference_on_random_batch():
    rng = np.random.default_rng(0)
    b, n, c = 3, 50, 4
    y_true = np.zeros((b, n, 5), "float32")
    y_true[..., :4] = rng.normal(size=(b, n, 4))
    y_true[..., 4] = rng.choice([-1, 0, 0, 0, 0, 0, 1, 2, 3, 4], size=(b, n))
    y_pred = rng.normal(scale=2.0, size=(b, n, 4 + c + 1)).astype("float32")
    for ratio, alpha in [(3, 1.0), (1, 2.0), (0.5, 0.0)]:
        assert _value(SSDLoss(neg_pos_ratio=ratio, alpha=alpha), y_true, y_pred) == pytest.approx(
            _reference_loss(y_true, y_pred, ratio, alpha), rel=1e-5
        )


def test_no_positives_gives_zero_and_finite_gradient():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    y_true = np.zeros((2, 10, 5), "float32")
    y_true[0, :3, 4] = -1.0
    y_pred = tf.Variable(rng.normal(size=(2, 10, 7)).astype("float32"))
    with tf.GradientTape() as tape:
        value = SSDLoss()(y_true, y_pred)
    grad = tape.gradient(value, y_pred)
    assert float(value) == 0.0
    assert np.all(np.isfinite(grad.numpy())) and np.all(grad.numpy() == 0)


def test_ignored_priors_contribute_nothing_and_are_never_mined():
    rng = np.random.default_rng(2)
    y_true = np.zeros((1, 8, 5), "float32")
    y_true[0, 0, 4] = 2.0
    y_true[0, 5, 4] = -1.0
    y_true[0, 6, 4] = -1.0
    y_pred = rng.normal(size=(1, 8, 4 + 3)).astype("float32")
    base = _value(SSDLoss(), y_true, y_pred)
    changed = y_pred.copy()
    changed[0, 5, :4] = 50.0  # huge offsets error
    changed[0, 6, 4:] = [-30.0, 30.0, 30.0]  # huge background loss
    assert _value(SSDLoss(), y_true, changed) == pytest.approx(base, rel=1e-6)
    # Same as if those priors did not exist.
    keep = [0, 1, 2, 3, 4, 7]
    assert base == pytest.approx(_value(SSDLoss(), y_true[:, keep], y_pred[:, keep]), rel=1e-6)


def test_negatives_are_mined_per_image_not_across_batch():
    # Image 0: one positive, 3 easy negatives. Image 1: no positive but very
    # hard negatives. Mining per image takes image 0's three negatives and
    # none of image 1's; mining across the batch would take image 1's.
    y_true = np.zeros((2, 4, 5), "float32")
    y_true[0, 0, 4] = 1.0
    y_pred = np.zeros((2, 4, 6), "float32")
    y_pred[0, 1:, 4:] = [2.0, 0.0]  # easy negatives
    y_pred[1, :, 4:] = [0.0, 9.0]  # hard negatives
    easy = math.log(1.0 + math.exp(-2.0))
    expected = math.log(2.0) + 3 * easy
    loss = SSDLoss()
    assert _value(loss, y_true, y_pred) == pytest.approx(expected, rel=1e-6)
    assert _value(loss, y_true, y_pred) == pytest.approx(_reference_loss(y_true, y_pred), rel=1e-6)
    # The per-image values (call) say where the loss comes from.
    per_image = np.asarray(loss.call(y_true, y_pred))
    assert per_image[1] == 0.0


def test_positive_with_high_background_loss_never_takes_a_negative_slot():
    # The positive's background loss (-log p_bg ~ 10) is far above the
    # negatives'; with ratio 1 exactly one negative (the harder one) counts.
    y_true = np.zeros((1, 3, 5), "float32")
    y_true[0, 0, 4] = 1.0
    y_pred = np.zeros((1, 3, 6), "float32")
    y_pred[0, 0, 4:] = [0.0, 10.0]
    y_pred[0, 1, 4:] = [0.0, 1.0]  # harder negative
    y_pred[0, 2, 4:] = [0.0, -1.0]
    ce_pos = math.log(1.0 + math.exp(-10.0))
    ce_hard = math.log(1.0 + math.exp(1.0))
    assert _value(SSDLoss(neg_pos_ratio=1), y_true, y_pred) == pytest.approx(
        ce_pos + ce_hard, rel=1e-6
    )


def test_loss_is_normalised_by_positives_of_whole_batch_not_batch_size():
    rng = np.random.default_rng(3)
    y_true = np.zeros((2, 20, 5), "float32")
    y_true[0, :3, 4] = 1.0  # 3 positives in image 0
    y_true[1, 5, 4] = 2.0  # 1 in image 1
    y_true[..., :4] = rng.normal(size=(2, 20, 4))
    y_pred = rng.normal(size=(2, 20, 7)).astype("float32")
    loc, conf, num_pos = (np.asarray(v) for v in SSDLoss().components(y_true, y_pred))
    np.testing.assert_array_equal(num_pos, [3.0, 1.0])
    expected = (conf.sum() + loc.sum()) / 4.0
    assert _value(SSDLoss(), y_true, y_pred) == pytest.approx(expected, rel=1e-6)
    # What model.compile(loss=SSDLoss()) reports for one batch of 2 images.
    inputs = keras.Input((20, 7))
    model = keras.Model(inputs, keras.layers.Activation("linear")(inputs))
    model.compile(loss=SSDLoss(), jit_compile=False)
    reported = model.evaluate(y_pred, y_true, batch_size=2, verbose=0)
    assert reported == pytest.approx(expected, rel=1e-5)
    assert reported == pytest.approx(_reference_loss(y_true, y_pred), rel=1e-5)


def test_float32_computation_with_low_precision_predictions():
    rng = np.random.default_rng(4)
    y_true = np.zeros((1, 30, 5), "float32")
    y_true[0, :4, 4] = 1.0
    y_pred = rng.normal(size=(1, 30, 6)).astype("float32")
    import tensorflow as tf

    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        loss = SSDLoss()
        value = loss(y_true, tf.constant(y_pred, dtype=tf.bfloat16))
    finally:
        keras.config.set_dtype_policy("float32")
    assert value.dtype == tf.float32
    rounded = tf.cast(tf.constant(y_pred, dtype=tf.bfloat16), tf.float32).numpy()
    assert float(value) == pytest.approx(_reference_loss(y_true, rounded), rel=1e-5)


def test_config_round_trip_and_registration():
    loss = SSDLoss(neg_pos_ratio=2.5, alpha=0.7)
    config = loss.get_config()
    assert config["neg_pos_ratio"] == 2.5 and config["alpha"] == 0.7
    assert config["reduction"] == "sum"
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, SSDLoss)
    assert clone.neg_pos_ratio == 2.5 and clone.alpha == 0.7
    assert keras.saving.get_registered_name(SSDLoss) == "keras_ssd>SSDLoss"


@pytest.mark.parametrize(
    "kwargs, match",
    [({"neg_pos_ratio": 0}, "neg_pos_ratio"), ({"alpha": -1}, "alpha"),
     ({"neg_pos_ratio": "x"}, "neg_pos_ratio")],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSDLoss(**kwargs)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match="y_true"):
        SSDLoss()(np.zeros((1, 4, 4), "float32"), np.zeros((1, 4, 6), "float32"))
    with pytest.raises(ValueError, match="y_pred"):
        SSDLoss()(np.zeros((1, 4, 5), "float32"), np.zeros((1, 4, 5), "float32"))
