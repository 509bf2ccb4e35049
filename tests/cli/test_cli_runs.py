"""Run folders of `keras-ssd train`: fresh folders, the lock, args.yaml and
--config, the dataset summary, labels.txt beside a VOC folder, the hints."""

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from keras_ssd.runs import (RunLock, RunLockedError, make_run_dir, next_run_dir,
                            read_run_args)


def _train(run_cli, data, project, *options):
    return run_cli("train", "--data", data, "--model", "tiny", "--workers", "0",
                   "--project", str(project), *options)


def test_next_run_dir_counts_up_from_the_bare_name(tmp_path):
    assert next_run_dir(tmp_path, "train") == str(tmp_path / "train")
    assert make_run_dir(tmp_path, "train") == str(tmp_path / "train")
    assert make_run_dir(tmp_path, "train") == str(tmp_path / "train2")
    assert make_run_dir(tmp_path, "train") == str(tmp_path / "train3")
    assert next_run_dir(tmp_path, "evaluate") == str(tmp_path / "evaluate")


def test_second_training_run_writes_beside_the_first(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, out, err = _train(run_cli, synthetic_voc, tmp_path / "runs")
    assert code == 0, err
    code, out2, err = _train(run_cli, synthetic_voc, tmp_path / "runs", "--epochs", "3")
    assert code == 0, err
    assert f"run folder: {tmp_path / 'runs' / 'train'}\n" in out
    assert f"run folder: {tmp_path / 'runs' / 'train2'}\n" in out2
    assert [c["checkpoint_dir"] for c in fake_training] == [
        str(tmp_path / "runs" / "train"), str(tmp_path / "runs" / "train2")]
    first = yaml.safe_load((tmp_path / "runs" / "train" / "args.yaml").read_text())
    second = yaml.safe_load((tmp_path / "runs" / "train2" / "args.yaml").read_text())
    assert first["args"]["epochs"] is None and second["args"]["epochs"] == 3
    assert first["recipe"]["optimizer"] == "adamw" and "keras" in first["versions"]
    assert first["dataset"]["train"]["images"] == 12
    assert not (tmp_path / "runs" / "train" / ".lock").exists()  # released at the end


def test_checkpoint_dir_holding_a_run_needs_resume_or_exist_ok(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path, fake_training):
    folder = tmp_path / "mine"
    code, _, err = _train(run_cli, synthetic_voc, tmp_path, "--checkpoint-dir", str(folder))
    assert code == 0, err
    code, _, err = _train(run_cli, synthetic_voc, tmp_path, "--checkpoint-dir", str(folder))
    assert_one_line_error(code, err, "holds another run's files", "args.yaml", "--resume",
                          "--exist-ok", status=2)
    assert len(fake_training) == 1
    code, _, err = _train(run_cli, synthetic_voc, tmp_path, "--checkpoint-dir", str(folder),
                          "--exist-ok")
    assert code == 0, err
    assert len(fake_training) == 2


def test_run_folder_locked_by_another_process_names_its_pid(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path, fake_training):
    folder = tmp_path / "busy"
    script = textwrap.dedent(f"""
        import sys, time
        from keras_ssd.runs import RunLock
        with RunLock({str(folder)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = _train(run_cli, synthetic_voc, tmp_path, "--checkpoint-dir",
                              str(folder), "--exist-ok")
        assert_one_line_error(code, err, f"in use by process {holder.pid}", str(folder),
                              status=1)
        assert fake_training == []
        with pytest.raises(RunLockedError, match=str(holder.pid)):
            RunLock(folder).acquire()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    with RunLock(folder):  # free again once the holder has gone
        assert (folder / ".lock").read_text().strip() == str(os.getpid())


def test_config_repeats_a_run_and_the_command_line_wins(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, _, err = _train(run_cli, synthetic_voc, tmp_path / "runs", "--epochs", "7",
                          "--lr", "0.002", "--seed", "5", "--no-augment")
    assert code == 0, err
    config = tmp_path / "runs" / "train" / "args.yaml"
    assert read_run_args(config)["lr"] == 0.002
    code, out, err = run_cli("train", "--config", str(config), "--seed", "6")
    assert code == 0, err
    first, again = fake_training
    assert again["checkpoint_dir"] == str(tmp_path / "runs" / "train2")
    assert again["recipe"] == first["recipe"] and again["epochs"] == first["epochs"] == 7
    assert again["augment"] is False and again["seed"] == 6 and first["seed"] == 5
    assert again["model"].config.names == first["model"].config.names


def test_config_that_is_not_an_args_file_is_one_line(
        run_cli, assert_one_line_error, tmp_path):
    bad = tmp_path / "args.yaml"
    bad.write_text("just: text\n")
    code, _, err = run_cli("train", "--config", str(bad))
    assert_one_line_error(code, err, str(bad), "no 'args' mapping", status=2)
    bad.write_text("args: {data: [x], rocket: 1}\n")
    code, _, err = run_cli("train", "--config", str(bad))
    assert_one_line_error(code, err, "unknown options rocket", status=2)
    code, _, err = run_cli("train", "--config", str(tmp_path / "nope.yaml"))
    assert_one_line_error(code, err, "--config: file not found", status=2)


def test_training_start_prints_the_dataset_summary_and_uses_labels_txt(
        run_cli, synthetic_voc, tmp_path, fake_training):
    code, out, err = _train(run_cli, synthetic_voc, tmp_path / "runs", "--val-data",
                            synthetic_voc, "--early-stopping", "3")
    assert code == 0, err
    assert f"classes: {os.path.join(synthetic_voc, 'labels.txt')}" in out
    assert "train: 12 images (trainval)" in out and "val: 4 images (test)" in out
    assert "objects per class: circle" in out and "object size" in out
    (call,) = fake_training
    assert list(call["model"].config.names) == ["circle", "square", "triangle", "cross"]
    (stop,) = call["callbacks"]
    assert stop.monitor == "val_mAP" and stop.patience == 3 and stop.mode == "max"
    # the hint names the validation data the run used
    assert f"next: keras-ssd evaluate --data {synthetic_voc} --split test" in out


def test_hint_names_a_split_the_yolo_data_has(run_cli, tmp_path, fake_training):
    from keras_ssd.data import make_synthetic_voc, load_dataset
    from keras_ssd.data.yolo import write_yolo

    voc = tmp_path / "voc"
    make_synthetic_voc(voc, num_trainval=4, num_test=2, image_size=96, seed=1)
    yolo = tmp_path / "yolo"
    write_yolo(load_dataset(str(voc), split="trainval", class_names=(
        (voc / "labels.txt").read_text().split())), str(yolo), split="train")
    code, out, err = _train(run_cli, str(yolo), tmp_path / "runs")
    assert code == 0, err
    assert "--split test" not in out
    assert "(data.yaml names no val or test split)" in out


def test_resume_without_a_folder_finds_the_newest_run_or_says_there_is_none(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path):
    from keras_ssd.cli.train import _newest_run

    code, _, err = _train(run_cli, synthetic_voc, tmp_path / "runs", "--resume")
    assert_one_line_error(code, err, "--resume: no run folder", "train*", status=2)
    for name, age in (("train", 30), ("train2", 10), ("train3", 20), ("trainer", 0)):
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "latest.keras").write_bytes(b"x")
        os.utime(folder / "latest.keras", (1e9 - age, 1e9 - age))
    # the newest latest.keras among runs/train, runs/train2, ... ("trainer" is
    # another name's folder)
    assert _newest_run(str(tmp_path / "runs"), "train") == str(tmp_path / "runs" / "train2")
