"""The installed package: version, public API, lazy imports for the CLI."""

import ast
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import keras_ssd

ROOT = Path(__file__).resolve().parents[1]


def run_python(code, **env):
    full_env = dict(os.environ, **env)
    full_env.pop("KERAS_SSD_LAZY_IMPORTS", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_version_is_the_one_setup_py_publishes():
    text = (ROOT / "keras_ssd" / "version.py").read_text()
    assert keras_ssd.__version__ == re.search(r'"([^"]+)"', text).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_ssd.__version__)


@pytest.mark.parametrize("name", sorted(keras_ssd._KERAS_API))
def test_every_public_name_resolves(name):
    assert getattr(keras_ssd, name) is not None
    assert name in dir(keras_ssd)


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'SSD301'"):
        keras_ssd.SSD301  # noqa: B018


def test_lazy_mode_imports_no_tensorflow_until_needed():
    proc = run_python(
        "import sys, keras_ssd\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "keras_ssd.generate_anchors(keras_ssd.SSDConfig.ssd300(20))\n"
        "assert 'keras' not in sys.modules\n"
        "m = keras_ssd.SSDTiny(num_classes=2)\n"
        "print(type(m).__name__, m.output.shape)\n",
        KERAS_SSD_LAZY_IMPORTS="1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "SSD (None, 2390, 7)" in proc.stdout


def test_plain_import_registers_classes_for_keras_load_model(tmp_path):
    path = tmp_path / "tiny.keras"
    proc = run_python(
        "import keras_ssd\n"
        f"keras_ssd.SSDTiny(num_classes=2, class_names=['a', 'b']).save({str(path)!r})\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_python(
        "import keras, keras_ssd\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        "print(m.class_names, m.config.num_anchors)\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['a', 'b'] 2390" in proc.stdout


def _console_script():
    beside = Path(sys.executable).parent / "keras-ssd"
    return str(beside) if beside.exists() else shutil.which("keras-ssd")


@pytest.mark.skipif(_console_script() is None, reason="console script not installed")
def test_console_script_help_is_quick_and_quiet():
    script = _console_script()
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stderr == ""  # TensorFlow was not even imported
    for command in ("train", "evaluate", "predict", "demo", "export"):
        assert command in proc.stdout
    proc = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == f"keras-ssd {keras_ssd.__version__}"


def test_the_distribution_installs_only_the_keras_ssd_package():
    # The command line lives in keras_ssd.cli: no module beside the package.
    setup_call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                      if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    assert "py_modules" not in {keyword.arg for keyword in setup_call.keywords}
    dist = importlib.metadata.distribution("keras-ssd")
    assert (dist.read_text("top_level.txt") or "").split() == ["keras_ssd"]
    scripts = [(e.name, e.value) for e in dist.entry_points if e.group == "console_scripts"]
    assert scripts == [("keras-ssd", "keras_ssd.cli:main")]
    assert importlib.util.find_spec("_keras_ssd_cli") is None
