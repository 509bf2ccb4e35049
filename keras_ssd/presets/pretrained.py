"""The published detector checkpoints keras-ssd converts exactly.

`PretrainedPreset`: URL, file, hash, source, accuracy, post-processing and
fine-tuning recipe; read by `SSD300.from_preset(name)`, `keras-ssd ...
--preset NAME` and the converters (`keras_ssd.models.convert`), whose
`Source.postprocessing` is the preset's `decode`. Data only.
"""

import dataclasses
import math
from typing import Mapping, Optional

from keras_ssd.presets.recipes import FINETUNE_SGD, FINETUNE_SSDLITE, Recipe
from keras_ssd.presets.variants import _key, find

@dataclasses.dataclass(frozen=True)
class PretrainedPreset:
    """A published detector checkpoint that keras-ssd converts exactly.

    `keras_ssd.SSD300.from_preset(name)` downloads `url` once into the cache
    folder (`$KERAS_SSD_CACHE_DIR/pretrained/`, default
    `~/.cache/keras_ssd/pretrained/`), checks its SHA-256, converts it with
    `keras_ssd.convert_checkpoint(path, source=source)` and keeps the
    converted `.keras` file beside it.

    Attributes:
        name: the preset's name (`from_preset`, `keras-ssd --preset`).
        architecture: the variant of `PRESETS` it converts into.
        source: the converter that reads it (`keras_ssd.models.convert.SOURCES`).
        url: where its publisher serves the file.
        file_name: the file's name, also its name in the cache.
        sha256: the file's full SHA-256 in hex where published, else `None`.
        sha256_prefix: the part of the SHA-256 that is published (torchvision
            puts the first 8 hex digits into its file names); empty when
            nothing is.
        hash_note: what is and is not known about the file's hash.
        classes: `"coco"` (torchvision's 91 logits: background and COCO
            category ids 1..90), `"coco80"` (the 80 COCO categories and the
            background) or `"voc"` (background and the 20 VOC classes).
        trained_on: the training data.
        metric: what `accuracy` measures.
        accuracy: the accuracy the source reports.
        home: the source's project page.
        file_size: the file's size as the source states it, or an estimate
            that says so (text).
        decode: the source's post-processing, as `DecodeDetections` options
            for its own classes (the converted model's decoder starts from
            them; `keras_ssd.models.convert` reads them from here).
        recipe: the default recipe for fine-tuning it to new classes.
        description: one line for docs and `--help`.
    """

    name: str
    architecture: str
    source: str
    url: str
    file_name: str
    sha256: Optional[str]
    sha256_prefix: str
    hash_note: str
    classes: str
    trained_on: str
    metric: str
    accuracy: float
    home: str
    file_size: str
    decode: Mapping
    recipe: Recipe = FINETUNE_SGD
    description: str = ""

    @property
    def known_hash(self):
        """The published hash or prefix (lower case), `""` when none is."""
        return (self.sha256 or self.sha256_prefix or "").lower()


#: torchvision's `BoxCoder.bbox_xform_clip`: decoded log-scales are capped here.
TORCHVISION_MAX_LOG_SCALE = math.log(1000.0 / 16)

_TORCHVISION_HASH_NOTE = (
    "torchvision publishes the first 8 hex digits of the SHA-256 in the file name "
    "(torch.hub checks only those); the full hash is not published, so only the "
    "prefix is checked")


def _unpublished_hash_note(publisher):
    return (f"{publisher} publishes no hash for its weights: the file cannot be checked "
            "against a published value; keras-ssd records the hash of the file it first "
            "downloads and checks the file against that record afterwards")


def _decode(score, iou, per_class, top_k, clip_boxes, max_log_scale=None, **extra):
    return dict(confidence_threshold=score, iou_threshold=iou,
                max_candidates_per_class=per_class, top_k=top_k, clip_boxes=clip_boxes,
                max_log_scale=max_log_scale, **extra)


def _torchvision(name, architecture, source, file_name, accuracy, page, **fields):
    """A torchvision COCO_V1 checkpoint (hash prefix in the file name)."""
    return PretrainedPreset(
        name=name, architecture=architecture, source=source,
        url=f"https://download.pytorch.org/models/{file_name}", file_name=file_name,
        sha256=None, sha256_prefix=file_name.rsplit("-", 1)[1].split(".")[0],
        hash_note=_TORCHVISION_HASH_NOTE, classes="coco", trained_on="COCO train2017",
        metric="COCO val2017 box AP", accuracy=accuracy,
        home=f"https://pytorch.org/vision/stable/models/generated/{page}.html", **fields)


