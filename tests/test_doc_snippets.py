"""Every Python block of README.md and docs/ runs, offline and on small data.

Each page's blocks run in order in one namespace (a later block may use what
an earlier one defined, as a reader would), in a temporary folder that holds
small stand-ins for the files the docs name (`doc_world`): Pascal VOC folders
(`VOCdevkit/VOC2007`, `data`, `my_data`, ...) with the 20 VOC class names, a
YOLO set (`datasets/parts`), a CSV file (`labels/test.csv`), a COCO file
(`annotations/instances_val2017.json`), photos (`street.jpg`, `photos/`,
`train_images/`), a short video (`traffic.mp4`), and `model.keras` /
`runs/train/best.keras`: an untrained `SSDTiny` at 300 px with the VOC
classes, compiled (Adam, `SSDLoss`). The namespace starts with what the
docs take as the reader's own objects: `keras`, `keras_ssd`, `np`, `model`
(that SSDTiny) and `images` (a batch for it), plus a few per page
(`PAGE_CONTEXT`). `model.fit` runs at
most one epoch past `initial_epoch` whatever `epochs` says (the docs show
full-length runs; one epoch runs every line of them).

A block that cannot run here says so in the Markdown, on the line before its
fence:

    <!-- doc-test: skip: needs the ImageNet VGG16 weights (a download) -->

with the reason; the test holds the skipped set to those reasons (a
download: network or pretrained weights) and to `MAX_SKIPPED`, and checks that a skipped
block's `keras_ssd` imports and `keras_ssd.X` names exist. A block whose
optional package is not installed (e.g. `ai_edge_litert`) is skipped at run
time, naming the package.
"""

import ast
import importlib
import os
import pathlib
import re
import shutil

import keras
import numpy as np
import pytest

from test_doc_commands import DOCS, ROOT, _blocks

pytestmark = pytest.mark.timeout(900)

_SKIP = re.compile(r"^<!--\s*doc-test:\s*skip:\s*(.+?)\s*-->$")
#: What a skip may give as its reason (a word of it must appear).
SKIP_REASONS = ("download",)
#: The most blocks that may be skipped in all (keep it small).
MAX_SKIPPED = 12

VOC_NAMES = None  # filled lazily (keras_ssd.data.VOC_CLASSES)


