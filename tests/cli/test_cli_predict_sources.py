"""`keras-ssd predict` on a folder, URLs (local server) and videos: unreadable
inputs skipped on their own line and counted in the exit status."""

import json

import pytest


def test_predict_cli_on_folder_url_and_video_skips_failures(
        run_cli, model_file, image_tree, http_root, videos, tmp_path):
    code, out, err = run_cli("predict", str(image_tree), f"{http_root}/a.png",
                             f"{http_root}/missing.png", videos["clip.mp4"],
                             videos["clip_cut.avi"], "--model-file", model_file,
                             "--threshold", "0.0", "--project", str(tmp_path / "runs"))
    folder = tmp_path / "runs" / "predict"
    skipped = [line for line in err.splitlines()
               if line.startswith("keras-ssd predict: skipped")]
    assert len(skipped) == 3, err  # bad.jpg, the 404, the truncated video
    assert code == 3
    payload = json.loads((folder / "detections.json").read_text())
    assert len(payload["images"]) == 4 and len(payload["failed"]) == 3
    assert [v["frames"] for v in payload["videos"]][0] == 12
    lines = (folder / "clip.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[3])["frame"] == 3
    assert json.loads(lines[3])["time"] == pytest.approx(3 / 8)
    from keras_ssd.sources import iter_sources as again

    written = list(again(str(folder / "clip.mp4")))
    assert len(written) == 12 and written[0].image.shape == (48, 64, 3)
    assert "12 frames" in out and "frames/s" in out
