"""keras-ssd under the torch backend: SSD300 beside torchvision, and the tiny
model's training throughput under each Keras backend.

    KERAS_BACKEND=torch python -m benchmarks.torch_backend [--quick] [--json FILE]

Needs torch and torchvision (`pip install torch==2.14.1 torchvision==0.29.1`)
and, for the per-backend rows, TensorFlow and JAX in the same environment.

1. SSD300 forward (batch 1 and 4) and training step (batch 4, SGD momentum
   0.9): `keras_ssd.models.SSD300(num_classes=20)` on the torch backend
   beside torchvision's `ssd300_vgg16(num_classes=21)` in the same process,
   on the same torch kernels (oneDNN convolutions). Ours: a direct call under
   `torch.no_grad()` (what `predict_on_batch` runs, without its numpy
   round trip) and `train_on_batch` on pre-encoded targets. Theirs:
   `backbone` + `head` under `torch.inference_mode()` (no transform or
   post-processing), and a full step `sum(model(images, targets).values())`,
   `zero_grad`, `backward`, `step` (its matching and hard-negative mining
   included). Alternating, medians. Then one profiled forward of each
   (`torch.profiler`, self CPU time by operator) says where the time goes.
2. The tiny model (`SSDTiny`, 2 classes, 160 px) trained with `fit` on an
   `SSDSequence` of synthetic VOC images under TensorFlow, JAX and torch:
   one child process per backend (`KERAS_BACKEND` set), images per second
   over timed epochs after a warm-up epoch, backends in alternating order,
   each with keras-ssd's `jit_compile` default (`runtime.compile_defaults()`).

Prints one table; `--json` stores the rows with the machine description
and the load average.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import common


def _load():
    return os.getloadavg()


# --------------------------------------------------------------- SSD300
def _ssd300_sides(batch, train):
    import keras
    import torch
    from torchvision.models.detection import ssd300_vgg16

    from benchmarks.train_step import make_batch
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSD300
    from keras_ssd.targets import TargetEncoder

    images, boxes, labels = make_batch(batch)
    keras.utils.set_random_seed(0)
    ours = SSD300(num_classes=20)
    theirs = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21)
    x = torch.from_numpy(images)
    if not train:
        theirs.eval()
        t_in = torch.from_numpy(np.ascontiguousarray(
            images.transpose(0, 3, 1, 2) / 255.0)).float()

        def ours_fwd():
            with torch.no_grad():
                ours(x, training=False)

        def theirs_fwd():
            with torch.inference_mode():
                theirs.head(list(theirs.backbone(t_in).values()))

        return ours, theirs, ours_fwd, theirs_fwd, t_in
    ours.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss())
    encoder = TargetEncoder.from_config(ours.config)
    y = np.stack([encoder(b, la) for b, la in zip(boxes, labels)])
    theirs.train()
    opt = torch.optim.SGD(theirs.parameters(), lr=1e-3, momentum=0.9)
    imgs = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1) / 255.0)).float()
            for im in images]
    targets = [{"boxes": torch.from_numpy(b * 300.0).float(),
                "labels": torch.from_numpy(np.asarray(la) + 1).long()}
               for b, la in zip(boxes, labels)]

    def ours_step():
        ours.train_on_batch(images, y)

    def theirs_step():
        loss = sum(theirs(imgs, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return ours, theirs, ours_step, theirs_step, None


def _profile(fn, top=6):
    """Self CPU time (ms) of the `top` heaviest operators in one call."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return total / 1e3, [(e.key, e.self_cpu_time_total / 1e3) for e in events[:top]]


def ssd300_rows(quick):
    rows, profiles = [], {}
    rounds = 3 if quick else 5
    for kind, batch in ([("forward", 1), ("forward", 4), ("train step", 4)]
                        if not quick else [("forward", 1), ("train step", 2)]):
        if quick and kind == "train step":
            rounds = 2
        _, _, ours, theirs, _ = _ssd300_sides(batch, kind == "train step")
        res = common.alternate({"ours": ours, "theirs": theirs}, warmup=1, rounds=rounds)
        o, t = res["ours"]["median"], res["theirs"]["median"]
        rows.append({"name": f"SSD300 {kind}, batch {batch}", "ours_s": o, "theirs_s": t,
                     "ratio": o / t, "unit": "s per call"})
        r = rows[-1]
        print(f"{r['name']:32s} keras/torch {o:.3f} s  torchvision {t:.3f} s  "
              f"ratio {r['ratio']:.2f}  (load {_load()[0]:.1f})", flush=True)
        if kind == "forward" and batch == 1:
            profiles = {"ours": _profile(ours), "theirs": _profile(theirs)}
    return rows, profiles


