"""Train SSD300 on Pascal VOC07+12 with the paper's recipe (for a GPU).

The recipe of Liu et al. (ECCV 2016), which gives 74.3 mAP on VOC2007 test
(77.2 with the zoom-out "expand" augmentation, on by default here):

- SSD300 on the reduced VGG16, ImageNet weights (fc6/fc7 decimated);
- the SSD augmentation (photometric, expand, min-IoU crop, flip);
- SGD, momentum 0.9, weight decay 5e-4 on convolution kernels, batch 32;
- learning rate 1e-3 for 80k iterations, 1e-4 until 100k, 1e-5 until 120k,
  after a short linear warm-up (1000 iterations from 1e-4);
- VOC2007 test mAP (11-point) every few epochs; latest and best checkpoints.

120k iterations at batch 32 are about 234 epochs of VOC07+12 trainval
(16551 images). On one modern GPU that is roughly a day; on a CPU it is
out of reach (see docs/getting_started.md for the CPU demo instead).

Data layout (the official tarballs unpacked into one folder):

    VOCdevkit/VOC2007/{Annotations,ImageSets,JPEGImages}   trainval + test
    VOCdevkit/VOC2012/{Annotations,ImageSets,JPEGImages}   trainval

Usage:

    python examples/train_voc.py --voc-root VOCdevkit --checkpoint-dir runs/ssd300
    # after an interruption, the same command with --resume continues the run
    python examples/train_voc.py --voc-root VOCdevkit --checkpoint-dir runs/ssd300 --resume

The same run from the command line:

    keras-ssd train --data VOCdevkit/VOC2007 --data VOCdevkit/VOC2012 \
        --val-data VOCdevkit/VOC2007 --val-split test --model ssd300 \
        --batch-size 32 --epochs 232 --lr 1e-3 --lr-decay-epochs 155,194 \
        --eval-every 10 --checkpoint-dir runs/ssd300
"""

import argparse
import math
import os

import keras

from keras_ssd.training.callbacks import LearningRateLogger, MeanAveragePrecision, StopOnNaN
from keras_ssd.training.checkpoints import TrainingCheckpoint, resume
from keras_ssd.data import VOC_CLASSES, SSDSequence, VOCDataset
from keras_ssd.losses import SSDLoss
from keras_ssd.models import SSD300
from keras_ssd.accel.runtime import compile_defaults
from keras_ssd.training.schedules import WarmupPiecewiseDecay

# The paper's schedule, in optimizer iterations at batch 32.
BATCH_SIZE = 32
ITERATIONS = 120_000
LR_STEPS = (80_000, 100_000)
BASE_LR = 1e-3
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
WARMUP_ITERATIONS = 1000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True, help="folder holding VOC2007 and VOC2012")
    p.add_argument("--checkpoint-dir", default="runs/ssd300")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help="the schedule is rescaled to keep the paper's number of images")
    p.add_argument("--eval-every", type=int, default=10, help="epochs between VOC07 mAPs")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--backbone-weights", default="imagenet",
                   help="'imagenet' (downloaded by Keras) or a VGG16 .h5 file")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main():
    args = parse_args()
    voc07 = os.path.join(args.voc_root, "VOC2007")
    voc12 = os.path.join(args.voc_root, "VOC2012")
    train = VOCDataset([voc07, voc12], "trainval", class_names=VOC_CLASSES)
    test = VOCDataset(voc07, "test", class_names=VOC_CLASSES)
    print(f"VOC07+12 trainval: {len(train)} images, VOC07 test: {len(test)} images")

    # Keep the paper's schedule in images seen when the batch size changes.
    scale = BATCH_SIZE / args.batch_size
    iterations = int(ITERATIONS * scale)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    epochs = math.ceil(iterations / steps_per_epoch)

    keras.utils.set_random_seed(args.seed)
    initial_epoch = 0
    if args.resume:
        model, initial_epoch = resume(args.checkpoint_dir)
        print(f"resumed at epoch {initial_epoch} of {epochs}")
    else:
        model = SSD300(class_names=list(VOC_CLASSES), backbone_weights=args.backbone_weights,
                       weight_decay=WEIGHT_DECAY)
        schedule = WarmupPiecewiseDecay(
            BASE_LR * args.batch_size / BATCH_SIZE,  # linear scaling rule
            boundaries=[int(s * scale) for s in LR_STEPS],
            warmup_steps=int(WARMUP_ITERATIONS * scale), warmup_factor=0.1,
        )
        optimizer = keras.optimizers.SGD(schedule, momentum=MOMENTUM)
        # jit_compile: XLA on GPU/TPU, plain graphs on CPU (measured fastest).
        model.compile(**compile_defaults(optimizer=optimizer, loss=SSDLoss()))

    sequence = SSDSequence(train, model.config, batch_size=args.batch_size, augment=True,
                           seed=args.seed, workers=args.workers, use_multiprocessing=True)
    sequence.set_epoch(initial_epoch)
    callbacks = [
        MeanAveragePrecision(test, every=args.eval_every, batch_size=32),
        LearningRateLogger(),
        StopOnNaN(),
        TrainingCheckpoint(args.checkpoint_dir, monitor="val_mAP"),
        keras.callbacks.CSVLogger(os.path.join(args.checkpoint_dir, "log.csv"),
                                  append=args.resume),
        keras.callbacks.TensorBoard(os.path.join(args.checkpoint_dir, "tensorboard")),
    ]
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    model.fit(sequence, epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks,
              shuffle=False, verbose=1)
    print(f"done; best model: {os.path.join(args.checkpoint_dir, 'best.keras')}")
    print("evaluate it with: keras-ssd evaluate --data "
          f"{voc07} --split test --model-file {os.path.join(args.checkpoint_dir, 'best.keras')}")


if __name__ == "__main__":
    main()
