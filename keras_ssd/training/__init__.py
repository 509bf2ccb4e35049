"""Training: the fit loop, callbacks, crash-safe checkpoints, learning-rate
schedules and multi-device distribution.

- `fit.py`: `train_detector` and `make_optimizer`.
- `callbacks.py`: `MeanAveragePrecision`, `StopOnNaN`, learning-rate logging.
- `checkpoints.py`: `TrainingCheckpoint` and `resume`.
- `logs.py`: what a run leaves behind (TensorBoard, `TrainingLog`'s CSV and plot).
- `schedules.py`: `WarmupPiecewiseDecay`, `WarmupCosineDecay` (defined in
  `keras_ssd.schedules`, below the training code, for `keras_ssd.load_model`).
- `distribute.py`: strategies, global batch checks, sync batch norm.

The names are loaded on first use, so importing one module (for example
`keras_ssd.training.checkpoints`) does not import the rest.
"""

import importlib as _importlib

_NAMES = {
    "train_detector": "fit",
    "make_optimizer": "fit",
    "decay_steps_from_epochs": "fit",
    "LearningRateLogger": "callbacks",
    "MeanAveragePrecision": "callbacks",
    "EarlyStoppingOnEvaluations": "callbacks",
    "NonFiniteLossError": "callbacks",
    "StepLearningRate": "callbacks",
    "StopOnNaN": "callbacks",
    "TrainingCheckpoint": "checkpoints",
    "resume": "checkpoints",
    "TrainingLog": "logs",
    "make_tensorboard": "logs",
    "plot_history": "logs",
    "WarmupPiecewiseDecay": "schedules",
    "WarmupCosineDecay": "schedules",
    "TimeLimit": "callbacks",
    "get_strategy": "distribute",
    "strategy_scope": "distribute",
    "prepare_model": "distribute",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        module = _importlib.import_module(f"{__name__}.{_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
