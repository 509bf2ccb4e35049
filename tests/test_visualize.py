import numpy as np
import pytest
from PIL import Image

from keras_ssd.data.images import load_image
from keras_ssd.visualize import class_color, draw_detections


def _gray(h=120, w=160):
    return np.full((h, w, 3), 128, dtype=np.uint8)


def _dets(boxes, labels, scores=None, names=None):
    d = {"boxes": np.asarray(boxes, np.float32), "labels": np.asarray(labels)}
    d["scores"] = np.asarray(scores if scores is not None else [0.9] * len(labels), np.float32)
    if names is not None:
        d["names"] = names
    return d


def test_draw_detections_outlines_box_in_class_colour_and_keeps_input():
    image = _gray()
    out = draw_detections(image, _dets([[20, 40, 100, 110]], [3]), line_width=2)
    assert isinstance(out, Image.Image) and out.size == (160, 120) and out.mode == "RGB"
    pixels = np.asarray(out)
    color = class_color(3)
    # Left and bottom edges (away from the caption) carry the class colour.
    assert tuple(pixels[80, 20]) == color
    assert tuple(pixels[110, 60]) == color
    # The inside of the box and the far background stay untouched.
    assert tuple(pixels[90, 60]) == (128, 128, 128)
    assert tuple(pixels[5, 150]) == (128, 128, 128)
    assert np.all(image == 128), "the input array must not be modified"


def test_draw_detections_draws_a_filled_caption_above_the_box():
    out = np.asarray(
        draw_detections(_gray(), _dets([[30, 60, 120, 110]], [0], names=["dog"]), font_size=12)
    )
    # Caption background in the class colour sits just above the box's top edge.
    caption = out[40:60, 30:60].reshape(-1, 3)
    assert (caption == class_color(0)).all(axis=1).sum() > 50


def test_draw_detections_caption_moves_inside_when_box_touches_top():
    out = np.asarray(draw_detections(_gray(), _dets([[10, 0, 150, 100]], [1]), font_size=12))
    caption = out[2:14, 12:40].reshape(-1, 3)
    assert (caption == class_color(1)).all(axis=1).sum() > 50


def test_draw_detections_accepts_path_pil_and_empty_detections(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(_gray(50, 70)).save(path)
    empty = _dets(np.zeros((0, 4)), np.zeros((0,), np.int64), scores=np.zeros((0,)))
    for source in (str(path), path, Image.open(path)):
        out = draw_detections(source, empty)
        assert out.size == (70, 50)
        assert np.all(np.asarray(out) == 128)


def test_class_colours_differ_between_neighbouring_classes():
    colors = [class_color(i) for i in range(21)]
    assert len(set(colors)) == 21
    assert class_color(5) == class_color(5)


def test_draw_detections_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 boxes but 1 labels"):
        draw_detections(_gray(), _dets([[0, 0, 5, 5], [1, 1, 6, 6]], [0], scores=[0.5, 0.4]))
    with pytest.raises(ValueError, match="lack labels"):
        draw_detections(_gray(), {"boxes": np.zeros((0, 4))})


def test_load_image_converts_grayscale_alpha_and_float_arrays():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert load_image(gray).shape == (3, 4, 3)
    assert np.array_equal(load_image(gray)[..., 2], gray)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200
    assert load_image(rgba).shape == (2, 2, 3) and load_image(rgba)[0, 0, 0] == 200
    floats = np.full((2, 2, 3), 254.6)
    assert load_image(floats).dtype == np.uint8 and load_image(floats)[0, 0, 0] == 255


def test_load_image_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="image file not found: .*nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.jpg: not a readable image"):
        load_image(str(bad))
    with pytest.raises(ValueError, match=r"shape \(H, W\)"):
        load_image(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        load_image(np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="file path, a PIL image or a numeric array"):
        load_image({"not": "an image"})
