"""`keras-ssd` itself: the parser, the subcommand table, one-line errors, and
a start that does not import TensorFlow for `--help` or argument errors."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keras_ssd.cli import SUBCOMMANDS, main

TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
    r"To enable the following instructions)"
)


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "demo"):
        assert command in out


@pytest.mark.parametrize("command, options", [
    ("train", ["--data", "--split", "--val-data", "--val-split", "--classes", "--model",
               "--backbone-weights", "--epochs", "--batch-size", "--lr", "--checkpoint-dir",
               "--resume", "--workers", "--seed", "--weight-decay", "--warmup-epochs"]),
    ("evaluate", ["--data", "--split", "--model-file", "--use-07-metric",
                  "--no-use-07-metric", "--json"]),
    ("predict", ["--model-file", "SOURCE", "--out", "--threshold", "--timeout"]),
    ("demo", ["--out"]),
])
def test_subcommand_help_documents_its_options(capsys, command, options):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out, f"{command} --help lacks {option}"


def test_no_command_prints_help_and_succeeds(run_cli):
    code, out, _ = run_cli()
    assert code == 0 and "usage: keras-ssd" in out


def test_bad_arguments_from_the_installed_command_give_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_ssd", "evaluate", "--data", str(tmp_path / "nope"),
         "--model-file", "m.keras"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    # TensorFlow's own start-up log lines (absl/C++ logging) are not ours.
    ours = [line for line in proc.stderr.splitlines()
            if line.strip() and not TF_LOG_LINE.match(line)]
    assert ours == [f"keras-ssd evaluate: error: --data: folder not found: {tmp_path / 'nope'}"]


def test_subcommands_are_one_module_each_in_help_order():
    import keras_ssd.cli

    assert [entry[0] for entry in SUBCOMMANDS] == [
        "train", "evaluate", "predict", "anchors", "demo", "export", "convert", "benchmark"]
    for name, help_text, add_arguments, run in SUBCOMMANDS:
        module = getattr(keras_ssd.cli, name)
        assert module.__name__ == f"keras_ssd.cli.{name}"
        assert (help_text, add_arguments, run) == (module.HELP, module.add_arguments,
                                                   module.run)


# ------------------------------------------ a start without TensorFlow
def _environment(**changes):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **changes)
    env.pop("KERAS_SSD_LAZY_IMPORTS", None)
    env.update(changes)
    return env


def _top_level_imports(stderr):
    """Top-level module names of a `-X importtime` trace."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in stderr.splitlines() if line.startswith("import time:")}


def _console_script():
    beside = Path(sys.executable).parent / "keras-ssd"
    return str(beside) if beside.exists() else shutil.which("keras-ssd")


def _start(command, *argv, **env):
    """Run `keras-ssd ARGV` (the console script, or `python -m keras_ssd`)
    with an import trace: (process, top-level modules it imported)."""
    if command == "script":
        if _console_script() is None:
            pytest.skip("console script not installed")
        cmd = [_console_script()]
    else:
        cmd = [sys.executable, "-m", "keras_ssd"]
    proc = subprocess.run(cmd + list(argv), capture_output=True, text=True, timeout=300,
                          env=_environment(PYTHONPROFILEIMPORTTIME="1", **env))
    return proc, _top_level_imports(proc.stderr)


@pytest.mark.parametrize("command", ["script", "module"])
def test_help_does_not_import_tensorflow(command):
    proc, imported = _start(command, "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "keras_ssd" in imported  # the trace is there
    assert "tensorflow" not in imported and "keras" not in imported
    for name, _, _, _ in SUBCOMMANDS:
        assert name in proc.stdout
    proc, imported = _start(command, "export", "--help")
    assert proc.returncode == 0 and "--format" in proc.stdout
    assert "tensorflow" not in imported and "keras" not in imported


@pytest.mark.parametrize("command", ["script", "module"])
def test_argument_errors_do_not_import_tensorflow(command, tmp_path):
    proc, imported = _start(command, "evaluate", "--data", str(tmp_path / "nope"),
                            "--model-file", "m.keras")
    assert proc.returncode == 2
    assert f"keras-ssd evaluate: error: --data: folder not found: {tmp_path / 'nope'}" \
        in proc.stderr
    proc2, imported2 = _start(command, "train", "--data", str(tmp_path), "--epochs", "0")
    assert proc2.returncode == 2 and "expected a positive integer" in proc2.stderr
    for modules in (imported, imported2):
        assert "keras_ssd" in modules
        assert "tensorflow" not in modules and "keras" not in modules


def test_lazy_imports_setting_still_wins_over_the_command_line():
    # KERAS_SSD_LAZY_IMPORTS=0 asks for the plain import even from the CLI.
    proc, imported = _start("module", "--help", KERAS_SSD_LAZY_IMPORTS="0")
    assert proc.returncode == 0
    assert "keras" in imported
