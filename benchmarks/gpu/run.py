"""SSD300 on one NVIDIA GPU: keras-ssd under JAX against torchvision.

One run (at most 8 minutes, held to its time budget by the script itself)
measures, on the same GPU and the same input:

- forward: SSD300 network images/s at batch 1, 8 and 32, float32 and
  bfloat16 (ours: the Keras model under `mixed_bfloat16`, jit-compiled
  `stateless_call`; theirs: torchvision `ssd300_vgg16` backbone + head under
  `torch.autocast("cuda", torch.bfloat16)`), input already on the GPU;
- train: the training step at batch 32, SGD with momentum 0.9 (ours:
  `model.train_on_batch` with `SSDLoss` on encoded targets; theirs:
  torchvision's `model(images, targets)` losses, backward, `optimizer.step`);
- decode: decoding + per-class NMS + top-k, ms per image at batch 32 on the
  same head outputs (ours: `DecodeDetections` jit-compiled; theirs:
  `SSD.postprocess_detections`), a realistic and a worst case;
- pipeline: the images/s that `SSDSequence` (JPEG decode, the SSD
  augmentation, target encoding) delivers to the main process with N worker
  processes, against the images/s the measured training step consumes.

It prints one table and writes the rows as JSON (and the table as Markdown
beside it). `--dry-run` runs the same code on the CPU at tiny sizes (the
`tiny` preset, batch 1-2, one or two timed calls): it checks that the
benchmark works, its figures mean nothing. Without torch/torchvision the
torchvision side is skipped with a note.

Run (see benchmarks/gpu/README.md): python -m benchmarks.gpu.run [--out FILE]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

_STARTED = time.perf_counter()

SECTIONS = ("forward", "train", "decode", "pipeline")

#: What a GPU run measures.
FULL = {
    "model": "ssd300",
    "num_classes": 20,
    "batches": (1, 8, 32),
    "precisions": ("float32", "bfloat16"),
    "train_batch": 32,
    "decode_batch": 32,
    "decode_cases": ("realistic", "worst"),
    "pipeline_images": 256,
    "pipeline_image_size": (500, 375),
    "pipeline_batch": 32,
    "warmup": 3,
    "rounds": 5,
    "round_seconds": 0.5,
    "torch_batches": (1, 8, 32),
}

#: The CPU check: the same code at sizes that take seconds.
DRY_RUN = {
    "model": "tiny",
    "num_classes": 4,
    "batches": (1,),
    "precisions": ("float32", "bfloat16"),
    "train_batch": 1,
    "decode_batch": 2,
    "decode_cases": ("realistic", "worst"),
    "pipeline_images": 8,
    "pipeline_image_size": (120, 90),
    "pipeline_batch": 2,
    "warmup": 0,  # the untimed calibration call compiles
    "rounds": 1,
    "round_seconds": 0.0,
    "torch_batches": (1,),
}

#: When each section must have ended, as a share of the budget; a section
#: (or a measurement inside it) that would start later is skipped.
SECTION_DEADLINES = {"forward": 0.50, "train": 0.72, "decode": 0.81, "pipeline": 0.97}

#: Paper / torchvision post-processing settings (both sides).
DECODE_OPTIONS = {"confidence_threshold": 0.01, "iou_threshold": 0.45,
                  "max_candidates_per_class": 400, "top_k": 200}


# ------------------------------------------------------------------ budget
class Budget:
    """The run's time budget, counted from the script's start.

    `soft` seconds: no section or measurement starts after its share of it
    (`SECTION_DEADLINES`); `hard` seconds: a watchdog thread writes what was
    measured and ends the process (a compile or a worker that hangs).
    """

    def __init__(self, soft, hard):
        self.soft = float(soft)
        self.hard = float(hard)

    def elapsed(self):
        return time.perf_counter() - _STARTED

    def section_open(self, section):
        return self.elapsed() < SECTION_DEADLINES[section] * self.soft


class Results:
    """Rows, skipped measurements and settings; written as JSON and text."""

    def __init__(self, out, settings, budget):
        self.out = out
        self.settings = settings
        self.budget = budget
        self.rows = []
        self.skipped = []
        self.info = {}
        self.section_seconds = {}
        self.lock = threading.Lock()
        self.written = False

    def add(self, row):
        with self.lock:
            self.rows.append(row)
        print(f"  {row['section']:9s} {row['name']} (batch {row['batch']}): "
              f"{_num(row['value'])} {row['unit']}"
              + (f" vs {_num(row['theirs'])}" if row["theirs"] is not None else ""),
              flush=True)

    def skip(self, section, what, why):
        with self.lock:
            self.skipped.append({"section": section, "what": what, "why": why})
        print(f"  {section:9s} skipped {what}: {why}", flush=True)

    def write(self, stopped=None):
        from benchmarks import common

        with self.lock:
            if self.written:
                return
            self.written = True
            rows = list(self.rows)
        doc = {
            "benchmark": "benchmarks.gpu.run",
            "dry_run": self.settings["dry_run"],
            "seconds": round(self.budget.elapsed(), 1),
            "budget_seconds": self.budget.soft,
            "section_seconds": dict(self.section_seconds),
            "stopped": stopped,
            "settings": {k: v for k, v in self.settings.items() if k != "dry_run"},
            "machine": self.info,
            "rows": rows,
            "skipped": self.skipped,
        }
        table = common.format_table(rows) if rows else "(no rows)"
        print()
        print(table)
        for s in self.skipped:
            print(f"skipped: {s['section']} {s['what']}: {s['why']}")
        print(f"total {doc['seconds']:.0f} s of a {self.budget.soft:.0f} s budget"
              + (f"; stopped: {stopped}" if stopped else ""))
        os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)
        with open(self.out, "w") as f:
            json.dump(doc, f, indent=1, default=_jsonable)
        with open(os.path.splitext(self.out)[0] + ".md", "w") as f:
            f.write(common.format_markdown(rows) + "\n")
        print(f"wrote {self.out}", flush=True)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _num(value):
    from benchmarks import common

    return common.fmt(value)


def _watchdog(results, budget):
    """Write what was measured and end the process at the hard deadline."""

    def fire():
        try:
            results.write(stopped=f"hard deadline of {budget.hard:.0f} s reached")
        finally:
            os._exit(124)

    timer = threading.Timer(max(0.0, budget.hard - budget.elapsed()), fire)
    timer.daemon = True
    timer.start()
    return timer


# ------------------------------------------------------------------ timing
def throughput(call, sync, settings, budget, section):
    """Median seconds per call of `call()`, after warm-up calls.

    Each round runs enough back-to-back calls to last `round_seconds`
    (estimated from one synchronised call), then waits for the device
    (`sync()`); asynchronous dispatch is so counted in full.
    """
    for _ in range(settings["warmup"]):
        call()
    sync()
    t = time.perf_counter()
    call()
    sync()
    one = time.perf_counter() - t
    iters = max(1, min(500, int(settings["round_seconds"] / max(one, 1e-6))))
    times = []
    for _ in range(settings["rounds"]):
        if times and not budget.section_open(section):
            break
        t = time.perf_counter()
        for _ in range(iters):
            call()
        sync()
        times.append((time.perf_counter() - t) / iters)
    return statistics.median(times)


def _row(section, name, value, unit, **kwargs):
    from benchmarks import common

    return common.row(section, name, value, unit, **kwargs)


# ------------------------------------------------------------------ sides
class Ours:
    """keras-ssd under JAX: models, jitted calls, device arrays."""

    def __init__(self, settings):
        import jax
        import keras

        from keras_ssd.config import SSDConfig

        self.jax = jax
        self.keras = keras
        self.settings = settings
        self.config = SSDConfig.from_preset(settings["model"],
                                            num_classes=settings["num_classes"])
        self.size = int(self.config.image_size)
        self.models = {}
        self._decode = None

    def model(self, precision):
        """The SSD built under `precision` (cached; the global policy is
        put back)."""
        if precision not in self.models:
            from keras_ssd.models import build_model

            keras = self.keras
            previous = keras.config.dtype_policy()
            try:
                keras.config.set_dtype_policy(
                    "float32" if precision == "float32" else "mixed_bfloat16")
                self.models[precision] = build_model(
                    self.settings["model"], num_classes=self.settings["num_classes"])
            finally:
                keras.config.set_dtype_policy(previous)
        return self.models[precision]

    def put(self, array):
        return self.jax.device_put(array)

    def sync_on(self, box):
        return lambda: self.jax.block_until_ready(box[0]) if box else None

    def forward(self, precision, images):
        model = self.model(precision)
        jax = self.jax
        fn = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        x = self.put(images)
        box = []

        def call():
            box[:] = [fn(tv, ntv, x)]

        return call, self.sync_on(box)

    def train_step(self, images, targets):
        from keras_ssd.losses import SSDLoss

        keras = self.keras
        model = self.model("float32")
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss=SSDLoss(),
                      jit_compile=True)
        x, y = self.put(images), self.put(targets)

        def call():
            model.train_on_batch(x, y)  # returns the loss as a float: synchronised

        return call, lambda: None

    def decode(self, predictions):
        from keras_ssd.layers.decode_detections import DecodeDetections

        # torchvision clips decoded boxes before NMS: so does ours here.
        if self._decode is None:  # one layer, one jitted function for every case
            layer = DecodeDetections(self.config, clip_boxes=True, **DECODE_OPTIONS)
            self._decode = self.jax.jit(lambda p: layer(p))
        fn = self._decode
        p = self.put(predictions)
        box = []

        def call():
            box[:] = [fn(p)]

        def result():
            return {k: self.keras.ops.convert_to_numpy(v) for k, v in fn(p).items()}

        return call, self.sync_on(box), result


class Theirs:
    """torchvision `ssd300_vgg16` (random weights) on the same device kind."""

    SIZE = 300  # torchvision's SSD300 takes 300 x 300 inputs only

    def __init__(self, settings, want_cuda):
        import torch
        from torchvision.models.detection import ssd300_vgg16

        self.torch = torch
        if want_cuda and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        self.device = torch.device("cuda" if want_cuda else "cpu")
        torch.backends.cudnn.benchmark = True  # its own autotuning, as XLA's
        torch.manual_seed(0)
        self.num_classes = settings["num_classes"] + 1
        self.model = ssd300_vgg16(
            weights=None, weights_backbone=None, num_classes=self.num_classes,
            score_thresh=DECODE_OPTIONS["confidence_threshold"],
            nms_thresh=DECODE_OPTIONS["iou_threshold"],
            topk_candidates=DECODE_OPTIONS["max_candidates_per_class"],
            detections_per_img=DECODE_OPTIONS["top_k"]).to(self.device)

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def images(self, images):
        """NHWC 0..255 numpy -> NCHW 0..1 on the device (the same pixels)."""
        t = self.torch.from_numpy(images).permute(0, 3, 1, 2).contiguous() / 255.0
        return t.to(self.device)

    def forward(self, precision, images):
        torch = self.torch
        model = self.model.eval()
        x = self.images(images)
        bf16 = precision == "bfloat16"

        def call():
            with torch.inference_mode(), torch.autocast(self.device.type,
                                                        dtype=torch.bfloat16, enabled=bf16):
                feats = list(model.backbone(x).values())
                model.head(feats)

        return call, self.sync

    def train_step(self, images, boxes, labels):
        torch = self.torch
        model = self.model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                                    weight_decay=5e-4)
        x = list(self.images(images))
        targets = [{"boxes": torch.from_numpy(b * self.SIZE).float().to(self.device),
                    "labels": torch.from_numpy(l + 1).long().to(self.device)}
                   for b, l in zip(boxes, labels)]

        def call():
            losses = model(x, targets)
            loss = losses["bbox_regression"] + losses["classification"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return call, self.sync

    def decode(self, predictions, config):
        import numpy as np

        from keras_ssd.anchors import generate_anchors
        from keras_ssd.boxes import cxcywh_to_xyxy

        torch = self.torch
        model = self.model.eval()
        size = int(config.image_size)
        anchors = torch.from_numpy(
            (cxcywh_to_xyxy(generate_anchors(config)) * size).astype(np.float32)
        ).to(self.device)
        t = torch.from_numpy(predictions).to(self.device)
        head = {"bbox_regression": t[..., :4], "cls_logits": t[..., 4:]}
        batch = t.shape[0]

        def run():
            with torch.inference_mode():
                return model.postprocess_detections(head, [anchors] * batch,
                                                    [(size, size)] * batch)

        def result():
            return [{k: v.cpu() for k, v in d.items()} for d in run()]

        return run, self.sync, result


# --------------------------------------------------------------- sections
def _images(batch, size, seed=0):
    import numpy as np

    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype(
        "float32")


def _boxes(batch, num_classes, seed=0):
    """Per image 2-6 boxes (normalised xyxy) and 0-based labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    boxes, labels = [], []
    for _ in range(batch):
        n = int(rng.integers(2, 7))
        xy = rng.uniform(0.0, 0.6, (n, 2))
        wh = rng.uniform(0.1, 0.4, (n, 2))
        boxes.append(np.clip(np.concatenate([xy, xy + wh], 1), 0, 1).astype("float32"))
        labels.append(rng.integers(0, num_classes, n))
    return boxes, labels


