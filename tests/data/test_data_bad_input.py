"""Bad input: every case gives a clear error naming the file and the
problem, or (on_error="skip") a logged warning, the record left out and a
count. Nothing hangs, nothing is silently mislabelled."""

import logging
import multiprocessing
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from keras_ssd.data import DataError, SSDSequence, VOCDataset, load_image, write_voc_xml

CLASSES = ("circle", "square")


@pytest.fixture(scope="module")
def tiny_config(tiny_config):
    """The shared small config, for 2 classes and ratio 2 only on both maps."""
    return lambda: tiny_config(2, max_sizes=[16, 28], aspect_ratios=[[2], [2]])


class VOCDir:
    """A tiny VOC directory built record by record."""

    def __init__(self, root):
        self.root = str(root)
        for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        self.ids = []

    def img(self, image_id, ext=".jpg"):
        return os.path.join(self.root, "JPEGImages", image_id + ext)

    def xml(self, image_id):
        return os.path.join(self.root, "Annotations", image_id + ".xml")

    def add(self, image_id, objects=(("circle", (3, 3, 20, 20)),), size=(40, 30), image=True,
            ext=".jpg"):
        if image:
            Image.new("RGB", size, (120, 60, 30)).save(self.img(image_id, ext))
        write_voc_xml(self.xml(image_id), image_id + ext, size[0], size[1], objects)
        self.ids.append(image_id)
        self._write_split()
        return self

    def add_raw_xml(self, image_id, text, size=(40, 30)):
        Image.new("RGB", size).save(self.img(image_id))
        with open(self.xml(image_id), "w") as f:
            f.write(text)
        self.ids.append(image_id)
        self._write_split()
        return self

    def _write_split(self):
        with open(os.path.join(self.root, "ImageSets", "Main", "trainval.txt"), "w") as f:
            f.write("".join(i + "\n" for i in self.ids))

    def dataset(self, **kwargs):
        return VOCDataset(self.root, "trainval", class_names=CLASSES, **kwargs)


@pytest.fixture
def voc(tmp_path):
    return VOCDir(tmp_path / "VOC")