def _python_blocks(path):
    """`(first line, text, skip reason or None)` of each python block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    for lang, start, text in _blocks(path):
        if lang != "python" or text.lstrip().startswith(">>>"):
            continue
        above = [line.strip() for line in lines[:start - 2] if line.strip()]
        match = _SKIP.match(above[-1]) if above else None
        found.append((start, text, match.group(1) if match else None))
    return found


BLOCKS = [(p, start, text, reason)
          for p in DOCS for start, text, reason in _python_blocks(p)]
IDS = [f"{p.relative_to(ROOT)}:{start}" for p, start, _, _ in BLOCKS]


def test_skipped_blocks_are_few_and_say_why():
    skipped = [(i, reason) for i, (_, _, _, reason) in zip(IDS, BLOCKS) if reason]
    assert len(skipped) <= MAX_SKIPPED, skipped
    for where, reason in skipped:
        assert any(word in reason for word in SKIP_REASONS), (where, reason)
    assert len(BLOCKS) - len(skipped) >= 15  # most blocks run


# ------------------------------------------------------------ the stand-ins
def _voc(root, num_trainval=4, num_test=3, seed=0):
    """A small VOC folder whose objects carry VOC class names."""
    from keras_ssd.data import make_synthetic_voc

    make_synthetic_voc(root, num_trainval=num_trainval, num_test=num_test,
                       image_size=(120, 96), seed=seed)
    rename = {"circle": "cat", "square": "dog", "triangle": "person", "cross": "car"}
    for xml in (root / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for old, new in rename.items():
            text = text.replace(f"<name>{old}</name>", f"<name>{new}</name>")
        xml.write_text(text)
    (root / "labels.txt").write_text("\n".join(VOC_NAMES) + "\n")
    return root


def _records(root, split):
    from keras_ssd.data import VOCDataset

    ds = VOCDataset(str(root), split, class_names=VOC_NAMES)
    return [ds[i] for i in range(len(ds))]


def _yolo(src, dest):
    from PIL import Image

    for split, voc_split in (("train", "trainval"), ("val", "test")):
        (dest / "images" / split).mkdir(parents=True)
        (dest / "labels" / split).mkdir(parents=True)
        for rec in _records(src, voc_split):
            name = os.path.basename(rec["image_path"])
            shutil.copy(rec["image_path"], dest / "images" / split / name)
            width, height = Image.open(rec["image_path"]).size
            rows = []
            for (x0, y0, x1, y1), label in zip(rec["boxes"], rec["labels"]):
                rows.append(f"{int(label)} {(x0 + x1) / 2 / width:.6f} "
                            f"{(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} "
                            f"{(y1 - y0) / height:.6f}")
            (dest / "labels" / split / (os.path.splitext(name)[0] + ".txt")).write_text(
                "\n".join(rows) + "\n")
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(VOC_NAMES))
    (dest / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n"
                                    f"names:\n{names}")


def _csv(src, path):
    rows = ["image_path,xmin,ymin,xmax,ymax,class_name"]
    for rec in _records(src, "test"):
        for (x0, y0, x1, y1), label in zip(rec["boxes"], rec["labels"]):
            rows.append(f"{rec['image_path']},{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f},"
                        f"{VOC_NAMES[int(label)]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def _coco(src, json_path, image_dir):
    import json

    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for i, rec in enumerate(_records(src, "test"), 1):
        name = os.path.basename(rec["image_path"])
        shutil.copy(rec["image_path"], image_dir / name)
        from PIL import Image

        width, height = Image.open(rec["image_path"]).size
        images.append({"id": i, "file_name": name, "width": width, "height": height})
        for (x0, y0, x1, y1), label in zip(rec["boxes"], rec["labels"]):
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": int(label) + 1, "iscrowd": 0,
                                "bbox": [float(x0), float(y0), float(x1 - x0),
                                         float(y1 - y0)],
                                "area": float((x1 - x0) * (y1 - y0))})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(VOC_NAMES)]
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"images": images, "annotations": annotations,
                                     "categories": categories}))


@pytest.fixture(scope="session")
def doc_world(tmp_path_factory):
    """The folder of stand-ins, built once; each page works in a copy of it."""
    global VOC_NAMES
    import keras

    from keras_ssd.data import VOC_CLASSES
    from keras_ssd.losses import SSDLoss
    from keras_ssd.models import SSDTiny

    VOC_NAMES = tuple(VOC_CLASSES)
    root = tmp_path_factory.mktemp("doc_world")
    voc = _voc(root / "VOCdevkit" / "VOC2007")
    shutil.copytree(voc, root / "VOCdevkit" / "VOC2012")
    for name in ("data", "my_data"):
        shutil.copytree(voc, root / name)
    _yolo(voc, root / "datasets" / "parts")
    _csv(voc, root / "labels" / "test.csv")
    _coco(voc, root / "annotations" / "instances_val2017.json", root / "val2017")
    photos = sorted((voc / "JPEGImages").glob("*.jpg"))
    shutil.copy(photos[0], root / "street.jpg")
    for folder in ("photos", "train_images", "my_photos"):
        (root / folder).mkdir()
        for p in photos[:3]:
            shutil.copy(p, root / folder / p.name)
    demo = root / "demo_out" / "data" / "JPEGImages"
    demo.mkdir(parents=True)
    shutil.copy(photos[0], demo / "001000.jpg")
    try:
        from PIL import Image

        from keras_ssd.inference.stream import VideoWriter

        with VideoWriter(root / "traffic.mp4", fps=4) as writer:
            for p in photos[:4]:
                writer.write(np.asarray(Image.open(p).convert("RGB")))
    except ImportError:
        pass  # no PyAV: predict_stream reports the video as unreadable
    keras.utils.set_random_seed(0)
    model = SSDTiny(class_names=list(VOC_NAMES), image_size=300)
    model.compile(optimizer="adam", loss=SSDLoss())  # as the reader's, ready to fit
    for path in ("model.keras", "runs/train/best.keras", "demo_out/model.keras"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        model.save(root / path)
    return root


def _context(page):
    """The reader's own objects a page's blocks use without defining them."""
    import keras

    import keras_ssd

    model = keras.saving.load_model("model.keras")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, *model.config.image_shape, 3)).astype("float32")
    ns = {"keras": keras, "keras_ssd": keras_ssd, "np": np, "model": model,
          "images": images, "__name__": "__doc__"}
    extra = PAGE_CONTEXT.get(page)
    if extra is not None:
        ns.update(extra(ns))
    return ns


def _evaluation_context(ns):
    from keras_ssd.data import VOCDataset

    test = VOCDataset("VOCdevkit/VOC2007", "test")
    detections = [keras_predict(ns["model"], rec["image_path"]) for rec in test.records]
    return {"detections": detections, "ground_truths": list(test.records)}


def keras_predict(model, path):
    from keras_ssd import predict_image

    return predict_image(model, path, confidence_threshold=0.01)


def _training_context(ns):
    import tensorflow as tf

    from keras_ssd.data import SSDSequence, VOCDataset
    from keras_ssd.losses import SSDLoss

    model = ns["model"]
    seq = SSDSequence(VOCDataset("VOCdevkit/VOC2007", "trainval"), model.config,
                      batch_size=2, augment=True, seed=0)
    x, y_true = seq[0]
    return {"train_sequence": seq, "val_dataset": VOCDataset("VOCdevkit/VOC2007", "test"),
            "opt": keras.optimizers.Adam(1e-3), "y_true": y_true,
            "y_pred": model(x), "SSDLoss": SSDLoss,
            "dataset": tf.data.Dataset.from_tensor_slices(np.arange(4)), "tf": tf}


def _performance_context(ns):
    from keras_ssd.losses import SSDLoss

    return {"opt": keras.optimizers.Adam(1e-3), "loss": SSDLoss(), "SSDLoss": SSDLoss}


PAGE_CONTEXT = {
    "docs/evaluation.md": _evaluation_context,
    "docs/training.md": _training_context,
    "docs/performance.md": _performance_context,
}


# ------------------------------------------------------------ running
_PAGES = {}


def _page_namespace(page, doc_world, tmp_path_factory):
    """`(folder, namespace, {first line: error or None} of the blocks run)`."""
    if page not in _PAGES:
        folder = tmp_path_factory.mktemp("page")
        shutil.copytree(doc_world, folder, dirs_exist_ok=True)
        previous = os.getcwd()
        os.chdir(folder)
        try:
            _PAGES[page] = (folder, _context(page), {})
        finally:
            os.chdir(previous)
    return _PAGES[page]


def _run(text, where, namespace, monkeypatch):
    fit = keras.Model.fit

    def one_more_epoch(self, *args, epochs=1, initial_epoch=0, **kwargs):
        return fit(self, *args, epochs=min(int(epochs), int(initial_epoch) + 1),
                   initial_epoch=initial_epoch, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "fit", one_more_epoch)
        exec(compile(text, where, "exec"), namespace)


def _missing_optional(error):
    """A package outside keras-ssd that is not installed (an optional one)."""
    name = getattr(error, "name", None) or ""
    return (isinstance(error, ModuleNotFoundError) and bool(name)
            and not name.startswith("keras_ssd"))


def _check_names(text, where):
    """A skipped block's keras_ssd imports and `keras_ssd.X...` names exist."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_ssd"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):  # a submodule
                    importlib.import_module(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_ssd"):
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id == "keras_ssd":
                obj = importlib.import_module("keras_ssd")
                for attr in reversed(chain):
                    if not (isinstance(obj, type) or type(obj).__name__ == "module"):
                        break
                    assert hasattr(obj, attr), f"{where}: keras_ssd...{attr} does not exist"
                    obj = getattr(obj, attr)


@pytest.mark.parametrize("path,start,text,reason", BLOCKS, ids=IDS)
def test_doc_python_block_runs(path, start, text, reason, doc_world, tmp_path_factory,
                               monkeypatch):
    where = f"{path.relative_to(ROOT)}:{start}"
    if reason:
        _check_names(text, where)
        pytest.skip(f"marked in the docs: {reason}")
    page = str(path.relative_to(ROOT))
    folder, namespace, ran = _page_namespace(page, doc_world, tmp_path_factory)
    monkeypatch.chdir(folder)
    # the page's earlier blocks first (a reader runs them in order), once
    for other, other_start, other_text, other_reason in BLOCKS:
        if other != path or other_start >= start or other_reason or other_start in ran:
            continue
        try:
            _run(other_text, f"{page}:{other_start}", namespace, monkeypatch)
            ran[other_start] = None
        except Exception as e:  # noqa: BLE001 - reported by that block's own test
            ran[other_start] = None if _missing_optional(e) else e
    failed = [f"{page}:{k}" for k, e in ran.items() if e is not None and k < start]
    if failed:
        pytest.skip(f"an earlier block of the page failed: {', '.join(failed)}")
    try:
        _run(text, where, namespace, monkeypatch)
        ran[start] = None
    except ModuleNotFoundError as e:
        ran[start] = None if _missing_optional(e) else e
        if _missing_optional(e):
            pytest.skip(f"{where}: needs the optional package {e.name}")
        raise
    except Exception as e:
        ran[start] = e
        raise
