"""Timing helpers shared by the benchmarks.

Rules every figure follows:

- warm-up calls first (graph tracing, oneDNN primitive creation, allocator
  growth), never timed;
- the two sides of a comparison run *alternately*, one timed call each per
  round, the order flipped every round, so that load from other processes on
  a shared machine hits both sides alike;
- the figure is the median of the rounds;
- TensorFlow and PyTorch use the same number of threads, set once by
  `set_threads` before either runtime starts, and stated in the output.
"""

import os
import platform
import statistics
import sys
import time

_THREADS = None

#: Overrides where results go (default: the user's cache, see `results_dir`).
RESULTS_ENV = "KERAS_SSD_BENCHMARKS_DIR"


def results_dir():
    """Where the benchmarks write their results by default: outside the
    source tree, `$KERAS_SSD_BENCHMARKS_DIR`, else
    `$XDG_CACHE_HOME/keras_ssd/benchmarks` (`~/.cache/keras_ssd/benchmarks`)."""
    path = os.environ.get(RESULTS_ENV, "").strip()
    if not path:
        cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(
            os.path.expanduser("~"), ".cache")
        path = os.path.join(cache, "keras_ssd", "benchmarks")
    return os.path.abspath(os.path.expanduser(path))


def set_threads(n, with_torch=True):
    """Use `n` threads in TensorFlow and (when installed) PyTorch.

    Must run before TensorFlow executes anything. Sets TF intra- and
    inter-op pools and torch's intra- and inter-op threads to `n`.
    `with_torch=False` leaves torch unimported (a child process measuring
    only our side). Returns `n`.
    """
    global _THREADS
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # torchvision (and the triton it pulls in) must be imported before
    # TensorFlow initialises, else the import can crash the process.
    torch, _ = import_torchvision() if with_torch else (None, None)
    if torch is not None:
        import torchvision.models.detection  # noqa: F401
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError as exc:  # TF already initialised
        if (tf.config.threading.get_intra_op_parallelism_threads() != n):
            raise RuntimeError(
                f"set_threads({n}) must run before TensorFlow starts: {exc}"
            ) from exc
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:
            pass
    _THREADS = n
    return n


def threads():
    """The thread count set by `set_threads` (None before)."""
    return _THREADS


def import_torch():
    """`torch` if installed, else None."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return torch


def import_torchvision():
    """`(torch, torchvision)` if both are installed, else `(None, None)`."""
    torch = import_torch()
    if torch is None:
        return None, None
    try:
        import torchvision
    except ImportError:
        return None, None
    return torch, torchvision


TORCH_MISSING = (
    "torchvision not installed: skipping the torchvision side "
    "(pip install torch==2.14.1 torchvision==0.29.1)"
)


def timed(fn):
    """Wall-clock seconds of one call of `fn()`."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(fn, warmup=1, repeats=5):
    """Median seconds per call of `fn()` after `warmup` untimed calls.

    Returns `(median, all_times)`.
    """
    for _ in range(warmup):
        fn()
    times = [timed(fn) for _ in range(repeats)]
    return statistics.median(times), times


def alternate(sides, warmup=1, rounds=5):
    """Time several sides alternately.

    Args:
        sides: dict name -> zero-argument callable (None values are skipped).
        warmup: untimed calls per side before the first round.
        rounds: timed calls per side; the side order is reversed every round.

    Returns:
        dict name -> `{"median": s, "times": [...]}`.
    """
    sides = {k: v for k, v in sides.items() if v is not None}
    names = list(sides)
    for name in names:
        for _ in range(warmup):
            sides[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(timed(sides[name]))
    return {
        name: {"median": statistics.median(t), "times": t} for name, t in times.items()
    }


def ratio(ours, theirs):
    """`ours / theirs`, or None when either side is missing."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def row(section, name, value, unit, *, theirs=None, ratio_value=None, floor=None,
        higher_is_better=True, batch=None, note=""):
    """One result row.

    Args:
        section: benchmark group, e.g. "forward".
        name: what was measured.
        value: our figure.
        unit: e.g. "img/s", "ms/img".
        theirs: the comparison's figure (same unit), if any.
        ratio_value: our advantage (>1 = we are better); computed from
            `value`/`theirs` when None.
        floor: the required ratio (or absolute value, see `note`), if any.
        batch: batch size.
        note: free text (threads, precision, ...).
    """
    if ratio_value is None and theirs is not None and value is not None:
        ratio_value = ratio(value, theirs) if higher_is_better else ratio(theirs, value)
    return {
        "section": section,
        "name": name,
        "value": value,
        "unit": unit,
        "theirs": theirs,
        "ratio": ratio_value,
        "floor": floor,
        "meets_floor": (None if floor is None or ratio_value is None
                        else bool(ratio_value >= floor)),
        "batch": batch,
        "note": note,
    }


def cpu_description():
    """One line naming this CPU, its kind and the flags that decide the
    per-machine choices (`keras_ssd.accel.machine.describe()`)."""
    from keras_ssd.accel import machine

    return machine.describe()


def cpu_features():
    """This CPU's features and kind as a JSON-ready dict
    (`keras_ssd.accel.machine.features_dict()`), stored beside every table."""
    from keras_ssd.accel import machine

    return machine.features_dict()


def machine_info():
    """CPU (with its features and kind), core count, load, library
    versions, for the JSON header."""
    features = cpu_features()
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": features["model_name"],
        "cpu_kind": features["kind"],
        "cpu_features": features,
        "cores": os.cpu_count(),
        "threads": _THREADS,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import keras
        import tensorflow as tf

        info["keras"] = keras.__version__
        info["tensorflow"] = tf.__version__
        info["keras_backend"] = keras.backend.backend()
    except ImportError:
        pass
    torch, torchvision = import_torchvision()
    if torch is not None:
        info["torch"] = torch.__version__
        info["torchvision"] = torchvision.__version__
    return info


def fmt(value, digits=3):
    """Compact number formatting for the table."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int,)) or abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


def format_table(rows):
    """Rows as a fixed-width text table."""
    header = ["section", "figure", "batch", "ours", "theirs", "unit", "ratio", "floor", "ok", "note"]
    lines = [header]
    for r in rows:
        lines.append([
            r["section"], r["name"], "-" if r["batch"] is None else str(r["batch"]),
            fmt(r["value"]), fmt(r["theirs"]), r["unit"],
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            "-" if r["floor"] is None else f"{r['floor']:g}",
            fmt(r["meets_floor"]), r["note"],
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    out = []
    for i, line in enumerate(lines):
        cells = [str(c).ljust(w) for c, w in zip(line[:-1], widths)] + [str(line[-1])]
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def format_markdown(rows):
    """Rows as a Markdown table (for docs/performance.md)."""
    out = ["| section | figure | batch | keras-ssd | comparison | unit | ratio | floor | met | note |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join([
            r["section"], r["name"], "-" if r["batch"] is None else str(r["batch"]),
            fmt(r["value"]), fmt(r["theirs"]), r["unit"],
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            "-" if r["floor"] is None else f"{r['floor']:g}x",
            fmt(r["meets_floor"]), r["note"].replace("|", "/"),
        ]) + " |")
    return "\n".join(out)
