"""Detect objects in images with a trained keras-ssd model and save pictures.

    python examples/predict.py --model-file runs/custom/checkpoints/best.keras \
        photo1.jpg photo2.jpg --out detections --threshold 0.5

Prints each detection (class, score, box in pixels of the original image)
and writes `<out>/<image>.png` with the boxes drawn. The same from the
command line: `keras-ssd predict --model-file M.keras IMAGE... --out DIR`.
"""

import argparse
import os

import keras

from keras_ssd.inference.predict import predict_images
from keras_ssd.visualize import draw_detections


def main():
    p = argparse.ArgumentParser(description="Run a keras-ssd model on images.")
    p.add_argument("images", nargs="+")
    p.add_argument("--model-file", required=True)
    p.add_argument("--out", default="detections")
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args()

    import keras_ssd.models  # noqa: F401 - registers the SSD classes for loading

    model = keras.saving.load_model(args.model_file, compile=False)
    os.makedirs(args.out, exist_ok=True)
    # predict_images batches the forward passes; the decoder (softmax,
    # per-class NMS, top-k) is built once and reused.
    results = predict_images(model, args.images, confidence_threshold=args.threshold)
    for path, det in zip(args.images, results):
        print(f"{path}: {len(det['scores'])} objects")
        for name, score, box in zip(det["names"], det["scores"], det["boxes"]):
            x1, y1, x2, y2 = box
            print(f"  {name:>15s} {score:.2f}  ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f})")
        out = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + ".png")
        draw_detections(path, det).save(out)
        print(f"  -> {out}")


if __name__ == "__main__":
    main()
