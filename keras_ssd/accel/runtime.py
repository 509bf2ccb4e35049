"""Fast runtime defaults: XLA (`jit_compile`) per backend and device, and
a mixed-precision switch.

Both settings were chosen by measurement (`benchmarks/run.py`,
`docs/performance.md`):

- **XLA.** On CPU with the TensorFlow backend, `jit_compile=True` makes the
  SSD300 forward pass slower than plain `tf.function` graphs, whose
  convolutions run through oneDNN. On GPUs and TPUs XLA is the usual win, and
  on JAX it is the only compiled path. `default_jit_compile()` picks per
  backend and device; the package's `compile`/`fit`/`predict` paths and the
  CLI use it.
- **Mixed precision.** `set_mixed_precision(True)` selects `mixed_float16`
  on GPU, `mixed_bfloat16` on TPU, and on CPU `mixed_bfloat16` only where
  the CPU computes bfloat16 natively (AVX512_BF16 or AMX,
  `keras_ssd.accel.machine.native_bfloat16()`: faster than float32
  there); elsewhere bfloat16 is emulated and no faster than float32, so it
  keeps float32 and warns why (`force=True` to take bfloat16 anyway).
  Variables stay float32; the SSD head's output, the loss and the decoder
  compute in float32.

The CPU-side choices follow the machine (`keras_ssd.accel.machine`): XLA on
a TensorFlow CPU comes from `machine.cpu_jit_compile()`, a per-kind table
(off on every kind measured so far).

Overrides, strongest first: an explicit argument, then the environment
variables `KERAS_SSD_JIT_COMPILE` (`true`/`false`/`auto`) and
`KERAS_SSD_DEVICE` (`cpu`/`gpu`/`tpu`, for the device detection), then the
measured default.

Example:

>>> import keras_ssd.accel.runtime as rt
>>> model.compile(optimizer="sgd", loss=loss, **rt.compile_defaults())
>>> rt.set_mixed_precision(True)   # before building the model
'mixed_bfloat16'                    # ('float32' and a warning without native bf16)
"""

import os
import warnings

import keras

from keras_ssd.accel import machine

# The array fast path of `predict` lives with the models (`SSD.predict` uses
# it); it is public here too, for any built Keras model.
from keras_ssd.models.fast_predict import predict_arrays  # noqa: F401

JIT_ENV = "KERAS_SSD_JIT_COMPILE"
DEVICE_ENV = "KERAS_SSD_DEVICE"

DEVICES = ("cpu", "gpu", "tpu")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _normalize_device(device, source="device"):
    value = str(device).strip().lower()
    if value == "cuda":
        value = "gpu"
    if value not in DEVICES:
        raise ValueError(f"{source} must be one of {DEVICES}, got {device!r}")
    return value


def _normalize_backend(backend):
    if backend is None:
        return keras.backend.backend()
    value = str(backend).strip().lower()
    if value not in ("tensorflow", "jax", "torch", "numpy", "openvino"):
        raise ValueError(
            "backend must be one of 'tensorflow', 'jax', 'torch', 'numpy', "
            f"'openvino', got {backend!r}"
        )
    return value


def default_device(backend=None):
    """The accelerator kind the backend will run on: `"cpu"`, `"gpu"` or `"tpu"`.

    `KERAS_SSD_DEVICE` overrides the detection.

    Args:
        backend: Keras backend name; defaults to the active one.
    """
    env = os.environ.get(DEVICE_ENV, "").strip()
    if env:
        return _normalize_device(env, source=f"environment variable {DEVICE_ENV}")
    backend = _normalize_backend(backend)
    if backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("TPU"):
            return "tpu"
        if tf.config.list_physical_devices("GPU"):
            return "gpu"
        return "cpu"
    if backend == "jax":
        import jax

        kind = jax.default_backend()
        return kind if kind in ("gpu", "tpu") else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    return "cpu"


def _parse_jit(value, source):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text == "auto":
        return "auto"
    raise ValueError(
        f"{source} must be true/false/auto (or 1/0), got {value!r}"
    )


