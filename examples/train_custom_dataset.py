"""Train an SSD on your own objects, with the settings the docs recommend.

This is `keras-ssd train --data my_data --model tiny --time-limit 20` written
out in Python, so that each step can be changed: it reads any supported
dataset format, fits the input size, priors and zoom-out to the training
boxes (docs/training.md, "Defaults fitted to the dataset"), trains with the
model's recipe (AdamW, warm-up, cosine for a from-scratch model; the paper's
SGD for an ImageNet VGG16; docs/training.md, "Recipes") within a time budget
whose schedule is fitted to the epochs that fit ("A time budget"), keeps
crash-safe checkpoints, then scores the best one.

Your data, in any layout `keras_ssd.data.load_dataset` reads (Pascal VOC,
COCO, YOLO, CSV; docs/own_data.md), for example a VOC export:

    my_data/
      Annotations/<id>.xml        one file per image (boxes in pixels)
      JPEGImages/<id>.jpg         the images (.jpg, .png, ...)
      ImageSets/Main/train.txt    image ids, one per line
      ImageSets/Main/val.txt
      labels.txt                  class names, one per line

    python examples/train_custom_dataset.py --data my_data --split train \
        --val-split val --model tiny --time-limit 20 --out runs/custom

No data at hand? `--synthetic` first writes the demo's shapes data set
(`keras_ssd.data.make_synthetic_voc`) to `OUT/data` and trains on it:

    python examples/train_custom_dataset.py --synthetic --time-limit 5

Choosing a model: `tiny` (160 px, trains on a CPU, no pretrained weights:
the default), `mobilenet_v2` (320 px), `ssd300` / `ssd512` (VGG16 from
ImageNet, the paper's models, for a GPU).
"""

import argparse
import os

import keras

from keras_ssd import presets
from keras_ssd.cli import parse_classes
from keras_ssd.data import load_dataset, make_synthetic_voc
from keras_ssd.evaluation.evaluate import evaluate
from keras_ssd.models import build_model
from keras_ssd.training.fit import train_detector
from keras_ssd.training.fitted_defaults import fit_defaults


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train an SSD on your own dataset.")
    p.add_argument("--data", help="dataset folder or annotation file (required unless "
                                  "--synthetic)")
    p.add_argument("--format", default="auto", help="voc, coco, yolo, csv or auto")
    p.add_argument("--classes", default=None,
                   help="class names: a comma list or a file with one per line (default: "
                        "the dataset's own, e.g. a VOC folder's labels.txt)")
    p.add_argument("--split", default=None, help="training split (default: the format's)")
    p.add_argument("--val-data", default=None, help="validation dataset (default: --data)")
    p.add_argument("--val-split", default="val", help="validation split (default: val)")
    p.add_argument("--model", choices=presets.names(), default="tiny")
    p.add_argument("--backbone-weights", default="imagenet",
                   help="'imagenet', 'none' or a weights file (ssd300, ssd512, "
                        "mobilenet_v2; tiny has none)")
    p.add_argument("--time-limit", type=float, default=20.0, metavar="MINUTES",
                   help="training-time budget (default: 20); 0: the recipe's epochs")
    p.add_argument("--epochs", type=int, default=None,
                   help="at most this many epochs (default: as many as fit the budget)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the recipe's")
    p.add_argument("--no-fit", dest="fit", action="store_false",
                   help="keep the preset's input size, priors and zoom-out")
    p.add_argument("--out", default="runs/custom")
    p.add_argument("--synthetic", "--make-synthetic", action="store_true",
                   help="first write the demo's synthetic shapes to OUT/data (or --data) "
                        "and train on them")
    p.add_argument("--num-images", type=int, default=600,
                   help="with --synthetic: training images (a sixth as many test ones)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.data is None and not args.synthetic:
        p.error("--data is required (or --synthetic)")
    return args


def read_data(args):
    """The training and validation sets."""
    if args.synthetic:
        args.data = args.data or os.path.join(args.out, "data")
        make_synthetic_voc(args.data, num_trainval=args.num_images,
                           num_test=max(2, args.num_images // 6), image_size=160,
                           seed=args.seed)
        args.format, args.split, args.val_split = "voc", "trainval", "test"
    names = None
    if args.classes is not None:
        names = parse_classes(args.classes)
    elif os.path.isfile(os.path.join(str(args.data), "labels.txt")):
        names = parse_classes(os.path.join(args.data, "labels.txt"))
    train = load_dataset(args.data, format=args.format, split=args.split, class_names=names)
    val = load_dataset(args.val_data or args.data, format=args.format,
                       split=args.val_split, class_names=train.class_names)
    return train, val


def build(args, train):
    """The model, with defaults fitted to the training boxes where the docs
    fit them (a from-scratch model), and the augmentation that goes with
    them."""
    names = list(train.class_names)
    pretrained = (presets.get(args.model).pretrained_backbone
                  and args.backbone_weights != "none")
    kwargs = {}
    if presets.get(args.model).pretrained_backbone:
        kwargs["backbone_weights"] = None if args.backbone_weights == "none" \
            else args.backbone_weights
    augmentation = None
    if args.fit and not pretrained:
        fitted = fit_defaults(
            train, build_model(args.model, class_names=names).config,
            lambda side: build_model(args.model, class_names=names, image_size=side).config)
        print("\n".join(fitted.describe()))
        os.makedirs(args.out, exist_ok=True)
        fitted.save(os.path.join(args.out, "fitted_defaults.json"))
        kwargs["config"] = fitted.config
        augmentation = {"max_expand_ratio": fitted.max_expand_ratio}
    # weight decay: the builder's default is the recipe's (the paper's L2 in
    # the kernels for SGD, none there for AdamW, whose decay is decoupled)
    return build_model(args.model, class_names=names, **kwargs), augmentation


def main(argv=None):
    args = parse_args(argv)
    train, val = read_data(args)
    print(f"{len(train)} training and {len(val)} validation images, "
          f"classes: {', '.join(train.class_names)}")
    keras.utils.set_random_seed(args.seed)
    model, augmentation = build(args, train)
    checkpoints = os.path.join(args.out, "checkpoints")
    history = train_detector(
        model, train, epochs=args.epochs, batch_size=args.batch_size,
        time_limit=60.0 * args.time_limit if args.time_limit else None,
        augmentation=augmentation, val_dataset=val, checkpoint_dir=checkpoints,
        seed=args.seed, verbose=2)
    print(f"recipe {history.recipe.describe()}")
    best = os.path.join(checkpoints, "best.keras")
    model = keras.saving.load_model(best, compile=False)
    result = evaluate(model, val, verbose=0)
    print(f"best checkpoint {best}: validation mAP {result['mAP']:.4f} "
          f"after {len(history.history['loss'])} epoch(s)")
    for name, ap in result["AP_by_name"].items():
        print(f"  {name:>20s}  {ap:.4f}")
    print(f"predict with: keras-ssd predict --model-file {best} IMAGES_OR_FOLDER")
    return result


if __name__ == "__main__":
    main()
