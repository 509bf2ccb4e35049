"""The learning-rate schedules of `keras_ssd.schedules`, under the name the
training code has always offered them by (`from keras_ssd.training.schedules
import WarmupCosineDecay`)."""

from keras_ssd.schedules import WarmupCosineDecay, WarmupPiecewiseDecay

__all__ = ["WarmupCosineDecay", "WarmupPiecewiseDecay"]
