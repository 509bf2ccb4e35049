"""Learning benchmark on real photos: mAP after a wall-clock training budget.

Ours: `keras-ssd train --model tiny --time-limit MINUTES` (the run's default
recipe fitted into the budget), run as a subprocess, then `keras-ssd
evaluate` on the test split. The comparison: `benchmarks.baseline_tiny`, a
plain hand-written Keras tiny SSD (Adam 1e-3, flip only, arrays encoded
once), evaluated at the same times with its clock paused while evaluating.
Both are scored with keras_ssd's VOC07 11-point mAP at IoU 0.5 on the
dataset of `benchmarks.photo_dataset` (ten objects cut from scikit-image's
photos, pasted on other real photos; needs `pip install scikit-image`).

Run from the repository root:

    python -m benchmarks.learning [--out DIR] [--budgets 5,10,20]
        [--baseline-minutes 20] [--quick] [--skip-baseline] [--skip-ours]

`--suite`: the learning suite instead (`benchmarks.photo_suite`: digits,
textures, faces, whose test objects are instances never seen in training;
1,000 trainval / 250 test images each, built offline in under a minute
each). Per dataset and budget, back to back, with the load average
recorded before each side: ours (`keras-ssd train --data D/yolo --model
tiny --time-limit M`, nothing else; `--model` picks another), the baseline
for M minutes, and with `--yolo-python PATH` YOLOv8n from its yaml
(`benchmarks.yolo_side`, run by that interpreter), all scored with
keras_ssd's VOC07 mAP on the same test images. `--build-only` stops after
building; results in `suite.json`.

    python -m benchmarks.learning --suite [--budgets 5] [--datasets digits,faces]
        [--yolo-python /path/to/torch-venv/bin/python] [--build-only]

`--quick`: 60 training / 20 test images, 0.5 min each side, a smoke run of
about two minutes. Results: a table on stdout and `learning.json` in --out
(default `~/.cache/keras_ssd/benchmarks/learning`). Figures depend on the
CPU; the table names it.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

from benchmarks import photo_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_out():
    """`<benchmark results dir>/learning` (see `benchmarks.common.results_dir`)."""
    from benchmarks import common

    return os.path.join(common.results_dir(), "learning")


def cpu_features(path="/proc/cpuinfo"):
    """The CPU model name, its AVX-512 and AMX flags and the core count.

    Returns:
        dict `model` (str), `avx512` (list of flags starting with avx512),
        `amx` (list of amx flags), `cores` (`os.cpu_count()`). Fields that
        cannot be read are empty.
    """
    model, flags = "", []
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.split()
                if model and flags:
                    break
    except OSError:
        pass
    return {"model": model or platform.processor(),
            "avx512": sorted(f for f in flags if f.startswith("avx512")),
            "amx": sorted(f for f in flags if f.startswith("amx")),
            "cores": os.cpu_count()}


def describe_cpu(info):
    """One line: model, cores, AVX-512 and AMX flags."""
    parts = [info["model"] or "unknown CPU", f"{info['cores']} cores"]
    parts.append("AVX-512: " + (" ".join(info["avx512"]) if info["avx512"] else "none"))
    parts.append("AMX: " + (" ".join(info["amx"]) if info["amx"] else "none"))
    return "; ".join(parts)


def _run(cmd, log_path, timeout):
    """Run `cmd` from the repository root, echo and save its output."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)})
    seconds = time.perf_counter() - t0
    with open(log_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + proc.stdout + "\n--- stderr ---\n"
                + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[2:4])} failed (exit {proc.returncode}); "
                           f"log: {log_path}\n{tail}")
    return proc.stdout, seconds


