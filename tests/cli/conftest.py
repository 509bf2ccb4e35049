"""Fixtures of the command-line tests: run `main` in-process, check one-line
errors, and a saved tiny model (`synthetic_voc` comes from tests/conftest.py)."""

import pytest

from keras_ssd.cli import main


def _assert_one_line_error(code, err, *fragments, status=None):
    assert code != 0
    if status is not None:
        assert code == status
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """Run each command-line test in its own folder: `train`, `evaluate` and
    `predict` write to ./runs/... by default."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def run_cli(capsys):
    """`run_cli(*argv) -> (exit status, stdout, stderr)` of `keras-ssd ARGV`."""

    def run(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def assert_one_line_error():
    """`assert_one_line_error(code, err, *fragments, status=None)`: the command
    failed (with `status`) and printed one error line holding `fragments`."""
    return _assert_one_line_error


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """An untrained `SSDTiny` for the synthetic classes, saved as `.keras`."""
    import keras

    from keras_ssd.data import SYNTHETIC_CLASSES
    from keras_ssd.models import SSDTiny

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    SSDTiny(class_names=list(SYNTHETIC_CLASSES)).save(path)
    return str(path)


@pytest.fixture
def fake_training(monkeypatch):
    """Replace train_detector: record the model and options it gets, train nothing."""
    import keras

    import keras_ssd.training.fit as fit

    calls = []

    def record(model, train_dataset, **kwargs):
        calls.append(dict(kwargs, model=model))
        history = keras.callbacks.History()
        history.history = {"loss": [1.0]}
        return history

    monkeypatch.setattr(fit, "train_detector", record)
    return calls


@pytest.fixture
def probed_speed(monkeypatch):
    """Replace the training-speed probe of a time-limited run: it reports
    `probed_speed.speed` img/s (default: fast enough to keep every default)
    and records `(input shape, batch)` in `probed_speed.calls`."""
    import types

    from keras_ssd.training import speed_probe

    state = types.SimpleNamespace(speed=1e6, calls=[])

    def probe(model, batch_size, **kwargs):
        state.calls.append((model.input_shape, batch_size))
        return state.speed

    monkeypatch.setattr(speed_probe, "measure_training_speed", probe)
    return state
