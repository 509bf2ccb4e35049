"""Compile configs that load under every backend (`keras_ssd.models.compile_config`)."""

import json
import zipfile

import keras
import pytest

from keras_ssd.models.compile_config import (
    compile_config_for_this_backend, portable_compile_config,
)

TORCH_ADAMW = "keras.src.backend.torch.optimizers.torch_adamw"


def _optimizer(module, class_name="AdamW"):
    return {"module": module, "class_name": class_name, "config": {"learning_rate": 0.01},
            "registered_name": None}


def test_backend_optimizer_classes_are_named_by_their_public_class():
    config = {"optimizer": _optimizer(TORCH_ADAMW), "loss": {"module": "keras_ssd.losses",
                                                             "class_name": "SSDLoss"},
              "jit_compile": False}
    out = portable_compile_config(config)
    assert out["optimizer"]["module"] == "keras.optimizers"
    assert out["optimizer"]["class_name"] == "AdamW"
    assert out["loss"] == config["loss"] and out["jit_compile"] is False
    assert config["optimizer"]["module"] == TORCH_ADAMW  # the input is left alone


def test_a_wrapped_optimizer_is_rewritten_and_non_optimizers_are_not():
    inner = _optimizer("keras.src.backend.torch.optimizers.torch_sgd", "SGD")
    config = {"optimizer": {"module": "keras.optimizers", "class_name": "LossScaleOptimizer",
                            "config": {"inner_optimizer": inner}, "registered_name": None},
              "metrics": [{"module": "keras.src.backend.torch.layers", "class_name": "Foo"}]}
    out = portable_compile_config(config)
    assert out["optimizer"]["config"]["inner_optimizer"]["module"] == "keras.optimizers"
    assert out["metrics"] == config["metrics"]  # not a keras.optimizers class


def test_a_file_naming_the_private_torch_optimizer_loads_with_the_public_one(
        tmp_path, make_tiny_model):
    import keras_ssd
    from keras_ssd.losses import SSDLoss

    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=SSDLoss())
    good = tmp_path / "good.keras"
    model.save(good)
    bad = tmp_path / "torch_0_2.keras"  # as keras-ssd saved under torch before the fix
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                optimizer = config["compile_config"]["optimizer"]
                assert optimizer["module"] == "keras.optimizers"
                optimizer["module"] = TORCH_ADAMW
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras_ssd.load_model(bad)
    assert type(loaded.optimizer).__name__ == "AdamW"
    backend_module = f"keras.src.backend.{keras.backend.backend()}."
    module = type(loaded.optimizer).__module__
    assert module.startswith("keras.src.optimizers") or module.startswith(backend_module)


@pytest.mark.backend
def test_a_files_jit_compile_is_not_torch_compile_under_torch():
    out = compile_config_for_this_backend({"optimizer": _optimizer(TORCH_ADAMW),
                                           "jit_compile": True})
    assert out["optimizer"]["module"] == "keras.optimizers"
    assert out["jit_compile"] is (keras.backend.backend() != "torch")
