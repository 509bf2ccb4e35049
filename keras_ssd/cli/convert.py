"""`keras-ssd convert`: a PyTorch SSD checkpoint (`.pth`) -> a keras-ssd
`.keras` model, offline and without torch; or a pretrained preset by name
(downloaded once into the cache)."""

import os

from keras_ssd import presets
from keras_ssd.cli.args import (
    CLIError, _quiet_tensorflow, add_preset_argument, require_preset,
)

HELP = "convert a PyTorch SSD checkpoint (.pth) or a pretrained preset to .keras"

#: `--source` choices: the converters of `keras_ssd.models.convert.SOURCES`.
SOURCE_CHOICES = ("auto",) + presets.SOURCE_NAMES


def add_arguments(p):
    p.add_argument("checkpoint", nargs="?", metavar="FILE.pth",
                   help="the checkpoint: torchvision's ssd300_vgg16_coco-b556d3b4.pth, "
                        "amdegroot's ssd300_mAP_77.43_v2.pth, lufficc's "
                        "vgg_ssd300_voc0712.pth or torchvision's "
                        "ssdlite320_mobilenet_v3_large_coco-a79551df.pth (read without "
                        "running anything from it)")
    add_preset_argument(p,
                   help="instead of FILE: a pretrained preset, downloaded once into the "
                        "cache (SHA-256 checked) and converted")
    p.add_argument("--source", choices=SOURCE_CHOICES, default="auto",
                   help="the code that wrote FILE (default: auto, told from its keys)")
    p.add_argument("--out", metavar="X.keras",
                   help="the .keras file to write (default: FILE's name with .keras, "
                        "or PRESET.keras, in the current folder)")


def _check(args):
    if (args.checkpoint is None) == (args.preset is None):
        raise CLIError("give a checkpoint FILE.pth or --preset NAME (one of them)", status=2)
    if args.preset is not None:
        require_preset(args.preset)
        if args.source != "auto":
            raise CLIError("--source goes with a FILE; a --preset knows its source", status=2)
    else:
        if not os.path.exists(args.checkpoint):
            raise CLIError(f"checkpoint not found: {args.checkpoint}", status=2)
        if os.path.isdir(args.checkpoint):
            raise CLIError(f"{args.checkpoint} is a folder, not a .pth checkpoint", status=2)
    out = args.out
    if out is None:
        stem = (presets.get_pretrained(args.preset).name if args.preset
                else os.path.splitext(os.path.basename(args.checkpoint))[0])
        out = f"{stem}.keras"
    if not out.endswith(".keras"):
        raise CLIError(f"--out {out}: the file name must end in .keras", status=2)
    if os.path.isdir(out):
        raise CLIError(f"--out {out} is a folder", status=2)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise CLIError(f"--out {out}: folder not found: {folder}", status=2)
    return out


def run(args):
    out = _check(args)
    _quiet_tensorflow()
    if args.preset is not None:
        from keras_ssd.models.pretrained import load_pretrained

        model = load_pretrained(args.preset)
        where = f"preset {args.preset}"
    else:
        from keras_ssd.models.convert import convert_checkpoint

        model = convert_checkpoint(args.checkpoint, source=args.source)
        where = args.checkpoint
    model.save(out)
    config = model.config
    names = [n for n in config.names if not n.startswith("N/A")]
    print(f"converted {where}: {model.count_params():,} parameters, "
          f"{config.num_anchors} priors (clip {config.clip}), {len(names)} classes "
          f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
    print(f"wrote {out}")
    print(f"next: keras-ssd predict --model-file {out} IMAGE --out predictions")
    return 0
