"""Data pipeline throughput: decode + full SSD augmentation + target encoding.

Builds a small VOC-layout dataset of 500x375 JPEGs (the typical VOC size)
in a temporary directory and reports images per second on ONE core (the
process is pinned to a single CPU where the OS allows), i.e. per worker, at
SSD300 (8732 priors):

  decode only           JPEG -> RGB array
  decode + augment      photometric, expand, min-IoU crop, flip, resize
  full (SSDSequence)    the above + TargetEncoder, batched float32
  eval (SSDSequence)    resize only + TargetEncoder

The images get strong pixel noise so that JPEG decoding costs what it does
on photos (pass --smooth to skip that).

`--image-size 300x540` runs it at a non-square SSD300 input (height x
width; the feature maps and priors of `SSD300(image_size=...)`, 15606
priors at 300x540), `--letterbox` with the letterbox rendering.

Run: python -m benchmarks.data_pipeline [--images 64] [--repeats 5] [--smooth]
         [--image-size S|HxW] [--letterbox]
Medians over repeats are printed (shared machines are noisy).
"""

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def _pin_one_core():
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def _rate(fn, count, repeats):
    """Median images/s over `repeats` runs: (CPU-time based, wall-clock based).

    CPU time of this (single-threaded, pinned) process is the per-core
    throughput; wall time also counts waiting for other processes on a
    shared machine.
    """
    cpu, wall = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(count / (time.process_time() - c))
        wall.append(count / (time.perf_counter() - t))
    return statistics.median(cpu), statistics.median(wall)


def _line(name, rates, note=""):
    print(f"  {name:24s} {rates[0]:7.1f} img/s CPU   {rates[1]:7.1f} img/s wall  {note}")


def _add_photo_detail(root):
    """Re-save the JPEGs with strong pixel noise: real photos carry far more
    high-frequency detail than flat synthetic shapes, and decode slower."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = os.path.join(root, "JPEGImages")
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        a = np.asarray(Image.open(path), dtype=np.float32)
        a = a + rng.normal(0.0, 20.0, a.shape)
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, quality=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smooth", action="store_true",
                        help="keep the flat synthetic images (faster to decode than photos)")
    parser.add_argument("--image-size", default="300", metavar="S|HxW",
                        help="SSD300 input size, e.g. 300x540 (default: 300)")
    parser.add_argument("--letterbox", action="store_true",
                        help="letterbox the images (aspect kept, mean padding)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    pinned = _pin_one_core()

    from keras_ssd.config import SSDConfig, parse_image_size
    from keras_ssd.data import SSDAugmentation, SSDSequence, VOCDataset, make_synthetic_voc
    from keras_ssd.data.images import decode_image

    with tempfile.TemporaryDirectory() as root:
        make_synthetic_voc(root, args.images, 0, (500, 375), seed=0,
                           min_objects=1, max_objects=5, size_range=(0.1, 0.6))
        if not args.smooth:
            _add_photo_detail(root)
        ds = VOCDataset(root, "trainval", class_names=("circle", "square", "triangle", "cross"))
        size = parse_image_size(args.image_size)
        config = SSDConfig.ssd300(num_classes=4)
        if size != 300:  # the maps of the network at that size
            from keras_ssd.models import SSD300

            config = SSD300(num_classes=4, image_size=size).config
        config = config.replace(letterbox=args.letterbox)
        n = len(ds)
        aug = SSDAugmentation(config.image_shape, letterbox=args.letterbox)

        def decode():
            for i in range(n):
                np.asarray(decode_image(ds[i]["image_path"])[0])

        def decode_augment():
            rng = np.random.default_rng(0)
            for i in range(n):
                rec = ds[i]
                plan = aug.sample(rec["width"], rec["height"], rec["boxes"], rng)
                img, k = ds.load_pil_image(i, reduce_factor=plan.reduce_factor)
                aug.apply(img, plan, k)

        def run_sequence(augment):
            seq = SSDSequence(ds, config, batch_size=args.batch_size, augment=augment, seed=0)
            batches = len(seq) if n % args.batch_size == 0 else len(seq) - 1

            def go():
                for b in range(batches):
                    seq[b]
                seq.on_epoch_end()
            return go, batches * args.batch_size

        shape = "x".join(str(v) for v in config.image_shape)
        print(f"data pipeline benchmark: {n} JPEGs 500x375, SSD300 at {shape}"
              f"{' letterboxed' if args.letterbox else ''} ({config.num_anchors} priors), "
              f"batch {args.batch_size}, {pinned}; medians of {args.repeats}")
        _line("decode only", _rate(decode, n, args.repeats))
        _line("decode + augment", _rate(decode_augment, n, args.repeats))
        go, count = run_sequence(True)
        _line("full (SSDSequence)", _rate(go, count, args.repeats),
              "<- floor 100/core; the blog's generator: 47 (flip only)")
        go, count = run_sequence(False)
        _line("eval (resize + encode)", _rate(go, count, args.repeats))


if __name__ == "__main__":
    main()
