"""keras-ssd benchmark suite: one entry point, one table, one JSON file.

    python -m benchmarks.run [--quick] [--out DIR] [--json FILE] [--threads N]
                             [--only forward postprocess train encoding
                                     predict memory winograd]

Run it from the repository root. Results go outside the source tree:
`results.json` in `--out` (default `~/.cache/keras_ssd/benchmarks`, or
`$KERAS_SSD_BENCHMARKS_DIR`), or the file given with `--json`.

Every figure is a median over repeated runs after warm-up; comparisons with
torchvision run in the same process, alternating the two sides each round;
TensorFlow and PyTorch use the same thread count (stated in the output).
torchvision is optional: without it the comparison columns stay empty.
The CPU's model, kind and features (`keras_ssd.accel.machine`) are printed
at the top and beside every table, and stored in `results.json` with every
section (`sections[name]["cpu"]`), since the figures and the per-machine
choices depend on them. See docs/performance.md for the figures measured
on each CPU kind.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:  # `python benchmarks/run.py`: the package is not importable
    raise SystemExit("run the benchmarks from the repository root as a module: "
                     "python -m benchmarks.run")

from benchmarks import common  # noqa: E402

SECTIONS = ("forward", "postprocess", "train", "encoding", "predict", "memory", "winograd")


def _section(name, quick, demo_dir=None):
    if name == "forward":
        from benchmarks import forward

        return forward.run(quick=quick)
    if name == "postprocess":
        from benchmarks import postprocess_torchvision

        return postprocess_torchvision.run(quick=quick)
    if name == "train":
        from benchmarks import train_step

        return train_step.run(quick=quick)
    if name == "encoding":
        from benchmarks import encoding

        return encoding.run(quick=quick)
    if name == "predict":
        from benchmarks import predict_latency

        return predict_latency.run(quick=quick, demo_dir=demo_dir)
    if name == "memory":
        from benchmarks import memory

        return memory.run(quick=quick)
    if name == "winograd":
        from benchmarks import winograd

        return winograd.run(quick=quick)
    raise ValueError(f"unknown section {name!r}; known: {SECTIONS}")


def derived_rows(rows):
    """Post-processing time as a share of the float32 forward time per image."""
    out = []
    fwd = {r["batch"]: r["value"] for r in rows
           if r["name"] == "forward fp32 (model.predict)" and r["value"]}
    for r in rows:
        if (r["section"] == "postprocess" and r["name"].startswith("decode+NMS")
                and "Python-loop" not in r["name"] and r["batch"] in fwd):
            fwd_ms = 1e3 / fwd[r["batch"]]
            share = r["value"] / fwd_ms
            out.append(common.row(
                "postprocess", r["name"].replace("decode+NMS", "decode+NMS share of forward"),
                100 * share, "%", ratio_value=0.05 / share if share else None, floor=1.0,
                batch=r["batch"],
                note=f"{r['value']:.1f} ms vs fp32 forward {fwd_ms:.0f} ms/img; "
                     "ratio = 5% floor / share"))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description="keras-ssd benchmarks vs torchvision")
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds (a smoke run; figures are noisier)")
    parser.add_argument("--out", default=None,
                        help="folder for results.json (default: $KERAS_SSD_BENCHMARKS_DIR "
                             f"or {common.results_dir()})")
    parser.add_argument("--json", default=None,
                        help="write the results to this file instead of OUT/results.json "
                             "('' for none)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for TensorFlow and PyTorch alike (default: all cores)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--demo-dir", default="keras_ssd_demo",
                        help="output of `keras-ssd demo` for the bf16 detection agreement "
                             "(default %(default)s; skipped when missing)")
    parser.add_argument("--markdown", default=None,
                        help="also write the table as Markdown to this file")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = os.path.join(args.out or common.results_dir(), "results.json")

    common.set_threads(args.threads)
    info = common.machine_info()
    cpu_line = common.cpu_description()
    torch, _ = common.import_torchvision()
    print(f"CPU: {cpu_line}")
    print(f"keras-ssd benchmarks: {info['cpu']}, {info['cores']} cores, "
          f"threads={args.threads} (TensorFlow intra/inter-op"
          f"{' and PyTorch' if torch is not None else ''}), "
          f"load average {tuple(round(x, 2) for x in info['load_average'] or ())}")
    if torch is None:
        print(common.TORCH_MISSING)
    print(f"TF {info.get('tensorflow')}, Keras {info.get('keras')} "
          f"({info.get('keras_backend')})"
          + (f", torch {info['torch']}, torchvision {info['torchvision']}"
             if torch is not None else ""), flush=True)

    rows, timings, sections = [], {}, {}
    for name in args.only:
        t0 = time.perf_counter()
        print(f"\n== {name} ==", flush=True)
        try:
            section_rows = _section(name, args.quick, args.demo_dir)
        except Exception as exc:  # report and go on with the other sections
            print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
            section_rows = [common.row(name, "failed", None, "-",
                                       note=f"{type(exc).__name__}: {exc}")]
        timings[name] = time.perf_counter() - t0
        rows.extend(section_rows)
        sections[name] = {"cpu": info["cpu_features"], "seconds": timings[name],
                          "rows": section_rows}
        print(f"CPU: {cpu_line}")
        print(common.format_table(section_rows), flush=True)

    derived = derived_rows(rows)
    rows.extend(derived)
    if derived:
        sections["derived"] = {"cpu": info["cpu_features"], "rows": derived}
    print("\n== summary ==")
    print(f"CPU: {cpu_line}")
    print(common.format_table(rows))
    info["load_average_end"] = os.getloadavg()
    result = {"machine": info, "cpu": info["cpu_features"], "quick": args.quick,
              "section_seconds": timings, "sections": sections, "rows": rows}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print(f"\nwrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"CPU: {cpu_line}\n\n" + common.format_markdown(rows) + "\n")
        print(f"wrote {args.markdown}")
    return result


if __name__ == "__main__":
    main()
