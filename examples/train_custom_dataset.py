"""Train an SSD on your own objects, annotated in Pascal VOC format.

Most annotation tools (LabelImg, CVAT, Label Studio, Roboflow) export
Pascal VOC XML. Put the export in this layout:

    my_data/
      Annotations/<id>.xml        one file per image (boxes in pixels)
      JPEGImages/<id>.jpg         the images (.jpg, .png, ...)
      ImageSets/Main/train.txt    image ids, one per line
      ImageSets/Main/val.txt
      labels.txt                  class names, one per line

Then:

    python examples/train_custom_dataset.py --data my_data --classes my_data/labels.txt \
        --model mobilenet_v2 --epochs 60 --out runs/custom

No data at hand? `--make-synthetic` writes a small synthetic set first:

    python examples/train_custom_dataset.py --make-synthetic --data /tmp/shapes \
        --classes /tmp/shapes/labels.txt --model tiny --epochs 8 --out runs/shapes

Choosing a model: `tiny` (160 px, trains on a CPU, no pretrained weights),
`mobilenet_v2` (320 px, ImageNet backbone, a good default for small datasets
on a GPU or a patient CPU), `ssd300` / `ssd512` (VGG16, the paper's models,
for a GPU).
"""

import argparse
import os

import keras

from keras_ssd.cli import parse_classes
from keras_ssd.data import VOCDataset, make_synthetic_voc
from keras_ssd.evaluation.evaluate import evaluate
from keras_ssd import presets
from keras_ssd.models import build_model
from keras_ssd.training.fit import train_detector



def parse_args():
    p = argparse.ArgumentParser(description="Train an SSD on a VOC-format dataset.")
    p.add_argument("--data", required=True, help="VOC-format folder")
    p.add_argument("--classes", required=True,
                   help="class names: a comma list or a file with one per line")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--model", choices=presets.names(), default="mobilenet_v2")
    p.add_argument("--backbone-weights", default="imagenet",
                   help="'imagenet', 'none' or a weights file (not used by tiny)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None,
                   help="default: 1e-3 for SGD (pretrained backbones), 3e-3 Adam for tiny")
    p.add_argument("--out", default="runs/custom")
    p.add_argument("--make-synthetic", action="store_true",
                   help="first write a synthetic shapes dataset to --data")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main():
    args = parse_args()
    if args.make_synthetic:
        make_synthetic_voc(args.data, num_trainval=600, num_test=100, image_size=160,
                           seed=args.seed)
        args.train_split, args.val_split = "trainval", "test"
    class_names = parse_classes(args.classes)
    train = VOCDataset(args.data, args.train_split, class_names=class_names)
    val = VOCDataset(args.data, args.val_split, class_names=class_names)
    print(f"{len(train)} training and {len(val)} validation images, "
          f"classes: {', '.join(class_names)}")

    keras.utils.set_random_seed(args.seed)
    kwargs = {"weight_decay": 5e-4}
    if presets.get(args.model).pretrained_backbone:
        weights = None if args.backbone_weights == "none" else args.backbone_weights
        kwargs["backbone_weights"] = weights
    model = build_model(args.model, class_names=class_names, **kwargs)

    # Randomly initialised tiny models train faster with Adam; pretrained
    # backbones keep the paper's SGD recipe.
    optimizer = "adam" if args.model == "tiny" else "sgd"
    lr = args.lr or (3e-3 if optimizer == "adam" else 1e-3)
    checkpoints = os.path.join(args.out, "checkpoints")
    history = train_detector(
        model, train, epochs=args.epochs, batch_size=args.batch_size, learning_rate=lr,
        optimizer=optimizer, warmup_epochs=1, val_dataset=val,
        eval_every=max(1, args.epochs // 10), checkpoint_dir=checkpoints,
        augmentation=None, workers=2, seed=args.seed,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(args.out, "log.csv"))],
    )
    best = os.path.join(checkpoints, "best.keras")
    model = keras.saving.load_model(best, compile=False)
    result = evaluate(model, val, verbose=0)
    print(f"best checkpoint {best}: validation mAP {result['mAP']:.4f}")
    for name, ap in result["AP_by_name"].items():
        print(f"  {name:>20s}  {ap:.4f}")
    print(f"epochs run: {len(history.history['loss'])}")
    print(f"predict with: python examples/predict.py --model-file {best} IMAGE...")


if __name__ == "__main__":
    main()
