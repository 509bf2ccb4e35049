"""The pretrained presets' networks side by side: parameters, multiply-adds
and CPU latency at batch 1 (one image at the network's input size to final
detections, decode and NMS with each source's settings included), timed
alternately in one run, median of `--rounds`.

Latency does not depend on the weights, so each network is built with
random weights (the checkpoints are not downloaded); its decoder uses the
preset's `decode` options, as the converted model would.

Run from the repository root:

    python -m benchmarks.zoo [--threads 1] [--rounds 10] [--presets NAME ...] [--out DIR]

Results: a table on stdout and `zoo.json` in --out (default
`~/.cache/keras_ssd/benchmarks/zoo`).
"""

import argparse
import json
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if not __package__:
    raise SystemExit("run the benchmarks from the repository root as a module: "
                     "python -m benchmarks.zoo")

from benchmarks import common  # noqa: E402

SECTION = "zoo"
#: preset -> number of object classes of its published checkpoint.
NETWORKS = {"ssdlite320_coco": 90, "ssdlite320_mobilenet_v2_voc": 20, "ssd300_coco": 90,
            "ssd300_voc": 20, "ssd512_voc": 20}


def multiply_adds(model):
    """Multiply-adds of every (depthwise) convolution at the model's input size."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, c = layer.output.shape[1:]
            k = layer.kernel_size
            total += h * w * c * k[0] * k[1] * layer.input.shape[-1]
    return int(total)


def run(out, threads=1, rounds=10, verbose=1, names=None):
    """Time the networks of `names` (default all of `NETWORKS`) alternately."""
    common.set_threads(threads, with_torch=False)
    from keras_ssd import presets
    from keras_ssd.models.builders import get_builder

    rng = np.random.default_rng(0)
    sides, facts = {}, {}
    for name in names or NETWORKS:
        classes = NETWORKS[name]
        preset = presets.get_pretrained(name)
        model = get_builder(preset.architecture)(num_classes=classes)
        model.prediction_decoder = model.prediction_decoder.replace(**preset.decode)
        size = model.config.image_shape
        image = rng.uniform(0, 255, (1, *size, 3)).astype("float32")
        sides[name] = (lambda m=model, x=image: m.predict_on_batch(x))
        facts[name] = {
            "architecture": preset.architecture,
            "parameters": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
            "multiply_adds": multiply_adds(model),
            "input": list(size),
        }
    timing = common.alternate(sides, warmup=1, rounds=rounds)
    for name in facts:
        facts[name]["latency_ms"] = 1000 * timing[name]["median"]
    result = {"machine": common.machine_info(), "threads": threads, "presets": facts}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    if verbose:
        print(f"CPU: {result['machine']['cpu']} ({result['machine']['cpu_kind']}), load "
              f"{result['machine']['load_average']}, {threads} thread(s)")
        for name, f in facts.items():
            print(f"  {name:18s} {f['parameters'] / 1e6:6.2f} M params "
                  f"{f['multiply_adds'] / 1e9:7.2f} G MACs {f['latency_ms']:9.1f} ms")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(common.results_dir(), SECTION))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--presets", nargs="+", choices=list(NETWORKS), default=None,
                        help="time only these (default: all)")
    args = parser.parse_args(argv)
    run(args.out, threads=args.threads, rounds=args.rounds, names=args.presets)


if __name__ == "__main__":
    main()
