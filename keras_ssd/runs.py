"""Run folders: where `keras-ssd train`, `evaluate` and `predict` write.

Every command writes to a fresh folder by default, `runs/<task>`,
`runs/<task>2`, `runs/<task>3`, ... (the first that does not exist yet), so
a second run never replaces the first run's files. A training run holds a
lock file (`.lock`, with the process id) while it runs: a second process
that tries to train into the same folder stops with an error naming the
first. Each training run saves `args.yaml` (its resolved arguments, recipe,
dataset summary and the package versions) that `keras-ssd train --config
args.yaml` reads back.

Pure Python (os, fcntl, yaml): no TensorFlow.
"""

import datetime
import errno
import os
import platform

#: The lock file a training run holds in its folder.
LOCK_NAME = ".lock"

#: The file of a run's resolved arguments.
ARGS_NAME = "args.yaml"

#: The packages whose versions `args.yaml` records (those installed).
VERSIONED_PACKAGES = ("keras-ssd", "keras", "tensorflow", "jax", "numpy", "pillow")


def next_run_dir(project="runs", name="train"):
    """The first of `project/name`, `project/name2`, `project/name3`, ... that
    does not exist (not created).

    Args:
        project: the parent folder.
        name: the run's base name.

    Returns:
        str path.

    Example:

    >>> next_run_dir("runs", "train")  # "runs/train2" once runs/train exists
    'runs/train'
    """
    base = os.path.join(os.fspath(project), str(name))
    if not os.path.exists(base):
        return base
    k = 2
    while os.path.exists(f"{base}{k}"):
        k += 1
    return f"{base}{k}"


def make_run_dir(project="runs", name="train"):
    """Create and return a fresh run folder (`next_run_dir`), safe against
    another process creating the same one at the same moment."""
    while True:
        path = next_run_dir(project, name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue  # another process took this name first: try the next one
        return path


class RunLockedError(RuntimeError):
    """Another live process holds the lock of a run folder."""

    def __init__(self, folder, pid):
        self.folder, self.pid = folder, pid
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"run folder {folder} is in use by {who} (lock file "
                         f"{os.path.join(folder, LOCK_NAME)}); wait for it to finish or "
                         "choose another folder")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _read_pid(path):
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class RunLock:
    """An exclusive lock on a run folder, held while a run writes there.

    The lock is a `flock` on `<folder>/.lock` (released by the kernel when
    the process dies, however it dies), and the file holds the owner's
    process id so that the error can name it. Where `flock` is missing
    (Windows) the file's creation is the lock and a file whose process no
    longer exists is taken over.

    Args:
        folder: the run folder (created if missing).

    Example:

    >>> with RunLock("runs/train"):
    ...     train()
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd = None

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_by_creation()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RunLockedError(self.folder, _read_pid(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _acquire_by_creation(self):  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = _read_pid(self.path)
                if pid is not None and _pid_alive(pid):
                    raise RunLockedError(self.folder, pid) from None
                os.remove(self.path)
                continue
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise RunLockedError(self.folder, _read_pid(self.path))

    def release(self):
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def package_versions():
    """`{package: version}` of `VERSIONED_PACKAGES` that are installed, plus
    Python's."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _plain(value):
    """`value` as YAML-safe plain data (tuples to lists, paths to str)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):  # subclasses (str-based markers) as the plain type
        if isinstance(value, kind):
            return kind(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def write_run_args(folder, args, recipe=None, dataset=None, extra=None):
    """Write `<folder>/args.yaml`; returns its path.

    Args:
        folder: the run folder.
        args: `{option: value}` of the command (argparse dest names).
        recipe: optional `{field: value}` of the resolved recipe.
        dataset: optional dataset summary (`dataset_summary`).
        extra: optional more top-level entries.
    """
    import yaml

    doc = {
        "command": "train",
        "created": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "args": _plain(args),
        **({"recipe": _plain(recipe)} if recipe is not None else {}),
        **({"dataset": _plain(dataset)} if dataset is not None else {}),
        "versions": package_versions(),
        **_plain(extra or {}),
    }
    path = os.path.join(os.fspath(folder), ARGS_NAME)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=None)
    os.replace(tmp, path)
    return path


def read_run_args(path):
    """The `args` mapping of an `args.yaml` written by `write_run_args`.

    Raises:
        ValueError: naming the file, when it is not such a file.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path} is not valid YAML ({first})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("args"), dict):
        raise ValueError(f"{path} has no 'args' mapping (expected an args.yaml written "
                         "by keras-ssd train)")
    return doc["args"]


def dataset_summary(dataset, split=None):
    """A short summary of a detection dataset (numpy only): images, objects
    per class, images without objects, object size range in pixels.

    Args:
        dataset: records interface (`len`, `ds[i]` with `boxes`, `labels`).
        split: optional split name to record.

    Returns:
        dict (JSON/YAML-ready).
    """
    import numpy as np

    names = list(getattr(dataset, "class_names", []) or [])
    counts = [0] * len(names)
    empty, sides = 0, []
    n = len(dataset)
    for i in range(n):
        rec = dataset[i]
        labels = np.asarray(rec.get("labels", []), dtype=np.int64).reshape(-1)
        boxes = np.asarray(rec.get("boxes", []), dtype=np.float64).reshape(-1, 4)
        if labels.size == 0:
            empty += 1
        for lab in labels:
            if 0 <= lab < len(counts):
                counts[lab] += 1
        if boxes.size:
            sides.append(np.sqrt(np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
                                 * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)))
    sides = np.concatenate(sides) if sides else np.zeros((0,))
    summary = {
        "images": n,
        **({"split": split} if split else {}),
        "objects": int(sum(counts)),
        "objects_per_class": dict(zip(names, counts)),
        "images_without_objects": int(empty),
    }
    if sides.size:
        summary["object_size_px"] = {"min": round(float(sides.min()), 1),
                                     "median": round(float(np.median(sides)), 1),
                                     "max": round(float(sides.max()), 1)}
    return summary


def format_dataset_summary(summary, title="data"):
    """`dataset_summary` as two or three short lines for the terminal."""
    per_class = ", ".join(f"{k} {v}" for k, v in summary["objects_per_class"].items())
    lines = [f"{title}: {summary['images']} images"
             + (f" ({summary['split']})" if summary.get("split") else "")
             + f", {summary['objects']} objects, {summary['images_without_objects']} "
             "without objects",
             f"  objects per class: {per_class}"]
    size = summary.get("object_size_px")
    if size:
        lines.append(f"  object size (sqrt of area): {size['min']:g}-{size['max']:g} px, "
                     f"median {size['median']:g}")
    return "\n".join(lines)
