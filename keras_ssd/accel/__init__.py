"""Speed-ups, applied to a model where it runs; never part of its definition.

- `runtime.py`: the measured `jit_compile` default per backend and device,
  mixed precision, and the fast array path of `predict`.
- `winograd.py`, `winograd_conv.py`: Winograd F(2x2)/F(4x4) 3x3
  convolutions for float32 CPU inference.
"""


def prepare_for_inference(model):
    """The model to run for inference: `model` with the measured speed-ups of
    the machine it runs on applied (never changes `model` itself)."""
    from keras_ssd.accel.runtime import apply_runtime_defaults

    return apply_runtime_defaults(model)
