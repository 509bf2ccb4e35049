"""The end-to-end demo behind `keras-ssd demo`.

Synthetic Pascal VOC data -> train the tiny SSD -> VOC07 mAP on the test
split -> annotated test images, a plot of loss and mAP per epoch, and
`metrics.json`. Tuned to finish within 10 minutes on 2 CPU cores with a test
mAP@0.5 (VOC07 11-point) of at least 0.90.

Output folder layout:

    data/                 the synthetic dataset (VOC layout, labels.txt)
    model.keras           the trained model (`keras-ssd predict/evaluate` read it)
    predictions/*.png     annotated test images
    predictions/detections.json
    training.png          loss and test mAP per epoch (needs matplotlib)
    metrics.json          mAP, per-class AP, timings, the settings, history
"""

import json
import os
import time

#: The demo's settings, chosen by measurement on a 2-core CPU (see
#: docs/getting_started.md): the data generator's four shape classes, the
#: tiny 160 px SSD, Adam with warm-up and two x0.1 steps, and light
#: augmentation (the classes differ by colour, so no hue/saturation jitter).
DEMO_SETTINGS = {
    "num_train": 1000,
    "num_test": 200,
    "image_size": 160,
    "epochs": 8,
    "batch_size": 16,
    "optimizer": "adam",
    "learning_rate": 3e-3,
    "warmup_epochs": 0.5,
    "lr_decay_epochs": (6, 7),
    "augmentation": {
        "hue_prob": 0.0,
        "saturation_prob": 0.0,
        "expand_prob": 0.0,
        "min_ious": (),
    },
    "workers": 1,
    "eval_every": 1,
    "num_predictions": 8,
}


def _log(verbose, message):
    if verbose:
        print(message, flush=True)


def plot_history(history, path):
    """Write the demo's PNG of training loss and test mAP per epoch.

    `keras_ssd.training.logs.plot_history` with the demo's title.

    Args:
        history: dict with `"loss"` and optionally `"val_mAP"` lists.
        path: output PNG path.

    Returns:
        `path`, or `None` when matplotlib is not installed.
    """
    from keras_ssd.training.logs import plot_history as plot

    return plot(history, path, title="keras-ssd demo: tiny SSD on synthetic shapes")


def run_demo(out_dir="keras_ssd_demo", seed=0, verbose=1, **overrides):
    """Run the demo pipeline and return its metrics.

    Args:
        out_dir: output folder (created; files in it are overwritten).
        seed: int, for the data, the weights and the batch order.
        verbose: 0 silent, 1 progress and a summary.
        **overrides: replace entries of `DEMO_SETTINGS` (e.g. `epochs=2`,
            `num_train=200` for a quick smoke run).

    Returns:
        The dict written to `metrics.json` (`mAP`, `AP`, `train_seconds`,
        `total_seconds`, `history`, `settings`, `files`).
    """
    unknown = sorted(set(overrides) - set(DEMO_SETTINGS))
    if unknown:
        raise ValueError(f"run_demo: unknown settings {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(DEMO_SETTINGS))}")
    settings = {**DEMO_SETTINGS, **overrides}
    total_start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_ssd.evaluation.evaluate import evaluate

    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.path.join(out_dir, "data")
    train_set, test_set = _demo_data(data_dir, settings, seed, verbose)
    model, logs, train_and_eval_seconds = _train(train_set, test_set, settings, seed,
                                                 verbose)
    _log(verbose, f"[3/5] evaluating on {len(test_set)} test images")
    result = evaluate(model, test_set, batch_size=32, verbose=0)
    model_path = os.path.join(out_dir, "model.keras")
    model.save(model_path)
    pred_dir = os.path.join(out_dir, "predictions")
    paths = _draw_predictions(model, test_set, settings["num_predictions"], pred_dir,
                              verbose)
    _log(verbose, "[5/5] writing the training plot and metrics.json")
    plot_path = plot_history(logs, os.path.join(out_dir, "training.png"))
    metrics = {
        "mAP": float(result["mAP"]),
        "metric": "Pascal VOC2007 11-point mAP at IoU 0.5",
        "AP": {k: float(v) for k, v in result["AP_by_name"].items()},
        "train_seconds": round(float(sum(logs.get("epoch_seconds", []))), 1),
        "train_and_eval_seconds": round(train_and_eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - total_start, 1),
        "epochs": len(logs.get("loss", [])),
        "num_train_images": len(train_set),
        "num_test_images": len(test_set),
        "history": {key: logs.get(key, []) for key in
                    ("loss", "val_mAP", "learning_rate", "epoch_seconds")},
        "settings": {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in settings.items()},
        "seed": seed,
        "files": {
            "data": os.path.abspath(data_dir),
            "model": os.path.abspath(model_path),
            "predictions": os.path.abspath(pred_dir),
            "plot": None if plot_path is None else os.path.abspath(plot_path),
            "metrics": os.path.abspath(os.path.join(out_dir, "metrics.json")),
        },
    }
    _write_json(metrics, metrics["files"]["metrics"])
    if verbose:
        _print_summary(metrics, paths[0] if paths else "IMAGE", out_dir)
    return metrics