def default_jit_compile(backend=None, device=None):
    """The `jit_compile` setting measured fastest for a backend and device.

    - TensorFlow on CPU: `keras_ssd.accel.machine.cpu_jit_compile()`, the
      entry of this CPU kind in `machine.CPU_JIT_COMPILE` (default `False`:
      XLA was no faster than, or slower than, the oneDNN graph path
      for SSD300 on the CPUs measured).
    - TensorFlow on GPU/TPU: `True`.
    - JAX: `True` (XLA is JAX's compiler; `False` would run eagerly).
    - PyTorch: `False` (Keras' default; `torch.compile` costs minutes of
      compilation and gains little for a convolution-bound model).
    - NumPy/OpenVINO: `False`.

    The environment variable `KERAS_SSD_JIT_COMPILE` (`true`, `false` or
    `auto`, Keras' own heuristic) overrides this choice.

    Args:
        backend: Keras backend name; defaults to the active one.
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.

    Returns:
        `True`, `False` or `"auto"` (only when asked for by the environment).
    """
    env = os.environ.get(JIT_ENV, "").strip()
    if env:
        return _parse_jit(env, f"environment variable {JIT_ENV}")
    backend = _normalize_backend(backend)
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    device = default_device(backend) if device is None else _normalize_device(device)
    if device != "cpu":
        return True
    return bool(machine.cpu_jit_compile())


def resolve_jit_compile(jit_compile=None, backend=None, device=None):
    """An explicit `jit_compile` argument, or the measured default when `None`.

    `"auto"` is passed through (Keras then applies its own heuristic).
    """
    if jit_compile is None:
        return default_jit_compile(backend=backend, device=device)
    return _parse_jit(jit_compile, "jit_compile")


def compile_defaults(jit_compile=None, **compile_kwargs):
    """Keyword arguments for `model.compile` with the fast defaults filled in.

    Args:
        jit_compile: `None` for `default_jit_compile()`, else passed through.
        **compile_kwargs: other `compile` arguments, returned unchanged.

    Returns:
        dict, e.g. `{"jit_compile": False, "optimizer": ...}`.

    Example:

    >>> model.compile(optimizer=opt, loss=SSDLoss(), **compile_defaults())
    """
    kwargs = dict(compile_kwargs)
    kwargs["jit_compile"] = resolve_jit_compile(jit_compile)
    return kwargs


def apply_runtime_defaults(model, jit_compile=None):
    """Set `model.jit_compile` to the fast default for `predict`/`evaluate`.

    Keras resolves an uncompiled model's `jit_compile` lazily with its own
    `"auto"` heuristic; this pins the measured choice (or `jit_compile` when
    given) so `model.predict` takes the fast path. Compiled functions already
    traced are dropped so the new setting applies. Returns the model.
    """
    value = resolve_jit_compile(jit_compile)
    if value == "auto":
        return model
    if getattr(model, "_jit_compile", None) is not value:
        model.jit_compile = value
        for name in ("train_function", "test_function", "predict_function"):
            if hasattr(model, name):
                setattr(model, name, None)
    return model


