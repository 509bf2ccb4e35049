"""Target encoding throughput on one core: images/s.

`TargetEncoder.from_config(SSDConfig.ssd300(20))` (8732 priors) on images
with 1-20 random ground-truth boxes each. Runs in a child process pinned to
one CPU (`os.sched_setaffinity`) with single-threaded BLAS, so the figure is
per core: a data pipeline with W workers scales it by about W.

    python -m benchmarks.encoding [--images N]   # standalone
"""

import argparse
import json
import os
import subprocess
import sys

SECTION = "encoding"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_images(n, num_classes=20, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        g = int(rng.integers(1, 21))
        c = rng.uniform(0.05, 0.95, (g, 2))
        s = rng.uniform(0.02, 0.8, (g, 2))
        b = np.clip(np.concatenate([c - s / 2, c + s / 2], 1), 0.0, 1.0).astype("float32")
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1e-3)
        out.append((b, rng.integers(0, num_classes, g)))
    return out


def child(num_images, rounds):
    import statistics
    import time

    from keras_ssd.config import SSDConfig
    from keras_ssd.targets import TargetEncoder

    encoder = TargetEncoder.from_config(SSDConfig.ssd300(num_classes=20))
    images = make_images(num_images)
    for b, l in images[:50]:
        encoder(b, l)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for b, l in images:
            encoder(b, l)
        rates.append(len(images) / (time.perf_counter() - t0))
    return {"images_per_s": statistics.median(rates), "rates": rates,
            "num_priors": int(encoder.anchors.shape[0]),
            "cpu": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def measure(num_images=1000, rounds=5):
    """Run `child` in a one-core subprocess; returns its dict."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.encoding", "--child",
         "--images", str(num_images), "--rounds", str(rounds)],
        cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"encoding child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick=False):
    from benchmarks import common

    res = measure(num_images=300 if quick else 1000, rounds=3 if quick else 5)
    return [common.row(SECTION, "target encoding, 1 core (8732 priors, 1-20 boxes)",
                       res["images_per_s"], "img/s", ratio_value=res["images_per_s"] / 2000.0,
                       floor=1.0, note="ratio = vs the 2000 img/s floor")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.child:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        print(json.dumps(child(args.images, args.rounds)))
        return
    res = measure(args.images, args.rounds)
    print(f"target encoding: {res['images_per_s']:.0f} img/s on one core")


if __name__ == "__main__":
    main()
