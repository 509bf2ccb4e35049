"""benchmarks/gpu: the GPU benchmark's CPU dry run, so that its code cannot
rot between the runs on a GPU machine (none is lent to the test suite)."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HAVE_TORCHVISION = all(importlib.util.find_spec(m) is not None
                       for m in ("torch", "torchvision"))


def _run(tmp_path, *args, timeout=300):
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.run", "--out", str(tmp_path / "gpu.json"),
         *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_dry_run_measures_every_section_and_writes_one_table(tmp_path):
    proc = _run(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["dry_run"] is True and doc["stopped"] is None
    assert doc["machine"]["keras_backend"] == "jax"
    assert doc["seconds"] < doc["budget_seconds"]
    rows = {(r["section"], r["name"], r["batch"]): r for r in doc["rows"]}
    expected = {
        ("forward", "forward fp32", 1), ("forward", "forward bf16", 1),
        ("train", "train step fp32, SGD momentum 0.9", 1),
        ("decode", "decode+NMS realistic", 2), ("decode", "decode+NMS worst", 2),
        ("pipeline", "SSDSequence images delivered", 2),
        ("pipeline", "SSDSequence images made, not shipped", 2),
    }
    assert set(rows) == expected
    for row in rows.values():
        assert row["value"] > 0 and math.isfinite(row["value"]), row
    # the pipeline is compared with the measured train step's demand
    train = rows[("train", "train step fp32, SGD momentum 0.9", 1)]["value"]
    delivered = rows[("pipeline", "SSDSequence images delivered", 2)]
    assert delivered["theirs"] == train
    assert delivered["meets_floor"] == (delivered["value"] >= train)
    compared = [r for r in rows.values() if r["section"] != "pipeline"]
    skipped = [(s["section"], s["what"]) for s in doc["skipped"]]
    if HAVE_TORCHVISION:
        assert skipped == []
        assert all(r["theirs"] > 0 for r in compared)
        assert doc["machine"]["torch_device"] == "cpu"
        # the two decoders agree on the same head outputs
        assert all("100.0% of torchvision's detections" in r["note"]
                   for r in compared if r["section"] == "decode")
    else:
        assert skipped == [("all", "torchvision side")]
        assert "torchvision not installed" in doc["skipped"][0]["why"]
        assert all(r["theirs"] is None for r in compared)
    # one table on stdout, the same rows as Markdown beside the JSON
    assert proc.stdout.count("section   figure") == 1
    markdown = (tmp_path / "gpu.md").read_text().splitlines()
    assert markdown[0].startswith("| section | figure |") and len(markdown) == 2 + len(rows)


def test_the_hard_limit_writes_what_was_measured_and_exits(tmp_path):
    proc = _run(tmp_path, "--dry-run", "--no-torch", "--budget", "0.5", "--hard-limit", "1",
                timeout=120)
    assert proc.returncode == 124, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu.json").read_text())
    assert doc["stopped"] == "hard deadline of 1 s reached"
    assert doc["seconds"] < 30


def test_bad_arguments_are_refused(tmp_path):
    from benchmarks.gpu import run

    for argv in (["--sections", "forward,warp"], ["--workers", "0"], ["--workers", "a"],
                 ["--budget", "100", "--hard-limit", "50"]):
        with pytest.raises(SystemExit) as info:
            run._parse(argv)
        assert info.value.code == 2
    args = run._parse(["--workers", "1,3", "--sections", "train,pipeline"])
    assert args.workers == [1, 3] and args.sections == ["train", "pipeline"]


def test_sections_close_at_their_share_of_the_budget(monkeypatch):
    from benchmarks.gpu import run

    budget = run.Budget(100, 200)
    monkeypatch.setattr(budget, "elapsed", lambda: 55.0)
    assert not budget.section_open("forward")  # forward ends at 50 s
    assert budget.section_open("train") and budget.section_open("pipeline")
    monkeypatch.setattr(budget, "elapsed", lambda: 98.0)
    assert not any(budget.section_open(s) for s in run.SECTIONS)


def test_a_gpu_run_without_a_gpu_says_so(tmp_path):
    proc = _run(tmp_path, "--no-torch", "--sections", "decode", timeout=120)
    assert proc.returncode == 2
    assert "no GPU: JAX runs on 'cpu'" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()