def mixed_precision_policy(device=None, force=False):
    """The policy `set_mixed_precision(True)` selects on a device.

    `"mixed_float16"` on GPU, `"mixed_bfloat16"` on TPU, and on CPU
    `"mixed_bfloat16"` where the CPU computes bfloat16 natively
    (`keras_ssd.accel.machine.native_bfloat16()`: AVX512_BF16 or AMX; the
    machine kind, which `KERAS_SSD_CPU_KIND` overrides), else `"float32"`
    (emulated bfloat16 is no faster). `force=True` gives `"mixed_bfloat16"`
    on every CPU.

    Args:
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.
        force: bool, bfloat16 on CPU even without native support.

    Example:

    >>> mixed_precision_policy("cpu")   # on an AVX2-only CPU
    'float32'
    """
    device = default_device() if device is None else _normalize_device(device)
    if device == "gpu":
        return "mixed_float16"
    if device == "cpu" and not force and not machine.native_bfloat16():
        return "float32"
    return "mixed_bfloat16"


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _mixed_policy(enabled, device, force, caller):
    """The policy for `enabled` on `device`, warning when a CPU without
    native bfloat16 keeps float32."""
    _check_bool("enabled", enabled)
    _check_bool("force", force)
    if not enabled:
        return "float32"
    device = default_device() if device is None else _normalize_device(device)
    policy = mixed_precision_policy(device, force=force)
    if policy == "float32":
        warnings.warn(
            f"{caller}: keeping float32 on this CPU ({machine.cpu_features().model_name}, "
            f"kind {machine.machine_kind()}): it has no native bfloat16 (AVX512_BF16 or "
            "AMX), so mixed_bfloat16 would be emulated and no faster than float32; pass "
            f"force=True to use it anyway, or set {machine.KIND_ENV} if the detection is "
            "wrong",
            RuntimeWarning, stacklevel=3)
    return policy


def set_mixed_precision(enabled=True, device=None, force=False):
    """Switch Keras' global dtype policy for models built afterwards.

    Enabled: `mixed_float16` on GPU (Keras adds loss scaling for float16 in
    `compile`), `mixed_bfloat16` on TPU and on CPUs with native bfloat16
    (AVX512_BF16 or AMX); on a CPU without it the policy stays `float32`,
    with a `RuntimeWarning` saying why, unless `force=True`. Disabled:
    `float32`. Variables are float32 either way, and keras-ssd keeps the
    model's output, the loss and the decoder in float32, so boxes and scores
    keep float32 precision.

    Build (or load) the model *after* this call: a layer takes the policy
    that is global when it is created.

    Args:
        enabled: bool.
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.
        force: bool, `mixed_bfloat16` on a CPU without native bfloat16 too
            (e.g. to measure it).

    Returns:
        The name of the policy now in force.

    Raises:
        ValueError: `enabled` or `force` is not a bool.
    """
    name = _mixed_policy(enabled, device, force, "set_mixed_precision")
    keras.config.set_dtype_policy(name)
    return name


def mixed_precision_enabled():
    """True when the global dtype policy computes in a 16-bit float."""
    return keras.config.dtype_policy().compute_dtype in ("bfloat16", "float16")


def mixed_precision_copy(model, enabled=True, device=None, force=False):
    """A copy of a keras-ssd model computing under another dtype policy.

    Rebuilds the model from its constructor config (`SSD.get_config()`)
    under the policy `set_mixed_precision(enabled, device, force)` would
    select (float32 on a CPU without native bfloat16, with a warning, unless
    `force=True`) and copies the weights, e.g. to run a float32-trained
    model in bfloat16:

    >>> fast = mixed_precision_copy(keras.saving.load_model("model.keras"))

    Args:
        model: a `keras_ssd.models.SSD` (or any model whose `from_config`
            builds its layers under the global policy).
        enabled: bool, mixed precision on (default) or plain float32.
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.
        force: bool, bfloat16 on a CPU without native bfloat16 too.

    Returns:
        The new model, with `apply_runtime_defaults` applied.

    Raises:
        ValueError: when the rebuilt model does not take the policy (a plain
            functional model stores each layer's dtype in its config).
    """
    policy = _mixed_policy(enabled, device, force, "mixed_precision_copy")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        copy = model.__class__.from_config(model.get_config())
    finally:
        keras.config.set_dtype_policy(previous)
    wanted = keras.DTypePolicy(policy).compute_dtype
    convs = [layer for layer in copy._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.Conv2D)]
    if convs and convs[0].compute_dtype != wanted:
        raise ValueError(
            f"mixed_precision_copy: {type(model).__name__} {model.name!r} did not "
            f"rebuild under the {policy!r} policy (its config pins layer dtypes); "
            "build the model under keras_ssd.accel.runtime.set_mixed_precision(...) instead"
        )
    copy.set_weights(model.get_weights())
    return apply_runtime_defaults(copy)