# ------------------------------------------------------------- tiny model
TINY_CHILD = r'''
import json, os, sys, time
import numpy as np
import keras
from keras_ssd.data import SSDSequence, VOCDataset, make_synthetic_voc
from keras_ssd.losses import SSDLoss
from keras_ssd.models import SSDTiny

d, epochs = sys.argv[1], int(sys.argv[2])
root = os.path.join(d, "voc")
if not os.path.isdir(root):
    make_synthetic_voc(root, num_trainval=64, num_test=2, image_size=160, seed=3)
names = open(os.path.join(root, "labels.txt")).read().split()
keras.utils.set_random_seed(0)
model = SSDTiny(num_classes=len(names))
# the package's measured jit_compile default per backend, as train_detector uses
from keras_ssd.accel import runtime
model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss(),
              **runtime.compile_defaults())
data = VOCDataset(root, "trainval", class_names=names)
seq = SSDSequence(data, model.config, batch_size=16, augment=False, shuffle=False)
model.fit(seq, epochs=1, verbose=0)  # warm-up: tracing, allocator
times = []
for _ in range(epochs):
    t = time.perf_counter()
    model.fit(seq, epochs=1, verbose=0)
    times.append(time.perf_counter() - t)
print(json.dumps({"backend": keras.backend.backend(), "images": len(data),
                  "epoch_s": times}))
'''


def tiny_rows(quick, tmp):
    epochs = 2 if quick else 3
    rounds = 1 if quick else 2
    backends = ["tensorflow", "jax", "torch"]
    per = {b: [] for b in backends}
    script = os.path.join(tmp, "tiny_child.py")
    with open(script, "w") as f:
        f.write(TINY_CHILD)
    for r in range(rounds):
        for b in (backends if r % 2 == 0 else backends[::-1]):
            env = dict(os.environ, KERAS_BACKEND=b, JAX_PLATFORMS="cpu",
                       TF_CPP_MIN_LOG_LEVEL="2")
            out = subprocess.run([sys.executable, script, tmp, str(epochs)], env=env,
                                 capture_output=True, text=True, timeout=1800)
            if out.returncode != 0:
                raise RuntimeError(f"{b}: {out.stderr[-2000:]}")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            per[b] += [res["images"] / t for t in res["epoch_s"]]
            print(f"  tiny, {b}: {[round(res['images'] / t, 1) for t in res['epoch_s']]} "
                  f"img/s (load {_load()[0]:.1f})", flush=True)
    tf_rate = float(np.median(per["tensorflow"]))
    return [{"name": f"tiny fit on SSDSequence (batch 16), {b}",
             "images_per_s": float(np.median(per[b])),
             "vs_tensorflow": float(np.median(per[b])) / tf_rate} for b in backends]


def main(argv=None):
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--skip-tiny", action="store_true")
    args = p.parse_args(argv)
    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit("run with KERAS_BACKEND=torch")
    import torch

    info = {"cpu": common.cpu_description(), "torch": torch.__version__,
            "keras": keras.__version__, "threads": torch.get_num_threads(),
            "load_before": _load(), "date": time.strftime("%Y-%m-%d")}
    print(f"{info['cpu']}; torch {info['torch']}, keras {info['keras']}, "
          f"{info['threads']} threads; load {info['load_before']}", flush=True)
    rows, profiles = ssd300_rows(args.quick)
    for side, (total, ops) in profiles.items():
        print(f"profile {side} forward batch 1: {total:.0f} ms self CPU; top: "
              + ", ".join(f"{k} {v:.0f}" for k, v in ops), flush=True)
    tiny = []
    if not args.skip_tiny:
        with tempfile.TemporaryDirectory() as tmp:
            tiny = tiny_rows(args.quick, tmp)
        for r in tiny:
            print(f"{r['name']:48s} {r['images_per_s']:.1f} img/s "
                  f"({r['vs_tensorflow']:.2f}x TensorFlow)", flush=True)
    info["load_after"] = _load()
    print(f"load average before {info['load_before']}, after {info['load_after']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "ssd300": rows, "profiles": profiles,
                       "tiny": tiny}, f, indent=1)


if __name__ == "__main__":
    main()
