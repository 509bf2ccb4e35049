"""Training throughput: `fit` fed by `SSDSequence` with full augmentation
vs the same model fed pre-made batches from memory, in the same run.

    python -m benchmarks.train_throughput [--models tiny,mobilenet_v2,ssd300]
        [--data DIR] [--batch N] [--epochs N] [--workers 0,1,2] [--quick]

For each model (built from random weights, compiled by `train_detector`'s
own `make_optimizer` + `SSDLoss` + the runtime defaults):

- **memory**: every batch of an epoch made once beforehand (augmented and
  encoded by the same `SSDSequence`), then served by a `PyDataset` that only
  indexes a list: the step alone, the ceiling for any data pipeline;
- **arrays**: the same images and targets as two numpy arrays through
  `fit(x, y, batch_size=...)` (Keras' own array path);
- **sequence/wN**: `fit` on the `SSDSequence` itself (JPEG decoding,
  augmentation, target encoding) with N loader threads;
- **loader**: the `SSDSequence` alone, batches per second on one thread.

Figures are images per second over the epochs after the first (which
traces); every side sees the same number of steps. The ratio of a sequence
row is its img/s over the memory row's.

The images come from `--data` (a VOC folder; default: a synthetic dataset
written to a temporary folder, with images of about the size of the learning
benchmark's photos).
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:
    raise SystemExit("run from the repository root: python -m benchmarks.train_throughput")

from benchmarks import common  # noqa: E402


def _steps_timer():
    import keras

    class StepTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.begin = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times = getattr(self, "times", []) + [time.perf_counter() - self.begin]

    return StepTimes()


def _img_per_s(timer, images_per_epoch):
    times = timer.times[1:] or timer.times
    return images_per_epoch * len(times) / sum(times)


def measure_model(name, dataset, batch, epochs, workers_list, seed=0, jit_compile=None,
                  cache="auto"):
    import keras
    import numpy as np

    from keras_ssd.accel.runtime import compile_defaults
    from keras_ssd.data import SSDSequence
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import build_model
    from keras_ssd.training.fit import make_optimizer

    def fresh():
        keras.utils.set_random_seed(seed)
        model = build_model(name, class_names=list(dataset.class_names))
        opt = make_optimizer("adamw", 1e-3, weight_decay=5e-4)
        model.compile(**compile_defaults(jit_compile, optimizer=opt, loss=SSDLoss()))
        return model

    model = fresh()
    seq = SSDSequence(dataset, model.config, batch_size=batch, augment=True, seed=seed,
                      cache_images=cache)
    steps = len(seq)
    start = time.perf_counter()
    batches = [seq[i] for i in range(steps)]
    loader_s = (time.perf_counter() - start) / steps
    rows = [{"model": name, "feed": "loader (1 thread)", "img_s": batch / loader_s}]

    class Memory(keras.utils.PyDataset):
        def __len__(self):
            return steps

        def __getitem__(self, i):
            return batches[i]

    timer = _steps_timer()
    model.fit(Memory(), epochs=epochs, verbose=0, shuffle=False, callbacks=[timer])
    memory = _img_per_s(timer, steps * batch)
    rows.append({"model": name, "feed": "memory (PyDataset of pre-made batches)",
                 "img_s": memory})

    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    model = fresh()
    timer = _steps_timer()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=False,
              callbacks=[timer])
    rows.append({"model": name, "feed": "arrays (fit(x, y))",
                 "img_s": _img_per_s(timer, steps * batch)})
    del x, y

    for workers in workers_list:
        model = fresh()
        loader = {"workers": workers, "use_multiprocessing": False} if workers else {}
        seq = SSDSequence(dataset, model.config, batch_size=batch, augment=True, seed=seed,
                          cache_images=cache,
                          **loader)
        timer = _steps_timer()
        model.fit(seq, epochs=epochs, verbose=0, shuffle=False, callbacks=[timer])
        rate = _img_per_s(timer, steps * batch)
        rows.append({"model": name, "feed": f"SSDSequence, full augmentation, {workers} "
                                            f"loader thread(s)",
                     "img_s": rate, "ratio_to_memory": rate / memory})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="tiny,mobilenet_v2,ssd300")
    p.add_argument("--data", help="VOC folder with a trainval split (default: synthetic)")
    p.add_argument("--images", type=int, default=None,
                   help="images per epoch (default: 8 batches)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default per model)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", default="0,2")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cache", choices=("auto", "on", "off"), default="auto",
                   help="SSDSequence(cache_images=...): as train_detector (auto), or forced")
    p.add_argument("--jit", choices=("default", "on", "off"), default="default")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    if args.threads:
        common.set_threads(args.threads, with_torch=False)
    from keras_ssd.data import VOCDataset, make_synthetic_voc

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.quick:
        models, args.epochs, workers = ["tiny"], 2, [2]
    tmp = None
    if args.data:
        root = args.data
        names = None
        labels = os.path.join(root, "labels.txt")
        if os.path.isfile(labels):
            names = [line.strip() for line in open(labels, encoding="utf-8") if line.strip()]
    else:
        tmp = tempfile.mkdtemp(prefix="ssd_throughput_")
        root = os.path.join(tmp, "voc")
        make_synthetic_voc(root, num_trainval=256, num_test=1, image_size=288, seed=0)
        names = None
    print(common.machine_line() if hasattr(common, "machine_line") else "")
    all_rows = []
    for name in models:
        batch = args.batch or {"tiny": 32, "mobilenet_v2": 16, "ssd300": 8}.get(name, 8)
        n = args.images or batch * (2 if args.quick else 8)
        kwargs = {"class_names": names} if names else {}
        from keras_ssd.data.synthetic import SYNTHETIC_CLASSES

        if not names:
            kwargs = {"class_names": list(SYNTHETIC_CLASSES)}
        dataset = VOCDataset(root, "trainval", **kwargs)
        dataset = _head(dataset, n)
        cache = {"auto": "auto", "on": True, "off": False}[args.cache]
        jit = {"default": None, "on": True, "off": False}[args.jit]
        rows = measure_model(name, dataset, batch, args.epochs, workers, cache=cache,
                             jit_compile=jit)
        for r in rows:
            r["batch"] = batch
            ratio = r.get("ratio_to_memory")
            print(f"{name:13s} batch {batch:3d}  {r['feed']:55s} {r['img_s']:8.1f} img/s"
                  + (f"   {100 * ratio:5.1f}% of memory" if ratio else ""), flush=True)
        all_rows += rows
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(all_rows, f, indent=2)
    return all_rows


def _head(dataset, n):
    """The first `n` records of a dataset (a view)."""
    class Head:
        class_names = dataset.class_names

        def __len__(self):
            return min(n, len(dataset))

        def __getitem__(self, i):
            if not 0 <= i < len(self):
                raise IndexError(i)
            return dataset[i]

        def load_image(self, i, *a, **k):
            return dataset.load_image(i, *a, **k)

        def __getattr__(self, attr):
            return getattr(dataset, attr)

    return Head()


if __name__ == "__main__":
    main()
