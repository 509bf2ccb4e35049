"""Speed-ups, applied to a model where it runs; never part of its definition.

- `runtime.py`: the measured `jit_compile` default per backend and device,
  mixed precision, and the fast array path of `predict`.
- `winograd.py`, `winograd_conv.py`: Winograd F(2x2)/F(4x4) 3x3
  convolutions for float32 CPU inference.
"""
