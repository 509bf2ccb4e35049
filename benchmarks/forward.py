"""SSD300 forward pass (network only): ours vs torchvision, and the CPU's
matmul peak.

Ours: `keras_ssd.models.SSD300(num_classes=20)` prepared for inference as
the inference path prepares it (`keras_ssd.accel.prepare_for_inference`:
the measured `jit_compile` default and, in float32 on a CPU, Winograd
convolutions), through `predict` (its array fast path, as `SSD.predict`)
and `predict_on_batch`, float32 and under the mixed-precision switch
(bfloat16 on CPU). Input `(B, 300, 300, 3)` RGB 0..255 (the model
preprocesses it itself).

Theirs: torchvision `ssd300_vgg16(weights=None, weights_backbone=None,
num_classes=21)`, `backbone` + `head` only (no resize transform, no
post-processing), under `torch.inference_mode()`, float32 and under
`torch.autocast("cpu", dtype=torch.bfloat16)`. Input `(B, 3, 300, 300)`.

Also: the float32 and bfloat16 matmul peak (4096 x 4096 `tf.matmul`), the
model's multiply-add count (from its layers) and our achieved GFLOP/s as a
share of the peak, the XLA (`jit_compile=True`) forward for reference, and
in float32 the gain of the Winograd path over the same model on direct
convolutions (`prepare_for_inference(model, winograd=False)`).
"""

import numpy as np

from benchmarks import common

SECTION = "forward"


# ------------------------------------------------------------------- counting
def count_macs(model):
    """Multiply-adds of one image through the model's conv/dense layers.

    Counts `Conv2D` (out_h * out_w * out_c * k_h * k_w * in_c / groups),
    `DepthwiseConv2D` and `Dense`; elementwise layers are not counted.
    """
    import keras

    total = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = layer.output.shape
            kh, kw = layer.kernel_size
            total += out[1] * out[2] * out[3] * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            in_c = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += out[1] * out[2] * out[3] * kh * kw * in_c // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            out = layer.output.shape
            spatial = int(np.prod(out[1:-1])) if len(out) > 2 else 1
            total += spatial * layer.input.shape[-1] * layer.units
    return int(total)


def _all_layers(model):
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_all_layers(layer))
        else:
            out.append(layer)
    return out