def _voc_port(name, architecture, source, url, accuracy, home, publisher, **fields):
    """A VOC07+12 port of the Caffe SSD (no published hash)."""
    return PretrainedPreset(
        name=name, architecture=architecture, source=source, url=url,
        file_name=url.rsplit("/", 1)[1], sha256=None, sha256_prefix="",
        hash_note=_unpublished_hash_note(publisher), classes="voc",
        trained_on="VOC2007 trainval + VOC2012 trainval", metric="VOC2007 test mAP",
        accuracy=accuracy, home=home, **fields)


def _lufficc(name, architecture, source, file_name, accuracy, file_size, priors,
             network=None):
    """A lufficc/SSD release 1.2 checkpoint: its PostProcessor keeps scores
    > 0.01, runs NMS 0.45 over all candidates of a class (every prior), the
    best 100 per image, boxes not clipped."""
    return _voc_port(
        name, architecture, source,
        f"https://github.com/lufficc/SSD/releases/download/1.2/{file_name}", accuracy,
        "https://github.com/lufficc/SSD", "lufficc/SSD (release 1.2)",
        file_size=f"{file_size} (the state dict and the optimizer's state)",
        decode=_decode(0.01, 0.45, priors, 100, False),
        description=f"lufficc/SSD's {network or 'VGG16 ' + architecture.upper()} on "
                    "VOC07+12 (release 1.2): 20 VOC classes")


_MMDET_HASH_NOTE = (
    "mmdetection's publish_model.py puts the first 8 hex digits of the SHA-256 in the "
    "file name; the full hash is not published, so only the prefix is checked")


def _mmdet(size, data, path, accuracy, levels, params):
    """An mmdetection v2 model-zoo VGG16 SSD (layout of mmdetection >= 2.14,
    hash prefix in the file name). Its test_cfg: per feature map the best
    1000 (prior, class) scores (nms_pre), score > 0.02, zero-size boxes
    dropped (min_bbox_size=0), NMS 0.45 per class without a per-class limit
    (at most 1000 per map reach it), 200 per image; boxes clipped, the
    coder's log-scales clamped to +-log(1000 / 16) (`DeltaXYWHBBoxCoder`:
    `max_ratio = abs(log(wh_ratio_clip))`, clamped on both sides)."""
    coco = data == "coco"
    priors = {300: 8732, 512: 24564}[size]
    return PretrainedPreset(
        name=f"ssd{size}_{data}_mmdet", architecture=f"ssd{size}",
        source=f"mmdet_ssd{size}_{data}",
        url=f"https://download.openmmlab.com/mmdetection/v2.0/{path}",
        file_name=path.rsplit("/", 1)[1], sha256=None,
        sha256_prefix=path.rsplit("-", 1)[1].split(".")[0], hash_note=_MMDET_HASH_NOTE,
        classes="coco80" if coco else "voc",
        trained_on="COCO train2017" if coco else "VOC2007 trainval + VOC2012 trainval",
        metric="COCO val2017 box AP" if coco else "VOC2007 test mAP", accuracy=accuracy,
        home="https://github.com/open-mmlab/mmdetection/tree/main/configs/"
             + ("ssd" if coco else "pascal_voc"),
        file_size=f"about {params * 4 / 1e6:.0f} MB (an estimate: {params / 1e6:.1f} M "
                  "float32 parameters; the source states no size)",
        decode=_decode(0.02, 0.45, min(priors, 1000 * levels), 200, True,
                       TORCHVISION_MAX_LOG_SCALE, min_log_scale=-TORCHVISION_MAX_LOG_SCALE,
                       max_candidates_per_level=1000, drop_empty_boxes=True),
        description=f"mmdetection's VGG16 SSD{size} on "
                    + ("COCO (80 classes)" if coco else "VOC07+12 (20 VOC classes)")
                    + ", converted, not checked against the published accuracy offline")