def forward_section(ours, theirs, settings, budget, results):
    section = "forward"
    for precision in settings["precisions"]:
        short = "fp32" if precision == "float32" else "bf16"
        for batch in settings["batches"]:
            if not budget.section_open(section):
                results.skip(section, f"{short} batch {batch}", "time budget")
                continue
            call, sync = ours.forward(precision, _images(batch, ours.size))
            ours_ips = batch / throughput(call, sync, settings, budget, section)
            tv_ips = None
            if theirs is not None and batch in settings["torch_batches"]:
                call, sync = theirs.forward(precision, _images(batch, theirs.SIZE))
                tv_ips = batch / throughput(call, sync, settings, budget, section)
            note = ("network only, input on the device; theirs: torchvision ssd300_vgg16 "
                    "backbone+head" + (" under torch.autocast bf16" if short == "bf16"
                                       else ""))
            results.add(_row(section, f"forward {short}", ours_ips, "img/s", theirs=tv_ips,
                             batch=batch, note=note))


def train_section(ours, theirs, settings, budget, results):
    section = "train"
    if not budget.section_open(section):
        results.skip(section, "train step", "time budget")
        return None
    batch = settings["train_batch"]
    from keras_ssd.anchors import generate_anchors
    from keras_ssd.targets import TargetEncoder

    boxes, labels = _boxes(batch, settings["num_classes"])
    encoder = TargetEncoder(generate_anchors(ours.config),
                            num_classes=settings["num_classes"])
    import numpy as np

    targets = np.stack([encoder(b, l) for b, l in zip(boxes, labels)]).astype("float32")
    call, sync = ours.train_step(_images(batch, ours.size), targets)
    ours_ips = batch / throughput(call, sync, settings, budget, section)
    tv_ips = None
    if theirs is not None and budget.section_open(section):
        call, sync = theirs.train_step(_images(batch, theirs.SIZE), boxes, labels)
        tv_ips = batch / throughput(call, sync, settings, budget, section)
    elif theirs is not None:
        results.skip(section, "torchvision train step", "time budget")
    results.add(_row(
        section, "train step fp32, SGD momentum 0.9", ours_ips, "img/s", theirs=tv_ips,
        batch=batch,
        note="ours: train_on_batch, SSDLoss on encoded targets; theirs: torchvision "
             "losses (its matching inside) + backward + step"))
    return ours_ips