# --------------------------------------------------------------------- peak
def matmul_fn(dtype="float32", n=4096):
    """`(fn, flop)`: one `n x n` `tf.matmul` in `dtype` per call."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n), dtype=tf.float32), dtype)
    b = tf.cast(tf.random.normal((n, n), dtype=tf.float32), dtype)
    fn = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[0, :1], tf.float32)))
    return (lambda: fn(a, b).numpy()), 2.0 * n ** 3


def matmul_peak(dtype="float32", n=4096, rounds=5):
    """Median GFLOP/s of an `n x n` `tf.matmul` in `dtype`."""
    fn, flop = matmul_fn(dtype, n)
    median, _ = common.measure(fn, warmup=2, repeats=rounds)
    return flop / median / 1e9


# --------------------------------------------------------------------- sides
def ssd300(precision="float32"):
    """SSD300 (20 classes) built under `precision` ("float32", or anything
    else for the mixed-precision switch); the global dtype policy is left as
    it was."""
    import keras

    from keras_ssd.accel import runtime
    from keras_ssd.models import SSD300

    previous = keras.config.dtype_policy()
    try:
        # force: the bf16 rows measure bfloat16 on every CPU, native or not.
        runtime.set_mixed_precision(precision != "float32", force=True)
        return SSD300(num_classes=20)
    finally:
        keras.config.set_dtype_policy(previous)


def build_ours(precision="float32", jit_compile=None, winograd=True):
    """SSD300 (20 classes) built under `precision`, prepared for inference
    (`keras_ssd.accel.prepare_for_inference`), the network alone (no
    decoding: the forward pass is what is compared)."""
    from keras_ssd.accel import prepare_for_inference

    return prepare_for_inference(ssd300(precision), jit_compile=jit_compile,
                                 winograd=winograd, decode=False)


def ours_fn(model, batch, seed=0):
    x = np.random.default_rng(seed).uniform(0, 255, (batch, 300, 300, 3)).astype("float32")
    return lambda: model.predict(x, batch_size=batch, verbose=0)


def ours_on_batch_fn(model, batch, seed=0):
    x = np.random.default_rng(seed).uniform(0, 255, (batch, 300, 300, 3)).astype("float32")
    return lambda: model.predict_on_batch(x)


def build_torchvision():
    torch, torchvision = common.import_torchvision()
    if torch is None:
        return None
    from torchvision.models.detection import ssd300_vgg16

    return ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()


def torchvision_fn(model, batch, bf16=False, channels_last=False, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, 300, 300, generator=g)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                     enabled=bf16):
            feats = list(model.backbone(x).values())
            out = model.head(feats)
        return out

    return run


# ----------------------------------------------------------------------- run
def run(quick=False, batches=(1, 8), include_xla=True):
    rows = []
    rounds = 3 if quick else 7
    peaks = {}

    from keras_ssd.accel import prepare_for_inference

    net32 = ssd300("float32")
    ours32 = prepare_for_inference(net32, decode=False)
    direct32 = prepare_for_inference(net32, winograd=False, decode=False)  # same weights
    ours16 = build_ours("bfloat16")
    macs = count_macs(net32)
    gflop = 2.0 * macs / 1e9
    rows.append(common.row(SECTION, "SSD300 multiply-adds per image", macs / 1e9, "G MAC",
                           note=f"{gflop:.1f} GFLOP"))
    tv = build_torchvision()
    if tv is None:
        print(common.TORCH_MISSING)
    for batch in batches:
        # float32 pair and bfloat16 pair, each alternated with the matmul
        # peak of that precision, so that load from other processes hits the
        # peak and both forwards alike.
        for precision, model in (("fp32", ours32), ("bf16", ours16)):
            dtype = "float32" if precision == "fp32" else "bfloat16"
            peak_fn, peak_flop = matmul_fn(dtype)
            sides = {"ours": ours_fn(model, batch), "peak": peak_fn,
                     "ours_on_batch": ours_on_batch_fn(model, batch)}
            if tv is not None:
                sides["torchvision"] = torchvision_fn(tv, batch, bf16=precision == "bf16")
            if precision == "fp32":
                sides["direct"] = ours_fn(direct32, batch)
            res = common.alternate(sides, warmup=1 if batch > 1 else 2,
                                   rounds=max(3, rounds - (2 if batch > 1 else 0)))
            ours_ips = batch / res["ours"]["median"]
            tv_ips = batch / res["torchvision"]["median"] if tv is not None else None
            peak = peak_flop / res["peak"]["median"] / 1e9
            peaks.setdefault(precision, []).append(peak)
            floor = 1.3 if precision == "fp32" else 1.4
            tv_note = "torchvision bf16 autocast" if precision == "bf16" else "torchvision fp32"
            rows.append(common.row(
                SECTION, f"forward {precision} (model.predict)", ours_ips, "img/s",
                theirs=tv_ips, floor=floor if tv is not None else None, batch=batch,
                note=f"vs {tv_note}, backbone+head"))
            pob_ips = batch / res["ours_on_batch"]["median"]
            rows.append(common.row(
                SECTION, f"forward {precision} (model.predict_on_batch)", pob_ips, "img/s",
                theirs=tv_ips, batch=batch,
                note="same model without predict()'s per-call data-adapter overhead"))
            share = ours_ips * gflop / peak
            note = f"{100 * share:.0f}% of {peak:.0f} GFLOP/s measured in the same rounds"
            if "direct" in res:
                direct_ips = batch / res["direct"]["median"]
                rows.append(common.row(
                    SECTION, "forward fp32 Winograd vs direct convolutions", ours_ips,
                    "img/s", theirs=direct_ips, batch=batch,
                    note="theirs = prepare_for_inference(model, winograd=False); "
                         f"direct reaches {100 * direct_ips * gflop / peak:.0f}% of peak"))
                note += "; counted as direct-convolution FLOPs (Winograd does fewer)"
            rows.append(common.row(
                SECTION, f"forward {precision} share of {precision} matmul peak",
                ours_ips * gflop, "GFLOP/s", ratio_value=share,
                floor=0.85 if precision == "fp32" else None, batch=batch,
                note=note))
    for precision, values in peaks.items():
        rows.insert(0, common.row(SECTION, f"matmul peak {precision} (4096^2 tf.matmul)",
                                  float(np.median(values)), "GFLOP/s",
                                  note="median over the forward runs"))
    if include_xla:
        batch = 1
        xla = prepare_for_inference(net32, jit_compile=True, decode=False)
        res = common.alternate({"default": ours_on_batch_fn(ours32, batch),
                                "xla": ours_on_batch_fn(xla, batch)},
                               warmup=2, rounds=3 if quick else 5)
        default_ips = batch / res["default"]["median"]
        xla_ips = batch / res["xla"]["median"]
        rows.append(common.row(
            SECTION, "forward fp32 jit_compile=True (XLA)", xla_ips, "img/s",
            theirs=default_ips, batch=batch,
            note="predict_on_batch; theirs = our default (jit_compile=False); "
                 "ratio <1 = XLA slower"))
        del xla
    return rows
