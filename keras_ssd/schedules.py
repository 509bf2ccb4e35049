"""Learning-rate schedules for SSD training: `WarmupPiecewiseDecay` and
`WarmupCosineDecay`, registered with Keras as `keras_ssd>WarmupPiecewiseDecay`
and `keras_ssd>WarmupCosineDecay`.

They sit below the training code (Keras and keras.ops only), so that
`keras_ssd.saving` registers them for loading without importing
`keras_ssd.training`; `keras_ssd.training.schedules` re-exports them.
"""

import math

import keras
from keras import ops


def _check_warmup(owner, base_lr, warmup_steps, warmup_factor):
    """The arguments every warm-up schedule shares, checked and converted:
    `(base_lr, warmup_steps, warmup_factor)` as float, int, float;
    `ValueError` naming `owner` (the schedule class) otherwise."""
    base_lr = float(base_lr)
    if not math.isfinite(base_lr) or base_lr <= 0:
        raise ValueError(f"{owner}: base_lr must be positive, got {base_lr}")
    warmup_steps = int(warmup_steps)
    if warmup_steps < 0:
        raise ValueError(f"{owner}: warmup_steps must be >= 0, got {warmup_steps}")
    warmup_factor = float(warmup_factor)
    if not 0.0 < warmup_factor <= 1.0:
        raise ValueError(f"{owner}: warmup_factor must lie in (0, 1], got {warmup_factor}")
    return base_lr, warmup_steps, warmup_factor


