"""Peak resident memory of SSD300 training at batch 8.

Each side trains for a few steps in its own child process (so neither
framework's allocations count against the other) and reports
its peak resident set (`VmHWM` from /proc/self/status; `getrusage`'s
`ru_maxrss` where that is missing), plus the RSS right after its
imports, so the model + training share is visible.

    python -m benchmarks.memory [--side ours|torchvision] [--steps N]
"""

import argparse
import json
import os
import resource
import subprocess
import sys

SECTION = "memory"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_mb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mb():
    return _status_mb("VmRSS")


def _peak_mb():
    """Peak RSS of this process image.

    Linux keeps `getrusage().ru_maxrss` across `execve`, so a child spawned
    from a big parent reports the parent's size; `VmHWM` (the high-water
    mark of this address space) does not, so it is preferred.
    """
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(side, steps, batch, threads):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from benchmarks import common, train_step

    common.set_threads(threads, with_torch=side != "ours")
    images, boxes, labels = train_step.make_batch(batch)
    base = _rss_mb()
    if side == "ours":
        _, step = train_step.build_ours(images, boxes, labels)
    else:
        step = train_step.build_torchvision(images, boxes, labels)
        if step is None:
            return {"skipped": True}
    for _ in range(steps):
        step()
    return {"peak_mb": _peak_mb(), "after_imports_mb": base, "steps": steps,
            "batch": batch}


def measure(side, steps=2, batch=8, threads=None):
    threads = threads or os.cpu_count()
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", "--child", "--side", side,
         "--steps", str(steps), "--batch", str(batch), "--threads", str(threads)],
        cwd=_ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child ({side}) failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick=False, batch=8):
    from benchmarks import common

    steps = 2 if quick else 3
    ours = measure("ours", steps=steps, batch=batch, threads=common.threads())
    torch, _ = common.import_torchvision()
    theirs = measure("torchvision", steps=steps, batch=batch,
                     threads=common.threads()) if torch is not None else None
    if theirs is None or theirs.get("skipped"):
        theirs = None
        print(common.TORCH_MISSING)
    return [common.row(
        SECTION, "peak RSS, SSD300 training (fit)", ours["peak_mb"], "MB",
        theirs=None if theirs is None else theirs["peak_mb"], higher_is_better=False,
        batch=batch,
        note=(f"after imports: ours {ours['after_imports_mb']:.0f} MB"
              + ("" if theirs is None else
                 f", torchvision {theirs['after_imports_mb']:.0f} MB")
              + "; ratio = theirs/ours"))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--side", default="ours", choices=["ours", "torchvision"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.side, args.steps, args.batch, args.threads)))
        return
    res = measure(args.side, args.steps, args.batch, args.threads)
    print(f"{args.side}: peak RSS {res['peak_mb']:.0f} MB "
          f"(after imports {res['after_imports_mb']:.0f} MB), batch {args.batch}")


if __name__ == "__main__":
    main()
