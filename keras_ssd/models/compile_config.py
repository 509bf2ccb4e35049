"""Compile configs that load under every Keras backend.

Under `KERAS_BACKEND=torch`, `keras.optimizers.AdamW(...)` (and SGD, Adam,
...) returns an instance of a backend class such as
`keras.src.backend.torch.optimizers.torch_adamw.AdamW`. That class has no
public Keras name, so Keras serializes it under its private module: a
`.keras` file saved under torch then names a module that TensorFlow and JAX
processes cannot import without torch, and with torch installed they would
rebuild a torch optimizer. The public class (`keras.optimizers.AdamW`)
takes the same config and becomes the backend's own class on every backend.
"""

import keras

#: Module prefix of the backend-specific classes Keras substitutes.
_BACKEND_MODULES = "keras.src.backend."


def _public_optimizer(class_name):
    cls = getattr(keras.optimizers, class_name, None)
    return isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)


def portable_compile_config(config):
    """`config` (a serialized compile config, or any part of one) with every
    backend-specific optimizer class named by its public `keras.optimizers`
    class instead; other entries are returned unchanged.

    Args:
        config: what `keras.Model.get_compile_config` returns (nested dicts
            and lists), or a compile config read from a `.keras` file.

    Returns:
        A new config of the same structure.

    Example:

    >>> config = portable_compile_config({"optimizer": {
    ...     "module": "keras.src.backend.torch.optimizers.torch_adamw",
    ...     "class_name": "AdamW", "config": {}, "registered_name": None}})
    >>> config["optimizer"]["module"]
    'keras.optimizers'
    """
    if isinstance(config, list):
        return [portable_compile_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    out = {k: portable_compile_config(v) for k, v in config.items()}
    module = out.get("module")
    if (isinstance(module, str) and module.startswith(_BACKEND_MODULES)
            and _public_optimizer(out.get("class_name"))):
        out["module"] = "keras.optimizers"
        out["registered_name"] = None
    return out


def compile_config_for_this_backend(config):
    """A compile config read from a `.keras` file, fit to run on the active
    backend: `portable_compile_config`, and under torch `jit_compile=False`
    where the file says `True`.

    `jit_compile` is the saving backend's speed choice (XLA under TensorFlow
    and JAX); under torch, `True` means `torch.compile`, minutes of C++
    compilation on a CPU before the first step. Compile the model again to
    ask for it.

    Args:
        config: a compile config read from a `.keras` file.

    Returns:
        A new config of the same structure.
    """
    config = portable_compile_config(config)
    if keras.backend.backend() == "torch" and config.get("jit_compile") is True:
        config["jit_compile"] = False
    return config