@keras.saving.register_keras_serializable(package="keras_ssd")
class WarmupPiecewiseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a constant learning rate decayed at step boundaries.

    The SSD paper's recipe is the default: 1e-3, multiplied by 0.1 at
    iteration 80k and again at 100k (of 120k). Many ports add a short linear
    warm-up (e.g. `warmup_steps=1000`), which keeps the first iterations of
    SSD300 from diverging; it is off by default to match the paper.

    During warm-up (`step < warmup_steps`) the rate rises linearly from
    `base_lr * warmup_factor` to `base_lr`. After it, the rate is
    `base_lr * factors[i]` where `i` is the number of boundaries `<= step`.

    Args:
        base_lr: float, the learning rate after warm-up and before the first
            boundary.
        boundaries: increasing sequence of int optimizer steps at which the
            rate changes.
        decay: float, multiplier applied at each boundary (so stage `i` has
            `decay ** i`); ignored when `factors` is given.
        factors: optional sequence of `len(boundaries) + 1` multipliers of
            `base_lr`, one per stage.
        warmup_steps: int, length of the linear warm-up (0 = none).
        warmup_factor: float in (0, 1], fraction of `base_lr` at step 0.
        name: optional name.

    Call arguments:
        step: the optimizer iteration (scalar tensor or int).

    Returns:
        A float32 scalar learning rate.

    Example:

    >>> schedule = WarmupPiecewiseDecay(1e-3, boundaries=(80000, 100000))
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    >>> float(schedule(90000))
    0.0001...
    """

    def __init__(
        self,
        base_lr=1e-3,
        boundaries=(80000, 100000),
        decay=0.1,
        factors=None,
        warmup_steps=0,
        warmup_factor=1.0 / 3.0,
        name=None,
    ):
        super().__init__()
        base_lr, warmup_steps, warmup_factor = _check_warmup(
            "WarmupPiecewiseDecay", base_lr, warmup_steps, warmup_factor)
        try:
            boundaries = [int(b) for b in boundaries]
        except (TypeError, ValueError):
            raise ValueError("WarmupPiecewiseDecay: boundaries must be a list of ints, "
                             f"got {boundaries!r}")
        if any(b < 0 for b in boundaries) or any(
            b2 <= b1 for b1, b2 in zip(boundaries, boundaries[1:])
        ):
            raise ValueError(
                "WarmupPiecewiseDecay: boundaries must be non-negative and strictly "
                f"increasing, got {boundaries}"
            )
        decay = float(decay)
        if not math.isfinite(decay) or decay <= 0:
            raise ValueError(f"WarmupPiecewiseDecay: decay must be positive, got {decay}")
        if factors is not None:
            factors = [float(f) for f in factors]
            if len(factors) != len(boundaries) + 1:
                raise ValueError(
                    f"WarmupPiecewiseDecay: factors needs len(boundaries) + 1 = "
                    f"{len(boundaries) + 1} values, got {len(factors)}"
                )
            if any(not math.isfinite(f) or f < 0 for f in factors):
                raise ValueError(
                    f"WarmupPiecewiseDecay: factors must be non-negative, got {factors}"
                )
        self.base_lr = base_lr
        self.boundaries = boundaries
        self.decay = decay
        self.factors = factors
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.name = name

    @property
    def stage_factors(self):
        """The multiplier of `base_lr` in each stage."""
        if self.factors is not None:
            return list(self.factors)
        return [self.decay**i for i in range(len(self.boundaries) + 1)]

    def __call__(self, step):
        step = ops.cast(step, "float32")
        factors = self.stage_factors
        lr = ops.full_like(step, self.base_lr * factors[0])
        for boundary, factor in zip(self.boundaries, factors[1:]):
            lr = ops.where(step >= float(boundary), self.base_lr * factor, lr)
        if self.warmup_steps > 0:
            alpha = ops.minimum(step / float(self.warmup_steps), 1.0)
            warm = self.warmup_factor + (1.0 - self.warmup_factor) * alpha
            lr = lr * ops.where(step < float(self.warmup_steps), warm, 1.0)
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "boundaries": list(self.boundaries),
            "decay": self.decay,
            "factors": None if self.factors is None else list(self.factors),
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="keras_ssd")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then a half-cosine decay to a floor at `total_steps`.

    The usual recipe for networks trained from random weights: during
    warm-up (`step < warmup_steps`) the rate rises linearly from
    `base_lr * warmup_factor` to `base_lr`; then it follows
    `final + (base_lr - final) * (1 + cos(pi * t)) / 2` with `t` going from
    0 at the end of warm-up to 1 at `total_steps` (`final = base_lr *
    final_factor`), and stays at `final` after that.

    `total_steps` may be changed after construction (`train_detector` does
    so when it fits a run into a time limit); functions already traced keep
    the old value until they are traced again.

    Args:
        base_lr: float, the peak learning rate.
        total_steps: int, the optimizer step at which the decay ends.
        warmup_steps: int, length of the linear warm-up (0 = none).
        warmup_factor: float in (0, 1], fraction of `base_lr` at step 0.
        final_factor: float in [0, 1], fraction of `base_lr` at the end.
        name: optional name.

    Call arguments:
        step: the optimizer iteration (scalar tensor or int).

    Returns:
        A float32 scalar learning rate.

    Example:

    >>> schedule = WarmupCosineDecay(3e-3, total_steps=1000, warmup_steps=50)
    >>> optimizer = keras.optimizers.AdamW(schedule, weight_decay=5e-4)
    >>> round(float(schedule(525)), 6)   # half way through the decay
    0.0015
    """

    def __init__(self, base_lr=3e-3, total_steps=10000, warmup_steps=0,
                 warmup_factor=0.1, final_factor=0.0, name=None):
        super().__init__()
        base_lr, warmup_steps, warmup_factor = _check_warmup(
            "WarmupCosineDecay", base_lr, warmup_steps, warmup_factor)
        final_factor = float(final_factor)
        if not 0.0 <= final_factor <= 1.0:
            raise ValueError(
                f"WarmupCosineDecay: final_factor must lie in [0, 1], got {final_factor}")
        self.base_lr = base_lr
        self.warmup_steps = warmup_steps
        self.warmup_factor = warmup_factor
        self.final_factor = final_factor
        self.name = name
        self.total_steps = total_steps

    @property
    def total_steps(self):
        """The step at which the cosine reaches its floor."""
        return self._total_steps

    @total_steps.setter
    def total_steps(self, value):
        value = int(value)
        if value < 1 or value < self.warmup_steps:
            raise ValueError(
                f"WarmupCosineDecay: total_steps must be >= max(1, warmup_steps="
                f"{self.warmup_steps}), got {value}")
        self._total_steps = value

    def __call__(self, step):
        step = ops.cast(step, "float32")
        final = self.base_lr * self.final_factor
        span = float(max(1, self.total_steps - self.warmup_steps))
        t = ops.clip((step - float(self.warmup_steps)) / span, 0.0, 1.0)
        lr = final + (self.base_lr - final) * 0.5 * (1.0 + ops.cos(math.pi * t))
        if self.warmup_steps > 0:
            alpha = ops.minimum(step / float(self.warmup_steps), 1.0)
            warm = self.base_lr * (self.warmup_factor + (1.0 - self.warmup_factor) * alpha)
            lr = ops.where(step < float(self.warmup_steps), warm, lr)
        return lr

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_factor": self.warmup_factor,
            "final_factor": self.final_factor,
            "name": self.name,
        }
