"""`--on-error {raise,skip}` of `keras-ssd train` and `evaluate`: bad data
stops the command with one line naming the file (the default), or is left
out, counted and logged with skip (`synthetic_voc` with one broken
annotation and one corrupt image)."""

import json
import os
import shutil

import pytest


def _skips(caplog):
    """The reader's warnings (at the command line they go to stderr)."""
    return [r.getMessage() for r in caplog.records
            if r.name == "keras_ssd.data" and "skipped" in r.getMessage()]


@pytest.fixture
def broken_voc(synthetic_voc, tmp_path):
    """A copy of `synthetic_voc` whose first trainval annotation is not XML and
    whose first test image is not a JPEG; returns (root, bad xml, bad image)."""
    root = tmp_path / "broken"
    shutil.copytree(synthetic_voc, root)
    main = root / "ImageSets" / "Main"
    first_train = (main / "trainval.txt").read_text().split()[0]
    first_test = (main / "test.txt").read_text().split()[0]
    bad_xml = root / "Annotations" / f"{first_train}.xml"
    bad_xml.write_text("<annotation><object>")
    bad_image = root / "JPEGImages" / f"{first_test}.jpg"
    bad_image.write_bytes(b"not a JPEG at all")
    return str(root), str(bad_xml), str(bad_image)


def test_train_on_error_skip_leaves_a_broken_annotation_out_and_reaches_the_sequence(
        run_cli, broken_voc, tmp_path, fake_training, assert_one_line_error, caplog):
    root, bad_xml, _ = broken_voc
    args = ["train", "--data", root, "--model", "tiny", "--workers", "0",
            "--classes", os.path.join(root, "labels.txt"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--exist-ok"]
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, bad_xml)
    assert fake_training == []
    code, _, err = run_cli(*args, "--on-error", "skip")
    assert code == 0, err
    logged = _skips(caplog)
    assert bad_xml in logged[0] and "skipped 1 of 12 records" in logged[-1]
    (call,) = fake_training
    assert call["on_error"] == "skip"  # SSDSequence skips images unreadable mid-run
    saved = (tmp_path / "ckpt" / "args.yaml").read_text()
    assert "on_error: skip" in saved


def test_evaluate_on_error_skip_scores_the_readable_images_only(
        run_cli, broken_voc, model_file, assert_one_line_error, caplog):
    root, _, bad_image = broken_voc
    args = ["evaluate", "--data", root, "--model-file", model_file, "--out", "report"]
    code, _, err = run_cli(*args)
    assert_one_line_error(code, err, bad_image)
    code, out, err = run_cli(*args, "--on-error", "skip")
    assert code == 0, err
    logged = _skips(caplog)
    assert bad_image in logged[0] and "not a readable image" in logged[0]
    assert "skipped 1 of 4 records" in logged[-1]
    assert "3 images" in out
    report = json.loads(open(os.path.join("report", "report.json")).read())
    assert report["num_images"] == 3
