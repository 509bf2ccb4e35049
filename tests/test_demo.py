"""A short real training run through the demo pipeline: the tiny SSD must
learn the synthetic shapes well above chance, and the demo must write every
file it promises."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_ssd.demo import DEMO_SETTINGS, plot_history, run_demo

# 400 images x 3 epochs (75 steps of 16) train in 20 to 80 s on 2 shared CPU
# cores and reached test mAPs of 0.88, 0.79, 0.89 and 0.68 with seeds 0-3
# (an untrained model scores about 0.0); the floor leaves room for platforms.
QUICK = {"num_train": 400, "num_test": 60, "epochs": 3, "lr_decay_epochs": (2,),
         "num_predictions": 3}
MAP_FLOOR = 0.5


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(str(out), seed=0, verbose=0, **QUICK)
    return out, metrics


def test_short_training_run_learns_well_above_chance(demo):
    _, metrics = demo
    assert metrics["mAP"] >= MAP_FLOOR, metrics["history"]
    losses = metrics["history"]["loss"]
    assert len(losses) == 3 and losses[-1] < 0.6 * losses[0]
    # The per-epoch test mAP is recorded and the last equals the final one.
    maps = metrics["history"]["val_mAP"]
    assert len(maps) == 3
    assert maps[-1] == pytest.approx(metrics["mAP"], abs=1e-6)


def test_demo_writes_model_predictions_plot_and_metrics(demo):
    out, metrics = demo
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["mAP"] == pytest.approx(metrics["mAP"])
    assert saved["train_seconds"] > 0 and saved["total_seconds"] >= saved["train_seconds"]
    assert set(saved["AP"]) == {"circle", "square", "triangle", "cross"}
    assert saved["num_train_images"] == 400 and saved["num_test_images"] == 60
    assert (out / "model.keras").is_file()
    pngs = sorted((out / "predictions").glob("*.png"))
    assert len(pngs) == 3
    detections = json.loads((out / "predictions" / "detections.json").read_text())
    assert len(detections["images"]) == 3
    # A model that learned finds objects on most test images.
    assert sum(len(rec["detections"]) > 0 for rec in detections["images"]) >= 2
    plot = Image.open(out / "training.png")
    assert plot.size[0] > 300 and np.asarray(plot.convert("L")).std() > 5


def test_saved_demo_model_predicts_like_the_trained_one(demo):
    import keras

    from keras_ssd.inference.predict import predict_image

    out, _ = demo
    detections = json.loads((out / "predictions" / "detections.json").read_text())
    first = detections["images"][0]
    model = keras.saving.load_model(out / "model.keras", compile=False)
    det = predict_image(model, first["image"], confidence_threshold=0.5)
    assert [d["name"] for d in first["detections"]] == det["names"]
    np.testing.assert_allclose([d["box"] for d in first["detections"]],
                               det["boxes"].reshape(-1, 4), atol=0.06)


def test_plot_history_skips_missing_map_entries(tmp_path):
    path = plot_history({"loss": [3.0, 2.0, 1.5], "val_mAP": [None, 0.5, 0.8]},
                        str(tmp_path / "p.png"))
    assert path is not None and Image.open(path).size[0] > 300


def test_run_demo_rejects_unknown_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown settings epochz"):
        run_demo(str(tmp_path), verbose=0, epochz=3)
    assert set(QUICK) <= set(DEMO_SETTINGS)
