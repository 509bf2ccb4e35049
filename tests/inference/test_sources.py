"""Input sources: files, recursive folders, globs, URLs (a local HTTP server
on 127.0.0.1, with a 404 and a timeout), videos (written by the test, two of
them truncated), arrays and PIL images (fixtures in tests/conftest.py)."""

import os

import numpy as np
from PIL import Image

from keras_ssd.sources import iter_sources


def test_folder_is_searched_recursively_and_bad_files_are_items_with_errors(image_tree):
    items = list(iter_sources(str(image_tree)))
    names = [os.path.relpath(it.name, image_tree) for it in items]
    assert names == ["a.png", "bad.jpg", "sub/b.jpg", "sub/deeper/c.png"]
    assert [it.ok for it in items] == [True, False, True, True]
    assert items[0].image.shape == (30, 40, 3) and items[0].image.dtype == np.uint8
    assert items[1].error and items[1].kind == "error"


def test_glob_arrays_pil_and_missing_inputs(image_tree):
    pattern = str(image_tree / "**" / "*.png")
    array = np.zeros((2, 8, 9, 3), np.uint8)
    pil = Image.new("L", (5, 4))
    items = list(iter_sources([pattern, array, pil, str(image_tree / "nope.jpg"),
                               str(image_tree / "*.gif")]))
    assert [os.path.basename(it.name) for it in items] == [
        "a.png", "c.png", "array0", "array1", "pil0", "nope.jpg", "*.gif"]
    assert items[2].image.shape == (8, 9, 3) and items[4].image.shape == (4, 5, 3)
    assert items[5].error == "file not found"
    assert items[6].error == "no file matches this pattern"


def test_urls_from_a_local_server_including_404_and_timeout(http_root):
    items = list(iter_sources([f"{http_root}/a.png", f"{http_root}/missing.png",
                               f"{http_root}/notes.txt", f"{http_root}/slow/a.png"],
                              timeout=0.5))
    assert items[0].ok and items[0].image.shape == (30, 40, 3)
    assert items[1].error == "HTTP 404 File not found"
    assert items[2].error.startswith("not an image")
    assert items[3].error == "no answer within 0.5 s"


def test_video_frames_in_order_with_rate(videos):
    items = list(iter_sources(videos["clip.mp4"]))
    assert len(items) == 12 and all(it.ok for it in items)
    assert [it.frame for it in items] == list(range(12)) and items[0].fps == 8.0
    assert items[5].name == f"{videos['clip.mp4']}#5" and items[5].kind == "video"
    # the square moves 4 px a frame: its red centre follows
    cols = [np.nonzero(it.image[20, :, 0] > 150)[0].mean() for it in items]
    assert np.allclose(np.diff(cols), 4, atol=1)


def test_truncated_videos_end_with_an_error_item(videos):
    items = list(iter_sources(videos["clip_cut.mp4"]))  # index at the end: lost
    assert len(items) == 1 and items[0].error.startswith("not a readable video")
    items = list(iter_sources(videos["clip_cut.avi"]))
    good = [it for it in items if it.ok]
    assert 0 < len(good) < 12 and all(it.ok for it in items[:-1])
    assert items[-1].error == f"truncated: decoding stopped at frame {len(good)} of 12"
    assert len([it for it in iter_sources(videos["clip.avi"]) if it.ok]) == 12


def test_predict_stream_yields_every_input_in_order(tiny_model, image_tree):
    from keras_ssd.inference.stream import predict_stream

    sources = [str(image_tree), np.zeros((20, 30, 3), np.uint8)]
    out = list(predict_stream(tiny_model, sources,
                              confidence_threshold=0.0, batch_size=2))
    assert [os.path.basename(it.name) for it, _ in out] == [
        "a.png", "bad.jpg", "b.jpg", "c.png", "array0"]
    assert out[1][1] is None
    for item, det in out:
        if det is not None:
            h, w = item.image.shape[:2]
            assert det["boxes"].shape[1] == 4
            assert (det["boxes"][:, 2] <= w + 1e-3).all()
            assert (det["boxes"][:, 3] <= h + 1e-3).all()