def decode_section(ours, theirs, settings, budget, results):
    section = "decode"
    from benchmarks import postprocess as pp

    batch = settings["decode_batch"]
    for case in settings["decode_cases"]:
        if not budget.section_open(section):
            results.skip(section, f"decode+NMS {case}", "time budget")
            continue
        predictions = pp.make_predictions(ours.config, case, batch, seed=batch)
        call, sync, ours_result = ours.decode(predictions)
        ours_ms = 1e3 * throughput(call, sync, settings, budget, section) / batch
        tv_ms = None
        note = "same head outputs; paper settings (0.01, NMS 0.45, 400/class, 200)"
        if theirs is not None:
            from benchmarks.postprocess_torchvision import agreement

            call, sync, tv_result = theirs.decode(predictions, ours.config)
            tv_ms = 1e3 * throughput(call, sync, settings, budget, section) / batch
            share = agreement(ours_result(), tv_result(), int(ours.config.image_size))
            note += f"; {100 * share:.1f}% of torchvision's detections reproduced"
        results.add(_row(section, f"decode+NMS {case}", ours_ms, "ms/img", theirs=tv_ms,
                         higher_is_better=False, batch=batch, note=note))


def pipeline_section(ours, settings, budget, results, demand, workers):
    section = "pipeline"
    import concurrent.futures
    import multiprocessing

    from benchmarks.data_pipeline import _add_photo_detail
    from benchmarks.gpu import pipeline
    from keras_ssd.data import SYNTHETIC_CLASSES, make_synthetic_voc

    batch = settings["pipeline_batch"]
    with tempfile.TemporaryDirectory(prefix="keras_ssd_gpu_bench_") as root:
        make_synthetic_voc(root, settings["pipeline_images"], 0,
                           settings["pipeline_image_size"], seed=0, min_objects=1,
                           max_objects=5, size_range=(0.1, 0.6))
        _add_photo_detail(root)  # photo-like JPEGs decode as slowly as photos
        config = ours.config.to_dict()
        config["num_classes"] = len(SYNTHETIC_CLASSES)
        config.pop("class_names", None)
        context = multiprocessing.get_context("spawn")
        for n in workers:
            if not budget.section_open(section):
                results.skip(section, f"{n} workers", "time budget")
                continue
            with concurrent.futures.ProcessPoolExecutor(
                    n, mp_context=context, initializer=pipeline.init,
                    initargs=(root, SYNTHETIC_CLASSES, config, batch, 0)) as pool:
                list(pool.map(pipeline.ready, range(n)))  # every worker started
                list(pool.map(pipeline.batch, range(n)))  # and warm
                count = max(2 * n, 4) if settings["dry_run"] else max(3 * n, 12)
                t = time.perf_counter()
                delivered = 0
                for images, _ in pool.map(pipeline.batch, range(n, n + count)):
                    delivered += images.shape[0]
                seconds = time.perf_counter() - t
                compute = None
                if n == max(workers):  # the same workers, batches left in them
                    t = time.perf_counter()
                    shapes = list(pool.map(pipeline.batch_shape,
                                           range(n + count, n + 2 * count)))
                    compute = sum(s[0] for s in shapes) / (time.perf_counter() - t)
            ips = delivered / seconds
            note = (f"{n} spawned worker processes, SSDSequence augment=True, batches "
                    f"pickled back; {settings['pipeline_image_size'][0]}x"
                    f"{settings['pipeline_image_size'][1]} photo-like JPEGs; theirs = the "
                    "train step's img/s (ours)")
            results.add(_row(section, "SSDSequence images delivered", ips, "img/s",
                             theirs=demand, floor=1.0 if demand else None, batch=batch,
                             note=note))
            if compute is not None:
                results.add(_row(
                    section, "SSDSequence images made, not shipped", compute, "img/s",
                    theirs=demand, batch=batch,
                    note=f"{n} workers; each batch built and dropped in its worker: "
                         "what the workers can make when pickling the batches back "
                         "costs nothing"))


