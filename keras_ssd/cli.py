"""The `keras-ssd` command line."""

import argparse
import sys

from keras_ssd.version import __version__


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ssd",
        description="SSD object detection for Keras 3: train, evaluate, predict, demo.",
    )
    parser.add_argument("--version", action="version", version=f"keras-ssd {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
