"""Speed-ups, applied to a model where it runs; never part of its definition.

- `apply.py`: `prepare_for_inference(model)`, the view of a model that the
  inference path and the benchmarks run: the measured `jit_compile` default
  and, for float32 CPU inference on TensorFlow, Winograd convolutions.
- `runtime.py`: the measured `jit_compile` default per backend and device,
  mixed precision, and the fast array path of `predict` (`predict_arrays`).
- `winograd.py`, `winograd_conv.py`: Winograd F(2x2)/F(4x4) 3x3
  convolutions for float32 CPU inference, and the `WinogradConv2D` layer.
- `machine.py`: the CPU (features from /proc/cpuinfo) and its kind, which
  the per-machine choices follow (bfloat16 only where native, the Winograd
  tile rule, the CPU XLA table), and the per-machine tuning cache.
"""

from keras_ssd.accel.apply import prepare_for_inference, winograd_tiles

__all__ = ["prepare_for_inference", "winograd_tiles"]
