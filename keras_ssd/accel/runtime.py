"""Fast runtime defaults: XLA (`jit_compile`) per backend and device, and
a mixed-precision switch.

Both settings were chosen by measurement (`benchmarks/run.py`,
`docs/performance.md`):

- **XLA.** On CPU with the TensorFlow backend, `jit_compile=True` makes the
  SSD300 forward pass about 3x slower than plain `tf.function` graphs, whose
  convolutions run through oneDNN. On GPUs and TPUs XLA is the usual win, and
  on JAX it is the only compiled path. `default_jit_compile()` picks per
  backend and device; the package's `compile`/`fit`/`predict` paths and the
  CLI use it.
- **Mixed precision.** `set_mixed_precision(True)` selects `mixed_bfloat16`
  on CPU (about 2x faster than float32 on CPUs with AVX512_BF16 / AMX; it can
  be slower on CPUs without native bfloat16 support) and `mixed_float16` on
  GPU. Variables stay float32; the SSD head's output, the loss and the
  decoder compute in float32.

Overrides, strongest first: an explicit argument, then the environment
variables `KERAS_SSD_JIT_COMPILE` (`true`/`false`/`auto`) and
`KERAS_SSD_DEVICE` (`cpu`/`gpu`/`tpu`, for the device detection), then the
measured default.

Example:

>>> import keras_ssd.accel.runtime as rt
>>> model.compile(optimizer="sgd", loss=loss, **rt.compile_defaults())
>>> rt.set_mixed_precision(True)   # before building the model
'mixed_bfloat16'
"""

import os

import keras

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

    - TensorFlow on CPU: `False` (XLA makes SSD300 about 3x slower than the
      oneDNN graph path on CPU).
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
    return device != "cpu"


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


def mixed_precision_policy(device=None):
    """The mixed-precision policy name for a device.

    `"mixed_bfloat16"` on CPU and TPU, `"mixed_float16"` on GPU.
    """
    device = default_device() if device is None else _normalize_device(device)
    return "mixed_float16" if device == "gpu" else "mixed_bfloat16"


def set_mixed_precision(enabled=True, device=None):
    """Switch Keras' global dtype policy for models built afterwards.

    Enabled: `mixed_bfloat16` on CPU/TPU, `mixed_float16` on GPU (Keras adds
    loss scaling for float16 in `compile`). Disabled: `float32`. Variables
    are float32 either way, and keras-ssd keeps the model's output, the loss
    and the decoder in float32, so boxes and scores keep float32 precision.

    Build (or load) the model *after* this call: a layer takes the policy
    that is global when it is created.

    Args:
        enabled: bool.
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.

    Returns:
        The name of the policy now in force.
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    name = mixed_precision_policy(device) if enabled else "float32"
    keras.config.set_dtype_policy(name)
    return name


def mixed_precision_enabled():
    """True when the global dtype policy computes in a 16-bit float."""
    return keras.config.dtype_policy().compute_dtype in ("bfloat16", "float16")


def mixed_precision_copy(model, enabled=True, device=None):
    """A copy of a keras-ssd model computing under another dtype policy.

    Rebuilds the model from its constructor config (`SSD.get_config()`)
    under the mixed policy of `device` (or float32 when `enabled=False`) and
    copies the weights, e.g. to run a float32-trained model in bfloat16:

    >>> fast = mixed_precision_copy(keras.saving.load_model("model.keras"))

    Args:
        model: a `keras_ssd.models.SSD` (or any model whose `from_config`
            builds its layers under the global policy).
        enabled: bool, mixed precision on (default) or plain float32.
        device: `"cpu"`, `"gpu"` or `"tpu"`; defaults to `default_device()`.

    Returns:
        The new model, with `apply_runtime_defaults` applied.

    Raises:
        ValueError: when the rebuilt model does not take the policy (a plain
            functional model stores each layer's dtype in its config).
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    policy = mixed_precision_policy(device) if enabled else "float32"
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
