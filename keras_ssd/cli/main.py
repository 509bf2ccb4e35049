"""The `keras-ssd` parser, the dispatch to a subcommand, and one-line errors.

Errors a user can fix (bad arguments, bad data, a file that is not a
keras-ssd model) are printed as one line, `keras-ssd <command>: error:
<what>`, with exit status 2 (usage) or 1 (everything else); set
`KERAS_SSD_TRACEBACK=1` to see the full traceback instead. The line quotes
at most `MAX_ERROR_CHARS` characters of the message (its start and its end):
an error from deep inside a framework can embed a whole tensor.

A subcommand that sets `args.hard_exit_on_error = True` (`train
--distribute multi-worker`) leaves the process with `os._exit` after any
error: the collective ops and coordination threads of a multi-worker run
can otherwise keep a failed worker alive at interpreter shutdown.
"""

import argparse
import os
import sys

from keras_ssd.cli import (anchors, benchmark, convert, demo, evaluate, export, predict,
                           train)
from keras_ssd.cli.args import CLIError
from keras_ssd.version import __version__

#: `(name, help, add_arguments, run)` of every subcommand, in `--help` order.
#: `add_arguments(subparser)` declares the options; `run(args)` returns the
#: exit status.
SUBCOMMANDS = [
    (module.__name__.rpartition(".")[2], module.HELP, module.add_arguments, module.run)
    for module in (train, evaluate, predict, anchors, demo, export, convert, benchmark)
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ssd",
        description="SSD object detection for Keras 3: train, evaluate, predict, anchors, "
                    "demo, export, convert, benchmark.",
        epilog="Run `keras-ssd COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"keras-ssd {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(p)
        # After the command too (`keras-ssd train --verbose ...`); SUPPRESS
        # keeps a `--verbose` given before the command.
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                       help=VERBOSE_HELP)
        p.set_defaults(_run=run)
    return parser


VERBOSE_HELP = ("show TensorFlow's, absl's and CUDA's start-up logs (hidden by default) "
                "and full Keras progress")

#: The most characters of an error message the one-line error quotes.
MAX_ERROR_CHARS = 500


def shorten_message(message, limit=MAX_ERROR_CHARS):
    """`message` on one line, at most `limit` characters: its start and end
    with the number of characters cut in between."""
    message = " ".join(str(message).split())
    if len(message) <= limit:
        return message
    tail = limit // 4
    cut = len(message) - limit
    marker = f" ...[{cut:,} characters cut]... "
    head = max(0, limit - tail - len(marker))
    return message[:head] + marker + message[len(message) - tail:]


def _error(command, message):
    prefix = f"keras-ssd {command}" if command else "keras-ssd"
    print(f"{prefix}: error: {shorten_message(message)}", file=sys.stderr)


def _hard_exit(status):
    """Leave now with `status`, skipping interpreter shutdown (threads,
    atexit handlers), after flushing what was printed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def main(argv=None):
    """Entry point of `keras-ssd`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from keras_ssd.cli.quiet import set_verbose

    set_verbose(getattr(args, "verbose", False))
    reparse = getattr(args, "_reparse", None)
    if reparse is not None:  # e.g. `train --config args.yaml`: its values as defaults
        try:
            args = reparse(parser, argv, args)
        except CLIError as e:
            _error(args.command, e)
            return e.status
    show_traceback = os.environ.get("KERAS_SSD_TRACEBACK", "").lower() in ("1", "true", "yes")
    try:
        status = _dispatch(args, show_traceback)
    except BaseException as e:
        if not getattr(args, "hard_exit_on_error", False):
            raise
        if isinstance(e, SystemExit):
            _hard_exit(e.code if isinstance(e.code, int) else 1)
        import traceback

        traceback.print_exc()
        _hard_exit(1)
    if status and getattr(args, "hard_exit_on_error", False):
        _hard_exit(status)
    return status


def _dispatch(args, show_traceback):
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
    except Exception as e:
        if show_traceback or not getattr(args, "hard_exit_on_error", False):
            raise
        # e.g. a multi-worker run whose peer died (tf.errors.UnavailableError)
        _error(args.command, f"{type(e).__name__}: {e}")
        return 1