# ----------------------------------------------------------------- images
def test_corrupt_jpeg_names_the_file(voc):
    voc.add("a")
    with open(voc.img("a"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a jpeg" * 10)
    ds = voc.dataset()  # only existence is checked up front by default
    with pytest.raises(DataError, match=r"a\.jpg: not a readable image"):
        ds.load_image(0)
    with pytest.raises(DataError, match=r"a\.jpg: not a readable image"):
        voc.dataset(check_images="header")


def test_truncated_jpeg_names_the_file_and_decode_check_finds_it(voc):
    voc.add("a", size=(64, 48))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(voc.img("a"))
    data = open(voc.img("a"), "rb").read()
    with open(voc.img("a"), "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"a\.jpg: corrupt or truncated image"):
        voc.dataset().load_image(0)
    voc.add("b")
    ds = voc.dataset(check_images="decode", on_error="skip")
    assert [r["image_id"] for r in ds] == ["b"] and ds.num_skipped == 1


def test_annotation_whose_image_is_missing(voc):
    voc.add("a", image=False).add("b")
    with pytest.raises(DataError, match=r"a\.xml: its image is missing: .*a\.jpg not found"):
        voc.dataset()
    ds = voc.dataset(on_error="skip")
    assert len(ds) == 1 and ds.skipped[0][0].endswith("a.xml")


@pytest.mark.parametrize("mode,size", [("L", (40, 30)), ("RGBA", (40, 30)), ("P", (40, 30)),
                                       ("I;16", (40, 30))])
def test_other_image_modes_load_as_rgb(voc, mode, size):
    voc.add("a", ext=".png")
    if mode == "I;16":
        img = Image.fromarray(np.full((30, 40), 65535 // 2, dtype=np.uint16))
    else:
        img = Image.new("RGB", size, (200, 100, 50)).convert(mode)
    if mode == "RGBA":
        a = np.asarray(img).copy()
        a[:, :20, 3] = 0  # left half transparent
        img = Image.fromarray(a, "RGBA")
    img.save(voc.img("a", ".png"))
    out = voc.dataset().load_image(0)
    assert out.shape == (30, 40, 3) and out.dtype == np.uint8
    if mode == "L":
        assert np.all(out == out[..., :1])  # gray replicated
    if mode == "RGBA":
        np.testing.assert_array_equal(out[0, 0], (123, 117, 104))  # transparent -> mean
        np.testing.assert_array_equal(out[0, 39], (200, 100, 50))
    if mode == "P":
        assert np.abs(out[0, 0].astype(int) - (200, 100, 50)).max() <= 8
    if mode == "I;16":
        assert abs(int(out[0, 0, 0]) - 127) <= 1


def test_cmyk_jpeg_loads_as_rgb(tmp_path):
    path = tmp_path / "c.jpg"
    Image.new("RGB", (16, 8), (0, 0, 255)).convert("CMYK").save(path)
    out = load_image(path)
    assert out.shape == (8, 16, 3) and out[0, 0, 2] > 200 and out[0, 0, 0] < 60


def test_exif_rotated_jpeg_is_loaded_as_displayed(voc):
    # Displayed: 20 wide, 40 tall, red block where the (displayed) box says.
    shown = np.zeros((40, 20, 3), np.uint8)
    shown[5:15, 2:12] = (255, 0, 0)
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # 40 x 20
    voc.add("a", objects=[("circle", (3, 6, 12, 15))], size=(20, 40), image=False)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    stored.save(voc.img("a"), exif=exif.tobytes(), quality=95)
    ds = voc.dataset(check_images="header")
    rec = ds[0]
    img = ds.load_image(0)
    assert img.shape == (40, 20, 3)
    x0, y0, x1, y1 = rec["boxes"][0].astype(int)
    assert img[y0:y1, x0:x1, 0].mean() > 200 and img[y0:y1, x0:x1, 2].mean() < 60
    assert img[25:, :, 0].mean() < 40
    # an XML that gives the stored (unrotated) size disagrees with the displayed image
    write_voc_xml(voc.xml("a"), "a.jpg", 40, 20, [("circle", (3, 3, 12, 12))])
    with pytest.raises(DataError, match=r"a\.jpg: image is 20x40 .* annotation says 40x20"):
        voc.dataset(check_images="header")
    with pytest.raises(DataError, match="annotation says 40x20"):
        voc.dataset().load_image(0)  # caught at load time too


# -------------------------------------------------------------------- XML
def test_malformed_xml_names_the_file(voc):
    voc.add_raw_xml("a", "<annotation><object><name>circle</name></annotation")
    with pytest.raises(DataError, match=r"a\.xml: malformed XML"):
        voc.dataset()


def test_unknown_class_name_names_file_and_name(voc):
    voc.add("a", objects=[("circel", (1, 1, 5, 5))])
    with pytest.raises(DataError, match=r"a\.xml: object 0 has unknown class name 'circel'"):
        voc.dataset()


@pytest.mark.parametrize("box,problem", [((20, 3, 10, 9), "inverted"),
                                         ((11, 3, 10, 9), "empty"),
                                         ((50, 40, 60, 45), "entirely outside")])
def test_bad_boxes_are_named(voc, box, problem):
    voc.add("a", objects=[("circle", (1, 1, 5, 5)), ("square", box)])
    with pytest.raises(DataError, match=rf"a\.xml: object 1 \('square'\) box .* {problem}"):
        voc.dataset()
    voc.add("b")
    ds = voc.dataset(on_error="skip")
    assert [r["image_id"] for r in ds] == ["b"]


def test_box_sticking_out_is_clipped_and_counted(voc):
    voc.add("a", objects=[("circle", (30, 20, 45, 35))], size=(40, 30))
    ds = voc.dataset()
    np.testing.assert_array_equal(ds[0]["boxes"], [[29, 19, 40, 30]])
    assert ds.num_clipped_boxes == 1


@pytest.mark.parametrize("xml,problem", [
    ("<annotation><object><name>circle</name></object></annotation>", "has no <bndbox>"),
    ("<annotation><object><name>circle</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
     "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>", "<xmin> is not a number"),
    ("<annotation><object><bndbox/></object></annotation>", "has no <name>"),
    ("<notvoc/>", "expected <annotation>"),
])
def test_missing_or_bad_fields_are_named(voc, xml, problem):
    voc.add_raw_xml("a", xml)
    with pytest.raises(DataError, match=rf"a\.xml: .*{problem}"):
        voc.dataset()


def test_image_without_objects_is_kept_and_all_background(voc, tiny_config):
    voc.add("a", objects=[])
    ds = voc.dataset()
    assert ds[0]["boxes"].shape == (0, 4) and ds[0]["labels"].shape == (0,)
    _, y = SSDSequence(ds, tiny_config(), batch_size=1, augment=True, seed=0)[0]
    assert np.all(y[..., 4] == 0) and np.all(y[..., :4] == 0)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><filename>&lol9;</filename></annotation>
"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>
"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE annotation SYSTEM "{dtd}">
<annotation><filename>&x;</filename></annotation>
"""


def test_billion_laughs_is_refused(voc):
    voc.add_raw_xml("a", BILLION_LAUGHS)
    with pytest.raises(DataError, match=r"a\.xml: refused: .*entity 'lol'.*billion laughs"):
        voc.dataset()


def test_external_entity_is_refused(voc):
    voc.add_raw_xml("a", EXTERNAL_ENTITY)
    with pytest.raises(DataError, match=r"a\.xml: refused: .*external entity 'xxe'.*/etc/passwd"):
        voc.dataset()


def test_external_dtd_is_never_fetched(voc, tmp_path):
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY x "PWNED">')
    voc.add_raw_xml("a", EXTERNAL_DTD.format(dtd=dtd.as_uri()))
    # the entity it would define stays undefined: an error, never "PWNED"
    with pytest.raises(DataError, match=r"a\.xml: (malformed XML .*undefined entity|refused)"):
        voc.dataset()


def test_skip_mode_logs_each_problem_and_a_count(voc, caplog):
    voc.add("ok").add("bad_class", objects=[("dog", (1, 1, 5, 5))])
    voc.add_raw_xml("hostile", BILLION_LAUGHS)
    voc.add("no_image", image=False)
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        ds = voc.dataset(on_error="skip")
    assert len(ds) == 1 and ds.num_skipped == 3
    text = caplog.text
    assert "bad_class.xml" in text and "hostile.xml" in text and "no_image.xml" in text
    assert "skipped 3 of 4 records" in text
    with pytest.raises(ValueError, match="on_error"):
        voc.dataset(on_error="warn")


# ------------------------------------------------------- in the pipeline
def test_data_error_pickles_intact():
    e = pickle.loads(pickle.dumps(DataError("/x/a.jpg", "corrupt")))
    assert isinstance(e, DataError) and e.path == "/x/a.jpg" and str(e) == "/x/a.jpg: corrupt"


def _corrupt_after_load(voc, image_id):
    with open(voc.img(image_id), "wb") as f:
        f.write(b"garbage")


def test_sequence_raises_naming_file_record_and_batch(voc, tiny_config):
    voc.add("a").add("b")
    ds = voc.dataset()
    _corrupt_after_load(voc, "b")
    seq = SSDSequence(ds, tiny_config(), batch_size=2, augment=True, seed=0)
    with pytest.raises(DataError, match=r"b\.jpg: not a readable image .*record 1, batch 0"):
        seq[0]


def test_sequence_skip_mode_substitutes_and_counts(voc, caplog, tiny_config):
    voc.add("a").add("b").add("c")
    ds = voc.dataset()
    _corrupt_after_load(voc, "b")
    seq = SSDSequence(ds, tiny_config(), batch_size=3, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="keras_ssd.data"):
        x, y = seq[0]
    assert x.shape[0] == 3 and seq.load_errors == 1
    np.testing.assert_array_equal(x[1], x[2])  # b replaced by the next record, c
    assert "b.jpg" in caplog.text


def _get(args):
    seq, i = args
    return seq[i]


def test_error_in_a_worker_process_surfaces_as_data_error(voc, tiny_config):
    voc.add("a").add("b")
    ds = voc.dataset()
    _corrupt_after_load(voc, "a")
    seq = SSDSequence(ds, tiny_config(), batch_size=2)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        with pytest.raises(DataError, match=r"a\.jpg: not a readable image .*batch 0"):
            pool.map(_get, [(seq, 0)])
