"""The `keras-ssd` parser, the dispatch to a subcommand, and one-line errors.

Errors a user can fix (bad arguments, bad data, a file that is not a
keras-ssd model) are printed as one line, `keras-ssd <command>: error:
<what>`, with exit status 2 (usage) or 1 (everything else); set
`KERAS_SSD_TRACEBACK=1` to see the full traceback instead.
"""

import argparse
import os
import sys

from keras_ssd.cli import anchors, convert, demo, evaluate, export, predict, train
from keras_ssd.cli.args import CLIError
from keras_ssd.version import __version__

#: `(name, help, add_arguments, run)` of every subcommand, in `--help` order.
#: `add_arguments(subparser)` declares the options; `run(args)` returns the
#: exit status.
SUBCOMMANDS = [
    (module.__name__.rpartition(".")[2], module.HELP, module.add_arguments, module.run)
    for module in (train, evaluate, predict, anchors, demo, export, convert)
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ssd",
        description="SSD object detection for Keras 3: train, evaluate, predict, demo.",
        epilog="Run `keras-ssd COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"keras-ssd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(p)
        p.set_defaults(_run=run)
    return parser


def _error(command, message):
    prefix = f"keras-ssd {command}" if command else "keras-ssd"
    message = " ".join(str(message).split())
    print(f"{prefix}: error: {message}", file=sys.stderr)


def main(argv=None):
    """Entry point of `keras-ssd`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    show_traceback = os.environ.get("KERAS_SSD_TRACEBACK", "").lower() in ("1", "true", "yes")
    try:
        return int(args._run(args) or 0)
    except CLIError as e:
        if show_traceback:
            raise
        _error(args.command, e)
        return e.status
    except (ValueError, OSError) as e:
        # Bad data or files found past the argument checks (keras_ssd raises
        # ValueError / DataError naming the file and the problem).
        if show_traceback:
            raise
        _error(args.command, e)
        return 1
    except KeyboardInterrupt:
        _error(args.command, "interrupted")
        return 130
