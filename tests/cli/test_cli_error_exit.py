"""The CLI's one-line error quotes a bounded part of the message, and a
subcommand that asks for it (`train --distribute multi-worker`) leaves the
process at once after an error, whatever threads are still running."""

import importlib
import subprocess
import sys
import textwrap

import pytest

# the module (the package's `main` attribute is the function)
cli_main = importlib.import_module("keras_ssd.cli.main")


def test_long_message_keeps_its_start_and_end_within_the_limit():
    pixels = "[123., 117., 104.], " * 2000
    message = ("Attempt to convert a value (PerReplica:{ 0: " + pixels
               + "}) with an unsupported type to a Tensor.")
    short = cli_main.shorten_message(message)
    assert len(short) <= cli_main.MAX_ERROR_CHARS
    assert short.startswith("Attempt to convert a value (PerReplica:{ 0: [123.")
    assert short.endswith("with an unsupported type to a Tensor.")
    cut = len(message) - cli_main.MAX_ERROR_CHARS
    assert f"...[{cut:,} characters cut]..." in short


def test_short_message_is_only_put_on_one_line():
    assert cli_main.shorten_message("bad\n  file:\tx.jpg") == "bad file: x.jpg"
    exact = "y" * cli_main.MAX_ERROR_CHARS
    assert cli_main.shorten_message(exact) == exact


def test_error_line_is_bounded(capsys):
    cli_main._error("train", "z" * 100_000)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert len(err) < cli_main.MAX_ERROR_CHARS + 40


# A subcommand that fails while a non-daemon thread (like a collective-ops or
# data-loading thread) still runs: without the hard exit, interpreter
# shutdown would wait for that thread forever.
_SCRIPT = textwrap.dedent("""
    import importlib, sys, threading, time
    m = importlib.import_module("keras_ssd.cli.main")

    def add_arguments(p):
        pass

    def run(args):
        args.hard_exit_on_error = sys.argv[1] == "hard"
        threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()
        raise RuntimeError("collective failed: " + "tensor " * 5000)

    m.SUBCOMMANDS = [("boom", "fail", add_arguments, run)]
    sys.exit(m.main(["boom"]))
""")


def _run(mode, timeout):
    return subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True,
                          text=True, timeout=timeout)


def test_failed_run_with_hard_exit_leaves_at_once_with_status_1():
    done = _run("hard", timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("keras-ssd boom: error: RuntimeError: collective failed: ")
    assert len(lines[-1]) < cli_main.MAX_ERROR_CHARS + 40
    assert "characters cut" in lines[-1]


def test_without_hard_exit_the_same_failure_hangs_at_shutdown():
    # the control: the thread really does keep an ordinary exit waiting
    with pytest.raises(subprocess.TimeoutExpired):
        _run("soft", timeout=4)
