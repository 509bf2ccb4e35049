"""The benchmark suite runs as `python -m benchmarks.run` and writes its
results outside the source tree by default."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_the_suite_runs_as_a_module_and_writes_outside_the_tree(tmp_path):
    out = _run("-m", "benchmarks.run", "--help", env={"XDG_CACHE_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "--only" in out.stdout and "--out" in out.stdout
    expected = tmp_path / "keras_ssd" / "benchmarks"
    assert str(expected) in out.stdout.replace("\n", "").replace(" ", "")  # argparse wraps
    code = ("from benchmarks import common; import os; print(common.results_dir())")
    default = pathlib.Path(_run("-c", code).stdout.strip())
    assert ROOT not in default.parents and default != ROOT
    chosen = _run("-c", code, env={"KERAS_SSD_BENCHMARKS_DIR": str(tmp_path / "b")})
    assert chosen.stdout.strip() == str(tmp_path / "b")


def test_running_the_file_as_a_script_says_how_to_run_it():
    out = _run("benchmarks/run.py", "--help")
    assert out.returncode != 0
    assert "python -m benchmarks.run" in out.stderr