def _read_state(run_dir):
    try:
        with open(os.path.join(run_dir, "state.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def parse_train_output(stdout, state=None):
    """What `keras-ssd train` reports: epochs, training seconds, batch size,
    parameters.

    Prefers the checkpoint's `state.json` history (`epoch_seconds`, one entry
    per epoch run) and falls back on the printed summary (`finished N epochs
    in X min`). Missing values are None.
    """
    out = {"epochs": None, "train_seconds": None, "batch_size": None, "params": None}
    m = re.search(r"finished (\d+) epochs in ([\d.]+) min", stdout)
    if m:
        out["epochs"] = int(m.group(1))
        out["train_seconds"] = 60.0 * float(m.group(2))
    m = re.search(r"\(([\d,]+) parameters", stdout)
    if m:
        out["params"] = int(m.group(1).replace(",", ""))
    m = re.search(r"batch(?: size)?[ =:]+(\d+)", stdout)
    if m:
        out["batch_size"] = int(m.group(1))
    history = (state or {}).get("history") or {}
    seconds = [s for s in history.get("epoch_seconds", []) if isinstance(s, (int, float))]
    if seconds:
        out["train_seconds"] = float(sum(seconds))
        out["epochs"] = len(seconds)
    elif history.get("loss"):
        out["epochs"] = len(history["loss"])
    return out


def parse_map(stdout, json_path=None):
    """mAP (0..1) from `keras-ssd evaluate`: its --json file, else the
    `mAP  xx.xx` line (percent) of its table."""
    if json_path and os.path.isfile(json_path):
        with open(json_path) as f:
            return float(json.load(f)["mAP"])
    m = re.findall(r"^mAP\s+([\d.]+|nan)\s*$", stdout, flags=re.M)
    if not m:
        raise RuntimeError("keras-ssd evaluate printed no mAP line")
    return float(m[-1]) / 100.0


def run_ours(data, out, minutes, num_train, timeout_extra=600, epochs=None, model="tiny",
             yolo=False, extra=()):
    """Train and evaluate our model for one budget; returns a result dict.

    `yolo=True`: `data` is a suite dataset folder; its `yolo/` layout is
    trained on with nothing but `--model` and `--time-limit` (the classes
    come from its data.yaml), and its `val` split (the test images) scored.
    """
    run_dir = os.path.join(out, f"ours_{minutes:g}min")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)  # this benchmark's own folder: a fresh run
    os.makedirs(run_dir)
    if yolo:
        eval_data, split = os.path.join(data, "yolo"), "val"
        cmd = [sys.executable, "-m", "keras_ssd", "train", "--data", eval_data]
    else:
        eval_data, split = data, "test"
        cmd = [sys.executable, "-m", "keras_ssd", "train", "--data", data,
               "--classes", os.path.join(data, "labels.txt")]
    cmd += ["--model", model, "--time-limit", f"{minutes:g}", "--checkpoint-dir", run_dir,
            *extra]
    if epochs is not None:
        cmd += ["--epochs", str(int(epochs))]
    print(f"ours: {' '.join(cmd[1:])}", flush=True)
    stdout, wall = _run(cmd, os.path.join(run_dir, "train.log"),
                        timeout=60 * minutes + timeout_extra)
    info = parse_train_output(stdout, _read_state(run_dir))
    model_file = os.path.join(run_dir, "latest.keras")
    json_path = os.path.join(run_dir, "eval.json")
    cmd = [sys.executable, "-m", "keras_ssd", "evaluate", "--data", eval_data,
           "--split", split, "--model-file", model_file, "--json", json_path]
    stdout_eval, eval_wall = _run(cmd, os.path.join(run_dir, "evaluate.log"),
                                  timeout=timeout_extra)
    m_ap = parse_map(stdout_eval, json_path)
    seconds = info["train_seconds"]
    result = {"minutes": minutes, "mAP": m_ap, "epochs": info["epochs"],
              "train_seconds": seconds, "wall_seconds": wall, "eval_seconds": eval_wall,
              "params": info["params"], "run_dir": run_dir,
              "images_per_second": (info["epochs"] * num_train / seconds
                                    if info["epochs"] and seconds else None)}
    print(f"ours @ {minutes:g} min: mAP {m_ap:.4f}, {info['epochs']} epochs"
          + (f", {seconds:.0f} s of training" if seconds else "")
          + f" ({wall:.0f} s wall incl. start-up)", flush=True)
    return result


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(ours, baseline, cpu):
    """The results as a text table (mAP in percent)."""
    minutes = sorted({r["minutes"] for r in ours} | {r["minutes"] for r in baseline})
    by_o = {r["minutes"]: r for r in ours}
    by_b = {r["minutes"]: r for r in baseline}
    head = ("minutes", "ours mAP", "ours epochs", "ours img/s",
            "baseline mAP", "baseline epochs", "baseline img/s")
    rows = [head]
    for m in minutes:
        o, b = by_o.get(m, {}), by_b.get(m, {})
        rows.append((f"{m:g}",
                     _fmt(None if o.get("mAP") is None else 100 * o["mAP"], ".2f"),
                     _fmt(o.get("epochs"), "g"), _fmt(o.get("images_per_second"), ".1f"),
                     _fmt(None if b.get("mAP") is None else 100 * b["mAP"], ".2f"),
                     _fmt(b.get("epochs"), ".2f"), _fmt(b.get("images_per_second"), ".1f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"VOC07 11-point mAP at IoU 0.5 (%), test split; CPU: {describe_cpu(cpu)}")
    return "\n".join(lines)


def run_yolo(python, data, out, minutes, timeout_extra=900):
    """The Ultralytics side (`benchmarks.yolo_side`) in another interpreter."""
    run_dir = os.path.join(out, f"yolo_{minutes:g}min")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    cmd = [python, "-m", "benchmarks.yolo_side", "--data", data,
           "--minutes", f"{minutes:g}", "--out", run_dir]
    print(f"yolo: {' '.join(cmd[1:])}", flush=True)
    stdout, wall = _run(cmd, os.path.join(run_dir, "yolo.log"),
                        timeout=60 * minutes + timeout_extra)
    line = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"benchmarks.yolo_side printed no RESULT; log in {run_dir}")
    from benchmarks.yolo_side import score_detections

    result = json.loads(line[-1][len("RESULT "):])
    result.update({"minutes": minutes, "wall_seconds": wall,
                   "mAP": score_detections(data, os.path.join(run_dir, "detections.json"))})
    print(f"yolo @ {minutes:g} min: mAP {result['mAP']:.4f}, {result['epochs']} epochs",
          flush=True)
    return result


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def format_suite_table(rows, cpu):
    """One line per (dataset, budget): the three sides' mAP (%) and epochs."""
    head = ("dataset", "min", "ours mAP", "ours ep", "baseline mAP", "baseline ep",
            "yolov8n mAP", "yolo ep")
    lines = [head]
    for r in rows:
        o, b, y = r.get("ours") or {}, r.get("baseline") or {}, r.get("yolo") or {}
        lines.append((r["dataset"], f"{r['minutes']:g}",
                      _fmt(None if o.get("mAP") is None else 100 * o["mAP"], ".2f"),
                      _fmt(o.get("epochs"), "g"),
                      _fmt(None if b.get("mAP") is None else 100 * b["mAP"], ".2f"),
                      _fmt(b.get("epochs"), ".2f"),
                      _fmt(None if y.get("mAP") is None else 100 * y["mAP"], ".2f"),
                      _fmt(y.get("epochs"), "g")))
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    text = ["  ".join(c.rjust(w) for c, w in zip(x, widths)) for x in lines]
    text.insert(1, "-" * len(text[0]))
    text.append(f"VOC07 11-point mAP at IoU 0.5 (%), test images; CPU: {describe_cpu(cpu)}")
    return "\n".join(text)


def run_suite(args, out, cpu, budgets):
    """`--suite`: build the three suite datasets, then per dataset and budget
    run ours, the baseline and (with `--yolo-python`) YOLOv8n, back to back."""
    from benchmarks import photo_suite

    num_train = args.train if args.train is not None else 1000
    num_test = args.test if args.test is not None else 250
    names = [n for n in args.datasets.split(",") if n]
    unknown = sorted(set(names) - set(photo_suite.NAMES))
    if unknown:
        print(f"error: unknown suite dataset(s) {', '.join(unknown)}; choose from "
              f"{', '.join(photo_suite.NAMES)}", file=sys.stderr)
        return 1
    try:
        dirs = photo_suite.build_suite(os.path.join(out, "suite"), num_train, num_test,
                                       args.seed, names, log=lambda m: print(m, flush=True))
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name in names:
        print(name + "\n" + "\n".join(photo_suite.describe(dirs[name], name)), flush=True)
    if args.build_only:
        return 0
    path = os.path.join(out, "suite.json")
    results = {"cpu": cpu, "python": sys.version.split()[0], "rows": [],
               "num_trainval": num_train, "num_test": num_test, "seed": args.seed,
               "ours_model": args.model, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in names:
        classes = photo_suite.SPECS[name]["classes"]
        for minutes in budgets:
            row = {"dataset": name, "minutes": minutes}
            run_out = os.path.join(out, "runs", name)
            os.makedirs(run_out, exist_ok=True)
            if not args.skip_ours:
                row["load_before_ours"] = _load()
                row["ours"] = run_ours(dirs[name], run_out, minutes, num_train,
                                       epochs=args.epochs, model=args.model, yolo=True)
            if not args.skip_baseline:
                from benchmarks import baseline_tiny

                row["load_before_baseline"] = _load()
                snaps = baseline_tiny.train_baseline(dirs[name], "test", classes, minutes,
                                                     snapshots=[minutes], seed=args.seed)
                row["baseline"] = snaps[-1] if snaps else None
            if args.yolo_python:
                row["load_before_yolo"] = _load()
                row["yolo"] = run_yolo(args.yolo_python, dirs[name], run_out, minutes)
            results["rows"].append(row)
            with open(path + ".tmp", "w") as f:
                json.dump(results, f, indent=2)
            os.replace(path + ".tmp", path)
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(format_suite_table(results["rows"], cpu))
    print(f"results: {path}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.learning",
        description="mAP after a training-time budget on real photos: keras-ssd's tiny "
                    "model (keras-ssd train --time-limit) vs a plain Keras tiny SSD.")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"results and dataset folder (default {default_out()})")
    parser.add_argument("--budgets", default="5,10,20", metavar="M1,M2",
                        help="training budgets of our runs, minutes (default 5,10,20)")
    parser.add_argument("--baseline-minutes", type=float, default=20.0, metavar="M",
                        help="baseline training time; evaluated at the budgets up to it "
                             "(default 20)")
    parser.add_argument("--train", type=int, default=None,
                        help="trainval images (1500; --suite: 1000 per dataset)")
    parser.add_argument("--test", type=int, default=None,
                        help="test images (300; --suite: 250 per dataset)")
    parser.add_argument("--suite", action="store_true",
                        help="the learning suite (benchmarks.photo_suite): three datasets "
                             "whose test objects are unseen instances; per dataset and "
                             "budget: ours, the baseline and, with --yolo-python, YOLOv8n")
    parser.add_argument("--datasets", default="digits,textures,faces", metavar="A,B",
                        help="--suite: which datasets (default all three)")
    parser.add_argument("--build-only", action="store_true",
                        help="--suite: build (or find cached) datasets and stop")
    parser.add_argument("--model", default="tiny",
                        help="--suite: our model (default tiny; keras-ssd train's own "
                             "default, ssd300, needs ImageNet weights from the network)")
    parser.add_argument("--yolo-python", default=None, metavar="PATH",
                        help="--suite: a Python with torch and ultralytics to run "
                             "benchmarks.yolo_side (e.g. /work/venv-tv/bin/python)")
    parser.add_argument("--seed", type=int, default=0, help="dataset and baseline seed (0)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="also cap our runs at this many epochs (a debugging aid)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 60/20 images, 0.5 min per side")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    args = parser.parse_args(argv)
    try:
        budgets = sorted({float(b) for b in args.budgets.split(",") if b.strip()})
    except ValueError:
        parser.error(f"--budgets must be comma-separated minutes, got {args.budgets!r}")
    if not budgets or min(budgets) <= 0:
        parser.error("--budgets must be positive")
    out = os.path.abspath(os.path.expanduser(args.out or default_out()))
    if args.suite:
        os.makedirs(out, exist_ok=True)
        cpu = cpu_features()
        print(f"CPU: {describe_cpu(cpu)}", flush=True)
        return run_suite(args, out, cpu, budgets)
    baseline_minutes = args.baseline_minutes
    num_train = 1500 if args.train is None else args.train
    num_test = 300 if args.test is None else args.test
    if args.quick:
        budgets, baseline_minutes, num_train, num_test = [0.5], 0.5, 60, 20
    os.makedirs(out, exist_ok=True)
    cpu = cpu_features()
    print(f"CPU: {describe_cpu(cpu)}", flush=True)

    data = os.path.join(out, "photo_voc_quick" if args.quick else "photo_voc")
    if photo_dataset.is_cached(data, num_train, num_test, args.seed):
        print(f"dataset: {data} (cached)")
    else:
        t0 = time.perf_counter()
        try:
            photo_dataset.make_photo_voc(data, num_train, num_test, args.seed)
        except RuntimeError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"dataset: wrote {num_train} + {num_test} images to {data} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)

    results = {"cpu": cpu, "python": sys.version.split()[0],
               "dataset": photo_dataset.dataset_params(num_train, num_test, args.seed),
               "data_dir": data, "quick": args.quick, "ours": [], "baseline": [],
               "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    path = os.path.join(out, "learning_quick.json" if args.quick else "learning.json")

    def save():
        with open(path + ".tmp", "w") as f:
            json.dump(results, f, indent=2)
        os.replace(path + ".tmp", path)

    if not args.skip_ours:
        for minutes in budgets:
            results["ours"].append(
                run_ours(data, out, minutes, num_train, epochs=args.epochs))
            save()
    if not args.skip_baseline:
        from benchmarks import baseline_tiny

        snaps = [m for m in budgets if m <= baseline_minutes]
        results["baseline_model"] = baseline_tiny.describe_model(len(photo_dataset.CLASSES))
        results["baseline"] = baseline_tiny.train_baseline(
            data, "test", photo_dataset.CLASSES, baseline_minutes, snapshots=snaps,
            seed=args.seed)
        save()
    try:
        import keras

        results["keras"] = keras.__version__
        results["keras_backend"] = keras.backend.backend()
    except ImportError:
        pass
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    save()
    print()
    print(format_table(results["ours"], results["baseline"], cpu))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