# ------------------------------------------------------------------ main
def machine_info(theirs):
    import platform

    import jax
    import keras

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "jax": jax.__version__,
        "jax_devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}"
                        for d in jax.devices()],
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
    }
    try:
        from keras_ssd.accel import machine

        info["cpu"] = machine.describe()
    except Exception as e:  # noqa: BLE001 - information only
        info["cpu"] = f"unknown ({e})"
    if theirs is not None:
        torch = theirs.torch
        import torchvision

        info.update(torch=torch.__version__, torchvision=torchvision.__version__,
                    torch_device=str(theirs.device),
                    torch_cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    torch_matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        if theirs.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _parse(argv):
    from benchmarks import common

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu.run",
        description="SSD300 on one NVIDIA GPU: keras-ssd under JAX vs torchvision "
                    "ssd300_vgg16 (forward, train step, decode+NMS, data pipeline).")
    p.add_argument("--out", default=os.path.join(common.results_dir(), "gpu.json"),
                   help="JSON results file (a .md table is written beside it; "
                        "default: %(default)s)")
    p.add_argument("--budget", type=float, default=420.0,
                   help="seconds after which no measurement starts (default 420)")
    p.add_argument("--hard-limit", type=float, default=470.0,
                   help="seconds after which the run writes what it has and exits "
                        "(default 470, under 8 minutes)")
    p.add_argument("--workers", default=None,
                   help="pipeline worker counts, comma-separated (default: 1,4,8 and "
                        "cores-1; dry run: 2)")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"which to run, comma-separated (default: {','.join(SECTIONS)})")
    p.add_argument("--no-torch", action="store_true", help="skip the torchvision side")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU check at tiny sizes: the same code paths, figures meaningless")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; "
                f"choose from {', '.join(SECTIONS)}")
    args.sections = sections
    if args.workers is not None:
        try:
            args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
        except ValueError:
            p.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
        if not args.workers or min(args.workers) < 1:
            p.error("--workers: each count must be >= 1")
    if args.hard_limit <= args.budget:
        p.error("--hard-limit must be larger than --budget")
    return args