def _demo_data(data_dir, settings, seed, verbose):
    """Write the synthetic VOC set; its `(trainval, test)` datasets."""
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset, make_synthetic_voc

    _log(verbose, f"[1/5] writing {settings['num_train']} + {settings['num_test']} synthetic "
                  f"images to {data_dir}")
    make_synthetic_voc(data_dir, num_trainval=settings["num_train"],
                       num_test=settings["num_test"], image_size=settings["image_size"],
                       seed=seed)
    class_names = list(SYNTHETIC_CLASSES)
    return (VOCDataset(data_dir, "trainval", class_names=class_names),
            VOCDataset(data_dir, "test", class_names=class_names))


def _train(train_set, test_set, settings, seed, verbose):
    """Train the tiny SSD: `(model, per-epoch logs, seconds of training and
    validation)`."""
    import keras

    from keras_ssd.models import SSDTiny
    from keras_ssd.training.fit import train_detector

    keras.utils.set_random_seed(seed)
    model = SSDTiny(class_names=list(train_set.class_names))
    _log(verbose, f"[2/5] training {model.name} ({model.count_params():,} parameters) for "
                  f"{settings['epochs']} epochs")
    start = time.perf_counter()
    history = train_detector(
        model, train_set, epochs=settings["epochs"], batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], optimizer=settings["optimizer"],
        warmup_epochs=settings["warmup_epochs"],
        lr_decay_epochs=[e for e in settings["lr_decay_epochs"] if e < settings["epochs"]],
        val_dataset=test_set, eval_every=settings["eval_every"],
        augmentation=settings["augmentation"], workers=settings["workers"], seed=seed,
        verbose=2 if verbose else 0,
        val_loss=False,  # the timed demo scores mAP only
    )
    seconds = time.perf_counter() - start
    logs = {k: [None if v is None else float(v) for v in vs]
            for k, vs in history.history.items()}
    return model, logs, seconds


def _draw_predictions(model, test_set, count, pred_dir, verbose):
    """Draw the detections (score >= 0.5) of the first `count` test images
    into `pred_dir`, with a detections.json; returns the images' paths."""
    from keras_ssd.inference.predict import predict_images
    from keras_ssd.visualize import draw_detections

    os.makedirs(pred_dir, exist_ok=True)
    count = min(count, len(test_set))
    paths = [test_set[i]["image_path"] for i in range(count)]
    _log(verbose, f"[4/5] drawing detections on {count} test images in {pred_dir}")
    records = []
    for path, det in zip(paths, predict_images(model, paths, confidence_threshold=0.5)):
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        draw_detections(path, det).save(os.path.join(pred_dir, name))
        records.append({
            "image": os.path.abspath(path), "annotated": name,
            "detections": [
                {"name": n, "label": int(lab), "score": round(float(s), 4),
                 "box": [round(float(v), 1) for v in b]}
                for b, s, lab, n in zip(det["boxes"], det["scores"], det["labels"],
                                        det["names"])
            ],
        })
    with open(os.path.join(pred_dir, "detections.json"), "w", encoding="utf-8") as f:
        json.dump({"threshold": 0.5, "images": records}, f, indent=2)
    return paths


def _write_json(metrics, path):
    import numpy as np

    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, default=lambda o: np.asarray(o).tolist())
        f.write("\n")


def _print_summary(metrics, example, out_dir):
    files = metrics["files"]
    print()
    print(f"test mAP@0.5 (VOC07): {metrics['mAP']:.4f}  "
          + "  ".join(f"{k} {v:.3f}" for k, v in metrics["AP"].items()))
    print(f"training: {metrics['train_seconds']:.0f} s for {metrics['epochs']} epochs; "
          f"whole demo: {metrics['total_seconds']:.0f} s")
    print(f"dataset:          {files['data']}")
    print(f"model:            {files['model']}")
    print(f"annotated images: {files['predictions']}")
    if files["plot"] is None:
        print("plot:             skipped (matplotlib is not installed: "
              "pip install matplotlib)")
    else:
        print(f"plot:             {files['plot']}")
    print(f"metrics:          {files['metrics']}")
    print(f"try: keras-ssd predict --model-file {files['model']} {example} "
          f"--out {os.path.join(out_dir, 'mine')}")
