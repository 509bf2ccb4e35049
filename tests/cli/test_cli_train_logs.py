"""`keras-ssd train` leaves its run's logs in --checkpoint-dir (history.csv,
training.png, TensorBoard when installed); --no-logs turns them off."""

import csv
import os

import pytest


def _run(run_cli, synthetic_voc, ckpt, *options):
    return run_cli("train", "--data", synthetic_voc, "--model", "tiny", "--workers", "0",
                   "--classes", os.path.join(synthetic_voc, "labels.txt"),
                   "--batch-size", "6", "--checkpoint-dir", str(ckpt), *options)


def test_train_writes_the_history_csv_and_plot_beside_the_checkpoints(
        run_cli, synthetic_voc, tmp_path):
    ckpt = tmp_path / "ckpt"
    code, out, err = _run(run_cli, synthetic_voc, ckpt, "--epochs", "1", "--no-augment")
    assert code == 0, err
    assert "conf_loss" in out and "loc_loss" in out  # the progress bar shows the parts
    with open(ckpt / "history.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert float(row["conf_loss"]) + float(row["loc_loss"]) == pytest.approx(
        float(row["loss"]), rel=1e-5)
    pytest.importorskip("matplotlib")
    assert (ckpt / "training.png").is_file()


def test_train_no_logs_asks_train_detector_for_none(run_cli, synthetic_voc, tmp_path,
                                                     fake_training):
    calls = fake_training
    code, _, err = _run(run_cli, synthetic_voc, tmp_path / "a")
    assert code == 0, err
    assert not {"log_dir", "csv", "plot"} & set(calls[-1])  # train_detector's defaults
    code, _, err = _run(run_cli, synthetic_voc, tmp_path / "b", "--no-logs")
    assert code == 0, err
    last = calls[-1]
    assert (last["log_dir"], last["csv"], last["plot"]) == (False, False, False)
