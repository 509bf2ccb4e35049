"""`keras-ssd anchors`."""

import json
import os
import subprocess
import sys

import pytest

CLASSES = "circle,square,triangle,cross"


def _num_boxes(root, split="trainval"):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset

    data = VOCDataset(root, split, class_names=SYNTHETIC_CLASSES)
    return sum(len(r["boxes"]) for r in data.records)


def test_anchors_prints_the_table_and_writes_json_and_png(run_cli, synthetic_voc, tmp_path):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "out" / "fit.json", tmp_path / "out" / "fit.png"
    code, stdout, err = run_cli("anchors", "--data", synthetic_voc, "--classes", CLASSES,
                                "--model", "tiny", "--json", str(out), "--plot", str(png))
    assert code == 0, err
    for fragment in ("(voc, trainval), priors of --model tiny", "2390 priors", "matched by IoU",
                     "class circle", "class cross", "size ", "Suggested sizes",
                     f"wrote {out}", f"wrote {png}"):
        assert fragment in stdout, fragment
    result = json.loads(out.read_text())
    assert result["num_boxes"] == _num_boxes(synthetic_voc)
    assert result["num_images"] == 12 and result["num_priors"] == 2390
    assert result["input_size"] == [160, 160] and result["iou_threshold"] == 0.5
    assert set(result["per_class"]) <= {"circle", "square", "triangle", "cross"}
    assert result["suggestion"]["matched"] >= result["matched"]
    assert result["split"] == "trainval" and result["format"] == "voc"
    assert result["priors"] == "--model tiny"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_anchors_reads_a_yolo_copy_like_the_voc_original(run_cli, synthetic_voc, tmp_path):
    from keras_ssd.data import SYNTHETIC_CLASSES, VOCDataset, write_yolo

    voc = VOCDataset(synthetic_voc, "trainval", class_names=SYNTHETIC_CLASSES)
    write_yolo(voc, tmp_path / "yolo", split="train")
    reports = {}
    for name, argv in (("voc", ["--data", synthetic_voc, "--classes", CLASSES]),
                       ("yolo", ["--data", str(tmp_path / "yolo")])):
        out = tmp_path / f"{name}.json"
        code, stdout, err = run_cli("anchors", *argv, "--model", "tiny", "--no-suggest",
                                    "--json", str(out))
        assert code == 0, err
        reports[name] = json.loads(out.read_text())
    assert reports["yolo"]["format"] == "yolo" and reports["yolo"]["split"] == "train"
    for key in ("num_images", "num_boxes"):
        assert reports["yolo"][key] == reports["voc"][key]
    assert {k: v["boxes"] for k, v in reports["yolo"]["per_class"].items()} == \
        {k: v["boxes"] for k, v in reports["voc"]["per_class"].items()}
    # YOLO keeps 6 decimals of the normalised boxes: the same IoUs to ~1e-5.
    assert reports["yolo"]["overall"]["mean"] == pytest.approx(
        reports["voc"]["overall"]["mean"], abs=1e-4)


