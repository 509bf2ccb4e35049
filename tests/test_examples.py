"""examples/train_custom_dataset.py: its defaults are the ones the docs
recommend (the tiny model, a 20-minute budget, the recipe, defaults fitted
to the data), and it runs end to end on the built-in synthetic data."""

import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location(
        "train_custom_dataset", ROOT / "examples" / "train_custom_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_custom_dataset_defaults_are_the_documented_ones(example):
    args = example.parse_args(["--data", "my_data"])
    assert (args.model, args.time_limit, args.epochs, args.batch_size, args.fit) == (
        "tiny", 20.0, None, None, True)  # README: --model tiny --time-limit 20
    with pytest.raises(SystemExit):
        example.parse_args([])  # no data and no --synthetic


def test_train_custom_dataset_runs_on_the_synthetic_data(example, tmp_path, capsys):
    out = tmp_path / "run"
    result = example.main(["--synthetic", "--num-images", "12", "--epochs", "1",
                           "--time-limit", "0", "--batch-size", "4", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "12 training and 2 validation images" in printed
    assert "recipe from-scratch-adamw" in printed  # the tiny model's recipe
    assert "defaults fitted to the dataset" in printed
    fitted = json.loads((out / "fitted_defaults.json").read_text())
    assert "config" in fitted or fitted
    assert (out / "checkpoints" / "best.keras").is_file()
    assert 0.0 <= result["mAP"] <= 1.0
    assert list(result["AP_by_name"]) == ["circle", "square", "triangle", "cross"]
