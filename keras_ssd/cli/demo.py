"""`keras-ssd demo`: synthetic data -> a tiny SSD -> mAP -> annotated images."""

from keras_ssd.cli.args import _positive_int, _quiet_tensorflow, _require_out_folder

HELP = ("synthetic data -> train a tiny SSD -> evaluate -> annotated images "
        "(3 to 5 minutes on 2 CPU cores)")


def add_arguments(p):
    p.add_argument("--out", default="keras_ssd_demo", metavar="DIR",
                   help="output folder (default: ./keras_ssd_demo)")
    p.add_argument("--epochs", type=_positive_int, default=None,
                   help="override the demo's number of epochs (fewer = faster, worse)")
    p.add_argument("--train-images", type=_positive_int, default=None, metavar="N",
                   help="override the number of synthetic training images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args):
    _require_out_folder(args.out)
    _quiet_tensorflow()
    from keras_ssd.demo import run_demo

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.train_images is not None:
        overrides["num_train"] = args.train_images
    run_demo(args.out, seed=args.seed, verbose=1, **overrides)
    return 0