def main(argv=None):
    args = _parse(argv)
    backend = os.environ.setdefault("KERAS_BACKEND", "jax")
    if backend != "jax":
        print(f"benchmarks.gpu.run measures keras-ssd under JAX; KERAS_BACKEND is "
              f"{backend!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # JAX allocates on demand, so torch has room on the same GPU.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.dry_run:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    settings = dict(DRY_RUN if args.dry_run else FULL, dry_run=args.dry_run)
    cores = os.cpu_count() or 1
    workers = args.workers or ([2] if args.dry_run
                               else sorted({1, 4, 8, max(1, cores - 1)}))
    settings["workers"] = workers
    budget = Budget(args.budget, args.hard_limit)
    results = Results(args.out, settings, budget)
    _watchdog(results, budget)

    theirs, why = None, None
    if args.no_torch:
        why = "--no-torch"
    else:
        from benchmarks import common

        torch, _ = common.import_torchvision()
        if torch is None:
            why = common.TORCH_MISSING
        else:
            try:
                theirs = Theirs(settings, want_cuda=not args.dry_run)
            except RuntimeError as e:
                why = f"torchvision side skipped: {e}"
    import jax

    platform = jax.devices()[0].platform
    if not args.dry_run and platform != "gpu":
        print(f"no GPU: JAX runs on {platform!r} (jax with CUDA installed? use --dry-run "
              "for the CPU check)", file=sys.stderr)
        return 2
    ours = Ours(settings)
    results.info = machine_info(theirs)
    results.section_seconds["start-up"] = round(budget.elapsed(), 1)
    mode = "dry run (CPU, tiny sizes; figures mean nothing)" if args.dry_run else "GPU run"
    print(f"benchmarks.gpu.run: {mode}; JAX on {results.info['jax_devices']}; "
          f"torchvision: {theirs.device if theirs else why}", flush=True)
    if theirs is None:
        results.skip("all", "torchvision side", why)

    demand = None
    try:
        for section in args.sections:
            started = budget.elapsed()
            try:
                if section == "forward":
                    forward_section(ours, theirs, settings, budget, results)
                elif section == "train":
                    demand = train_section(ours, theirs, settings, budget, results)
                elif section == "decode":
                    decode_section(ours, theirs, settings, budget, results)
                else:
                    pipeline_section(ours, settings, budget, results, demand, workers)
            except Exception as e:  # noqa: BLE001 - one run: keep the other sections
                import traceback

                traceback.print_exc()
                first = str(e).splitlines()[0][:300] if str(e) else ""
                results.skip(section, "the rest of the section",
                             f"failed: {type(e).__name__}: {first}")
            results.section_seconds[section] = round(budget.elapsed() - started, 1)
            print(f"  {section:9s} took {results.section_seconds[section]:.0f} s "
                  f"({budget.elapsed():.0f} s so far)", flush=True)
    except KeyboardInterrupt:
        results.write(stopped="interrupted")
        return 130
    results.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