def test_anchors_options_reach_the_report(run_cli, synthetic_voc, tmp_path):
    out = tmp_path / "fit.json"
    code, stdout, err = run_cli("anchors", "--data", synthetic_voc, "--classes",
                                os.path.join(synthetic_voc, "labels.txt"), "--model",
                                "ssd300", "--iou", "0.7", "--size-buckets", "coco",
                                "--no-suggest", "--examples", "2", "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["iou_threshold"] == 0.7 and result["num_priors"] == 8732
    assert set(result["per_size"]) <= {"small", "medium", "large"}
    assert result["suggestion"] is None and "not searched" in stdout
    assert len(result["unreachable"]) == min(2, result["unreachable_count"])


def test_anchors_measures_a_config_file(run_cli, synthetic_voc, tmp_path, tiny_config):
    path = tmp_path / "small.yaml"
    tiny_config(4).to_yaml(str(path))
    out = tmp_path / "fit.json"
    code, stdout, err = run_cli("anchors", "--data", synthetic_voc, "--classes", CLASSES,
                                "--config", str(path), "--json", str(out))
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["num_priors"] == 88 and result["input_size"] == [32, 32]
    assert str(path) in stdout


def test_anchors_without_matplotlib_skips_the_plot_with_a_message(
        run_cli, synthetic_voc, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "fit.png"
    code, stdout, err = run_cli("anchors", "--data", synthetic_voc, "--classes", CLASSES,
                                "--model", "tiny", "--no-suggest", "--plot", str(png))
    assert code == 0, err
    assert "plot: skipped (matplotlib is not installed: pip install matplotlib)" in stdout
    assert not png.exists() and err.strip() == ""


def test_anchors_bad_folders_fail_fast_with_one_line(
        run_cli, assert_one_line_error, synthetic_voc, tmp_path):
    missing = tmp_path / "nope"
    code, _, err = run_cli("anchors", "--data", str(missing))
    assert_one_line_error(code, err, "keras-ssd anchors: error:",
                          "--data: folder not found", str(missing), status=2)
    code, _, err = run_cli("anchors", "--data", str(tmp_path))
    assert_one_line_error(code, err, "no split file ImageSets/Main/trainval.txt", status=2)
    code, _, err = run_cli("anchors", "--data", synthetic_voc, "--split", "nosuch",
                           "--classes", CLASSES)
    assert_one_line_error(code, err, "ImageSets/Main/nosuch.txt", status=2)
    code, _, err = run_cli("anchors", "--data", synthetic_voc, "--classes", CLASSES,
                           "--json", str(tmp_path))
    assert_one_line_error(code, err, "--json", "is a folder", status=2)
    code, _, err = run_cli("anchors", "--data", synthetic_voc, "--classes", CLASSES,
                           "--config", str(tmp_path / "none.yaml"))
    assert_one_line_error(code, err, "--config: file not found", status=2)


def test_anchors_bad_data_is_one_line_naming_the_file(
        run_cli, assert_one_line_error, synthetic_voc):
    # The default classes are VOC's: the synthetic shapes are unknown names.
    code, _, err = run_cli("anchors", "--data", synthetic_voc)
    assert_one_line_error(code, err, "keras-ssd anchors: error:", ".xml",
                          "unknown class name", status=1)


def test_anchors_without_boxes_says_so(run_cli, assert_one_line_error, tmp_path):
    root = tmp_path / "empty"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("")
    code, _, err = run_cli("anchors", "--data", str(root))
    assert_one_line_error(code, err, "lists no images", status=1)


def test_anchors_on_images_without_objects_says_so(run_cli, assert_one_line_error,
                                                   tmp_path):
    from PIL import Image

    from keras_ssd.data import write_voc_xml

    root = tmp_path / "background"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(root / "JPEGImages" / "a.jpg")
    write_voc_xml(str(root / "Annotations" / "a.xml"), "a.jpg", 40, 30, [])
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\n")
    code, _, err = run_cli("anchors", "--data", str(root))
    assert_one_line_error(code, err, "has no annotated boxes to measure", status=1)


@pytest.mark.parametrize("value", ["0", "1.5", "half"])
def test_anchors_iou_must_lie_in_the_unit_interval(run_cli, value):
    with pytest.raises(SystemExit) as exc:
        run_cli("anchors", "--data", "d", "--iou", value)
    assert exc.value.code == 2


def test_anchors_runs_without_tensorflow(synthetic_voc):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path),
               PYTHONPROFILEIMPORTTIME="1")
    env.pop("KERAS_SSD_LAZY_IMPORTS", None)
    proc = subprocess.run([sys.executable, "-m", "keras_ssd", "anchors", "--data",
                           synthetic_voc, "--classes", CLASSES, "--model", "tiny",
                           "--no-suggest"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "matched by IoU" in proc.stdout
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "keras_ssd" in imported
    assert "tensorflow" not in imported and "keras" not in imported