_PRETRAINED = (
    _torchvision(
        "ssd300_coco", "ssd300", "torchvision", "ssd300_vgg16_coco-b556d3b4.pth", 25.1,
        "torchvision.models.detection.ssd300_vgg16", file_size="136 MiB",
        # torchvision SSD.postprocess_detections: score > 0.01, 400 per class
        # before NMS 0.45, 200 per image, boxes clipped to the image.
        decode=_decode(0.01, 0.45, 400, 200, True, TORCHVISION_MAX_LOG_SCALE),
        description="torchvision's ssd300_vgg16 (COCO_V1 weights): 80 COCO classes"),
    _lufficc("ssd300_voc", "ssd300", "lufficc", "vgg_ssd300_voc0712.pth", 77.7, "201 MB",
             8732),
    _voc_port(
        "ssd300_voc_amdegroot", "ssd300", "amdegroot",
        "https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth", 77.43,
        "https://github.com/amdegroot/ssd.pytorch", "amdegroot/ssd.pytorch",
        file_size="about 105 MB (26.3 M float32 parameters; the source states no size)",
        # amdegroot Detect(21, 0, 200, 0.01, 0.45): score > 0.01, the best
        # 200 of a class enter NMS 0.45, no cap per image (200 x 20 classes),
        # boxes not clipped.
        decode=_decode(0.01, 0.45, 200, 4000, False),
        description="amdegroot/ssd.pytorch's SSD300 on VOC07+12: 20 VOC classes"),
    _lufficc("ssd512_voc", "ssd512", "lufficc512", "vgg_ssd512_voc0712.pth", 80.7, "207 MB",
             24564),
    _torchvision(
        "ssdlite320_coco", "ssdlite320", "torchvision_ssdlite",
        "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", 21.3,
        "torchvision.models.detection.ssdlite320_mobilenet_v3_large", file_size="13.4 MB",
        # torchvision ssdlite320_mobilenet_v3_large's SSD defaults: score >
        # 0.001, 300 per class before NMS 0.55, 300 per image, boxes clipped.
        decode=_decode(0.001, 0.55, 300, 300, True, TORCHVISION_MAX_LOG_SCALE),
        recipe=FINETUNE_SSDLITE,
        description="torchvision's ssdlite320_mobilenet_v3_large (COCO_V1 weights): 80 "
                    "COCO classes, 3.4 M parameters"),
    # the `_v2` file: retrained with the strides 107, 160, 320 of lufficc's
    # fix of issue #137 (the configuration at its HEAD), VOC07 68.9
    _lufficc("ssdlite320_mobilenet_v2_voc", "ssdlite320_mobilenet_v2",
             "lufficc_mobilenet_v2", "mobilenet_v2_ssd320_voc0712_v2.pth", 68.9, "25.5 MB",
             3234, network="MobileNetV2 SSDLite320"),
    _mmdet(300, "coco", "ssd/ssd300_coco/ssd300_coco_20210803_015428-d231a06e.pth", 25.5,
           6, 34_305_206),
    _mmdet(512, "coco", "ssd/ssd512_coco/ssd512_coco_20210803_022849-0a47a1ca.pth", 29.5,
           7, 36_038_196),
    _mmdet(300, "voc",
           "pascal_voc/ssd300_voc0712/ssd300_voc0712_20220320_194658-17edda1b.pth", 76.5,
           6, 26_285_486),
    _mmdet(512, "voc",
           "pascal_voc/ssd512_voc0712/ssd512_voc0712_20220320_194717-03cefefe.pth", 79.5,
           7, 27_188_676),
)

#: pretrained preset name -> PretrainedPreset, in the order above.
PRETRAINED = {p.name: p for p in _PRETRAINED}


def pretrained_names():
    """The pretrained detector presets' names, in registry order."""
    return list(PRETRAINED)


def find_pretrained(name) -> Optional[PretrainedPreset]:
    """The `PretrainedPreset` called `name` (any case, `-` or `_`), else `None`."""
    return PRETRAINED.get(_key(name))


def get_pretrained(name) -> PretrainedPreset:
    """The `PretrainedPreset` called `name`.

    Raises:
        ValueError: naming the unknown preset and listing the known ones.
    """
    preset = find_pretrained(name)
    if preset is None:
        hint = ""
        if find(name) is not None:
            hint = (f" ({name!r} is an architecture: build it with SSD300(...) / "
                    f"build_model({name!r}), or pick a pretrained preset)")
        raise ValueError(
            f"unknown pretrained preset {name!r}; choose one of "
            f"{', '.join(PRETRAINED)}{hint}"
        )
    return preset



#: The converters of `keras_ssd.models.convert`, one per published checkpoint.
SOURCE_NAMES = tuple(p.source for p in _PRETRAINED)


def for_source(source) -> PretrainedPreset:
    """The `PretrainedPreset` converted by the converter called `source`."""
    for preset in _PRETRAINED:
        if preset.source == source:
            return preset
    raise ValueError(f"unknown checkpoint source {source!r}; choose one of "
                     f"{', '.join(SOURCE_NAMES)}")
