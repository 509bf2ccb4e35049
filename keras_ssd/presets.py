"""The one registry of named SSD variants.

Each `Preset` says everything a variant is: its name and accepted old
spellings, the backbone network it is built on, the prior geometry of its
`SSDConfig`, and the defaults its model is built with. `SSDConfig.from_preset`,
the model builders (`SSD300`, ..., `build_model`, `SSD(architecture=...)`),
the `keras-ssd --model` choices and the docs all read this table.

A second table, `PRETRAINED`, names the published detector checkpoints that
keras-ssd converts (`PretrainedPreset`: URL, file, hash, source, accuracy,
post-processing defaults, fine-tuning recipe), read by
`SSD300.from_preset(name)` and `keras-ssd ... --preset NAME`; its names
(`pretrained_names()`) are not variants (`names()`).

This module holds data only (it imports nothing from keras_ssd), so every
layer of the package can read it.

Example:

>>> from keras_ssd import presets
>>> presets.names()
['ssd300', 'ssd512', 'mobilenet_v2', 'ssdlite320', 'tiny']
>>> presets.get("ssd300_vgg16").name   # an old spelling
'ssd300'
"""

import dataclasses
from typing import Mapping, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe: optimizer, learning-rate schedule and run length.

    `train_detector` and `keras-ssd train` fill every option the caller
    leaves unset from the recipe of the model's variant (`recipe_for`).

    Attributes:
        name: the recipe's name, printed at the start of a run.
        optimizer: `"sgd"` (with momentum), `"adam"` or `"adamw"`.
        learning_rate: the rate after warm-up.
        weight_decay: for `"sgd"`/`"adam"` an L2 penalty on the convolution
            kernels, built into the model (`weight_decay=` of the builders,
            Caffe-style, so it passes through the momentum); for `"adamw"`
            the optimizer's decoupled decay, applied to kernels only (not
            to biases or batch-norm scales and offsets).
        momentum: SGD momentum.
        schedule: `"step"` (x0.1 at `decay_epochs`, default 2/3 and 5/6 of
            the run) or `"cosine"` (to `final_lr_factor` of the rate at the
            end of the run).
        warmup_epochs: linear warm-up from `warmup_factor` of the rate.
        warmup_factor: fraction of the rate at step 0.
        final_lr_factor: cosine only: the rate at the end, as a fraction.
        epochs: default run length.
        batch_size: default images per step.
        augmentation: `SSDAugmentation` options that differ from the
            paper's (empty: the full Caffe recipe).
        why: one line on where the recipe comes from.
    """

    name: str
    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float = 0.9
    schedule: str = "step"
    warmup_epochs: float = 1.0
    warmup_factor: float = 0.1
    final_lr_factor: float = 0.0
    epochs: int = 120
    batch_size: int = 32
    augmentation: Mapping = dataclasses.field(default_factory=dict)
    why: str = ""

    def replace(self, **changes):
        """A copy with some fields changed (unknown names raise `TypeError`)."""
        return dataclasses.replace(self, **changes)

    @property
    def model_weight_decay(self):
        """The L2 penalty on convolution kernels that a model trained with
        this recipe is built with: `weight_decay` for SGD and Adam (coupled,
        Caffe-style), 0 for AdamW, whose decay is in the optimizer."""
        return 0.0 if self.optimizer == "adamw" else float(self.weight_decay)

    @property
    def optimizer_weight_decay(self):
        """The optimizer's decoupled weight decay: `weight_decay` for AdamW,
        0 for SGD and Adam (theirs is the model's, `model_weight_decay`).
        The two never both hold the decay."""
        return float(self.weight_decay) if self.optimizer == "adamw" else 0.0

    def describe(self):
        """One line: optimizer, rate, decay, schedule and length."""
        parts = [f"{self.optimizer} lr {self.learning_rate:g}"]
        if self.optimizer == "sgd":
            parts.append(f"momentum {self.momentum:g}")
        decay = "decoupled weight decay" if self.optimizer == "adamw" else "L2 on kernels"
        parts.append(f"{decay} {self.weight_decay:g}")
        parts.append(f"warm-up {self.warmup_epochs:g} epoch(s) from x{self.warmup_factor:g}")
        if self.schedule == "cosine":
            parts.append(f"cosine decay to x{self.final_lr_factor:g}")
        else:
            parts.append("x0.1 steps at 2/3 and 5/6 of the run")
        parts.append(f"{self.epochs} epochs of batch {self.batch_size}")
        if self.augmentation:
            parts.append("augmentation " + ", ".join(
                f"{k}={v}" for k, v in sorted(self.augmentation.items())))
        return f"{self.name}: " + "; ".join(parts)


#: The SSD paper's recipe (Liu et al. 2016; REFERENCE section 3) for a
#: VGG16 that starts from ImageNet weights: SGD 1e-3, momentum 0.9, L2 5e-4,
#: x0.1 at 80k and 100k of 120k iterations (2/3 and 5/6 of the run).
PAPER_SGD = Recipe(
    name="paper-sgd",
    optimizer="sgd",
    learning_rate=1e-3,
    weight_decay=5e-4,
    momentum=0.9,
    schedule="step",
    warmup_epochs=1.0,
    warmup_factor=0.1,
    epochs=120,
    batch_size=32,
    why="the SSD paper's recipe, for a VGG16 backbone that starts from ImageNet weights",
)

#: The recipe for a network that starts from random weights (the tiny model,
#: or any backbone built without pretrained weights). See docs/training.md
#: for the measurements behind each value.
FROM_SCRATCH = Recipe(
    name="from-scratch-adamw",
    optimizer="adamw",
    learning_rate=3e-3,
    weight_decay=5e-4,
    schedule="cosine",
    warmup_epochs=1.0,
    warmup_factor=0.1,
    final_lr_factor=0.01,
    epochs=60,
    batch_size=32,
    why="AdamW with warm-up and cosine decay: measured on the real-photo learning "
        "benchmark (benchmarks/learning.py), where the paper's SGD barely moves a "
        "network that starts from random weights",
)

#: Fine-tuning a converted detector (`SSD300.from_preset(..., num_classes=)`,
#: `keras-ssd train --preset`): the paper's SGD at its VGG rate, shorter.
#: Every layer but the new class heads already holds detection weights, so
#: the small, momentum-smoothed SGD step of the paper keeps the trained
#: features while the heads learn; the from-scratch AdamW rate (3e-3) would
#: move them far from where the source left them. The length (30 epochs, a
#: quarter of the ImageNet start's) is a starting point, not a measurement.
FINETUNE_SGD = Recipe(
    name="finetune-sgd",
    optimizer="sgd",
    learning_rate=1e-3,
    weight_decay=5e-4,
    momentum=0.9,
    schedule="step",
    warmup_epochs=1.0,
    warmup_factor=0.1,
    epochs=30,
    batch_size=32,
    why="the SSD paper's SGD for a VGG16 that already is a detector: new class heads on "
        "trained features; a shorter run (30 epochs, not measured)",
)

#: Fine-tuning the converted SSDLite320 (`ssdlite320_coco`): the fine-tuning
#: SGD with the weight decay of torchvision's SSDLite recipe (4e-5, as the
#: MobileNets are trained with; the VGG's 5e-4 would pull a 3.4 M-parameter
#: network hard towards zero). Not measured.
FINETUNE_SSDLITE = FINETUNE_SGD.replace(
    name="finetune-ssdlite-sgd",
    weight_decay=4e-5,
    why="the fine-tuning SGD with torchvision's SSDLite weight decay (4e-5) for a "
        "MobileNetV3 that already is a detector (not measured)",
)

RECIPES = {r.name: r for r in (PAPER_SGD, FROM_SCRATCH, FINETUNE_SGD, FINETUNE_SSDLITE)}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named SSD variant.

    Attributes:
        name: the one spelling used everywhere (builders, CLI, docs, saved
            models).
        aliases: other spellings accepted when reading (keras-ssd 0.1 saved
            models store `architecture="ssd300_vgg16"` and the like).
        builder: name of the `keras_ssd.models` function that builds it.
        backbone: key of the backbone network in `keras_ssd.models.backbones`.
        geometry: the `SSDConfig` fields of its priors (all but the classes).
        num_classes: default number of object classes.
        normalization: default normalisation of the first source map.
        preprocessing: `ImagePreprocessing` mode its backbone expects.
        pretrained_backbone: whether `backbone_weights="imagenet"` exists.
        description: one line for docs and `--help`.
        recipe: the default training recipe when the backbone starts from
            pretrained weights (or has none to start from);
        scratch_recipe: the one used when it starts from random weights.
    """

    name: str
    aliases: Tuple[str, ...]
    builder: str
    backbone: str
    geometry: Mapping
    num_classes: int = 20
    normalization: str = "none"
    preprocessing: str = "tf"
    pretrained_backbone: bool = False
    description: str = ""
    recipe: Recipe = FROM_SCRATCH
    scratch_recipe: Recipe = FROM_SCRATCH

    @property
    def spellings(self):
        """The name and its aliases."""
        return (self.name,) + tuple(self.aliases)


_PRESETS = (
    Preset(
        name="ssd300",
        aliases=("ssd300_vgg16",),
        builder="SSD300",
        backbone="vgg16_300",
        geometry=dict(
            image_size=300,
            feature_map_sizes=[38, 19, 10, 5, 3, 1],
            steps=[8, 16, 32, 64, 100, 300],
            min_sizes=[30, 60, 111, 162, 213, 264],
            max_sizes=[60, 111, 162, 213, 264, 315],
            aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        ),
        normalization="l2",
        preprocessing="caffe",
        pretrained_backbone=True,
        description="SSD300 on the reduced VGG16, the Caffe VOC geometry (8732 priors)",
        recipe=PAPER_SGD,
    ),
    Preset(
        name="ssd512",
        aliases=("ssd512_vgg16",),
        builder="SSD512",
        backbone="vgg16_512",
        geometry=dict(
            image_size=512,
            feature_map_sizes=[64, 32, 16, 8, 4, 2, 1],
            steps=[8, 16, 32, 64, 128, 256, 512],
            min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
            max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
            aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
        ),
        normalization="l2",
        preprocessing="caffe",
        pretrained_backbone=True,
        description="SSD512 on the reduced VGG16, the Caffe VOC geometry (24564 priors)",
        recipe=PAPER_SGD,
    ),
    Preset(
        name="mobilenet_v2",
        aliases=("ssd_mobilenet_v2", "mobilenetv2"),
        builder="SSDMobileNetV2",
        backbone="mobilenet_v2",
        # lufficc/SSD's MobileNetV2-320: min sizes 60..285 px, 6 boxes per cell.
        geometry=dict(
            image_size=320,
            feature_map_sizes=[20, 10, 5, 3, 2, 1],
            steps=[16, 32, 64, 107, 160, 320],
            min_sizes=[60, 105, 150, 195, 240, 285],
            max_sizes=[105, 150, 195, 240, 285, 330],
            aspect_ratios=[[2, 3]] * 6,
        ),
        pretrained_backbone=True,
        description="SSD on Keras' MobileNetV2 at 320 px (3234 priors)",
        # AdamW from ImageNet weights too: the paper's SGD is the recipe of
        # its VGG16 (tuned for that backbone and its L2-normalised conv4_3);
        # nothing was measured for MobileNetV2 with it.
        recipe=FROM_SCRATCH,
        scratch_recipe=FROM_SCRATCH,
    ),
    Preset(
        name="ssdlite320",
        aliases=("ssdlite320_mobilenet_v3_large", "ssdlite"),
        builder="SSDLite320",
        backbone="mobilenet_v3_large_ssdlite",
        # torchvision's DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2,
        # max_ratio=0.95) at 320 px: scales 0.2 + 0.15 k (and 1.0 for the
        # last max), no steps given, so each map's centres are (i + 0.5) /
        # size (step = 320 / size); widths and heights clipped to the image.
        geometry=dict(
            image_size=320,
            feature_map_sizes=[20, 10, 5, 3, 2, 1],
            steps=[16, 32, 64, 320 / 3, 160, 320],
            min_sizes=[64, 112, 160, 208, 256, 304],
            max_sizes=[112, 160, 208, 256, 304, 320],
            aspect_ratios=[[2, 3]] * 6,
            clip="wh",
        ),
        description="SSDLite320: MobileNetV3-Large (reduced tail) with SSDLite heads at "
                    "320 px, torchvision's layout (3234 priors)",
    ),
    Preset(
        name="tiny",
        aliases=("ssd_tiny",),
        builder="SSDTiny",
        backbone="tiny",
        # 160 px, maps 20..1 (steps = 160 / size); prior scales 0.1 to 0.9 of
        # the image as in the SSD paper: min sizes 16, 32, 64, 104, 144 px,
        # each map's max size the next map's min size (176 for the last).
        geometry=dict(
            image_size=160,
            feature_map_sizes=[20, 10, 5, 3, 1],
            steps=[8, 16, 32, 160 / 3, 160],
            min_sizes=[16, 32, 64, 104, 144],
            max_sizes=[32, 64, 104, 144, 176],
            aspect_ratios=[[2], [2, 3], [2, 3], [2], [2]],
        ),
        description="a tiny conv-BN-ReLU SSD at 160 px for CPU experiments (2390 priors)",
    ),
)

#: The variant a time-limited run trains from scratch when no `--model` is
#: given (`keras-ssd train --time-limit`): the one measured best per second of
#: CPU on the learning suite (docs/training.md, "Which model for a budget").
FROM_SCRATCH_VARIANT = "tiny"

#: canonical name -> Preset, in the order of the table above.
PRESETS = {p.name: p for p in _PRESETS}

_SPELLINGS = {s: p for p in _PRESETS for s in p.spellings}


def _key(name):
    return str(name).strip().lower().replace("-", "_")


def names():
    """The canonical variant names, in registry order."""
    return list(PRESETS)


def canonical_name(name):
    """The canonical spelling of `name` (an alias, any case, `-` or `_`).

    Raises:
        ValueError: naming the unknown variant and listing the known ones.
    """
    return get(name).name


def get(name) -> Preset:
    """The `Preset` called `name` (or one of its aliases).

    Raises:
        ValueError: naming the unknown variant and listing the known ones.
    """
    preset = _SPELLINGS.get(_key(name))
    if preset is None:
        preset = _SPELLINGS.get(_key(name).replace("_", ""))
    if preset is None:
        raise ValueError(
            f"unknown SSD variant {name!r}; choose one of {', '.join(PRESETS)}"
        )
    return preset


def find(name) -> Optional[Preset]:
    """`get(name)`, or `None` when no variant is called that."""
    try:
        return get(name)
    except ValueError:
        return None


def recipe_for(name, pretrained=None) -> Recipe:
    """The default training recipe of variant `name`.

    Args:
        name: a variant name or alias.
        pretrained: whether the backbone starts from pretrained weights;
            `None` means the variant's default (pretrained where it has
            pretrained weights). A backbone started from random weights
            gets the variant's `scratch_recipe`.

    Returns:
        A `Recipe`.
    """
    preset = get(name)
    if pretrained is None:
        pretrained = preset.pretrained_backbone
    return preset.recipe if pretrained and preset.pretrained_backbone else preset.scratch_recipe


#: The optimizers and learning-rate schedules a `Recipe` may name.
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine")


def resolve_recipe(recipe=None, variant=None, pretrained=None, **overrides) -> Recipe:
    """The recipe a run uses: a base recipe with the caller's choices on top.

    What `keras_ssd.training.train_detector` and `keras-ssd train` both call.

    Args:
        recipe: a `Recipe`, the name of one (`RECIPES`) or `None`: then the
            recipe of `variant` (`recipe_for(variant, pretrained)`), or
            `FROM_SCRATCH` when `variant` is `None` or not a known variant.
        variant: a variant name or alias.
        pretrained: whether the backbone starts from pretrained weights
            (`None`: the variant's default).
        **overrides: `Recipe` fields; `None` values are ignored. A change to
            anything but `epochs` and `batch_size` names the result
            `"<base> (changed)"` unless `name` is given.

    Returns:
        A `Recipe`.

    Raises:
        ValueError: an unknown recipe name, optimizer or schedule.
        TypeError: an override that is no `Recipe` field.
    """
    if recipe is None:
        recipe = (recipe_for(variant, pretrained=pretrained)
                  if variant is not None and find(variant) is not None else FROM_SCRATCH)
    elif isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    elif not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe or a recipe name, got {recipe!r}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "optimizer" in changes:
        changes["optimizer"] = str(changes["optimizer"]).lower()
        if changes["optimizer"] not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {overrides['optimizer']!r}")
    schedule = changes.get("schedule", recipe.schedule)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if set(changes) - {"epochs", "batch_size"}:
        changes.setdefault("name", f"{recipe.name} (changed)")
    return recipe.replace(**changes) if changes else recipe


# ------------------------------------------------------- pretrained detectors
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
            category ids 1..90) or `"voc"` (background and the 20 VOC classes).
        trained_on: the training data.
        metric: what `accuracy` measures.
        accuracy: the accuracy the source reports.
        home: the source's project page.
        file_size: the file's size as the source states it, or an estimate
            that says so (text).
        decode: the source's post-processing defaults, as `DecodeDetections`
            options (the converted model's decoder starts from them).
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


_PRETRAINED = (
    PretrainedPreset(
        name="ssd300_coco",
        architecture="ssd300",
        source="torchvision",
        url="https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth",
        file_name="ssd300_vgg16_coco-b556d3b4.pth",
        sha256=None,
        sha256_prefix="b556d3b4",
        hash_note="torchvision publishes the first 8 hex digits of the SHA-256 in the "
                  "file name (torch.hub checks only those); the full hash is not "
                  "published, so only the prefix is checked",
        classes="coco",
        trained_on="COCO train2017",
        metric="COCO val2017 box AP",
        accuracy=25.1,
        home="https://pytorch.org/vision/stable/models/generated/"
             "torchvision.models.detection.ssd300_vgg16.html",
        file_size="136 MiB",
        # torchvision SSD.postprocess_detections: score > 0.01, 400 per class
        # before NMS 0.45, 200 per image, boxes clipped to the image.
        decode=dict(confidence_threshold=0.01, iou_threshold=0.45,
                    max_candidates_per_class=400, top_k=200, clip_boxes=True),
        description="torchvision's ssd300_vgg16 (COCO_V1 weights): 80 COCO classes",
    ),
    PretrainedPreset(
        name="ssd300_voc",
        architecture="ssd300",
        source="lufficc",
        url="https://github.com/lufficc/SSD/releases/download/1.2/vgg_ssd300_voc0712.pth",
        file_name="vgg_ssd300_voc0712.pth",
        sha256=None,
        sha256_prefix="",
        hash_note="lufficc/SSD publishes no hash for its release 1.2 assets: the file "
                  "cannot be checked against a published value; keras-ssd records "
                  "the hash of the file it first downloads and checks the file "
                  "against that record afterwards",
        classes="voc",
        trained_on="VOC2007 trainval + VOC2012 trainval",
        metric="VOC2007 test mAP",
        accuracy=77.7,
        home="https://github.com/lufficc/SSD",
        file_size="201 MB (the state dict and the optimizer's state)",
        # lufficc/SSD PostProcessor: score > 0.01, NMS 0.45 over all
        # candidates of a class, 100 per image, boxes not clipped.
        decode=dict(confidence_threshold=0.01, iou_threshold=0.45,
                    max_candidates_per_class=8732, top_k=100, clip_boxes=False),
        description="lufficc/SSD's VGG16 SSD300 on VOC07+12 (release 1.2): 20 VOC classes",
    ),
    PretrainedPreset(
        name="ssd300_voc_amdegroot",
        architecture="ssd300",
        source="amdegroot",
        url="https://s3.amazonaws.com/amdegroot-models/ssd300_mAP_77.43_v2.pth",
        file_name="ssd300_mAP_77.43_v2.pth",
        sha256=None,
        sha256_prefix="",
        hash_note="amdegroot/ssd.pytorch publishes no hash for its weights: the file "
                  "cannot be checked against a published value; keras-ssd records "
                  "the hash of the file it first downloads and checks the file "
                  "against that record afterwards",
        classes="voc",
        trained_on="VOC2007 trainval + VOC2012 trainval",
        metric="VOC2007 test mAP",
        accuracy=77.43,
        home="https://github.com/amdegroot/ssd.pytorch",
        file_size="about 105 MB (26.3 M float32 parameters; the source states no size)",
        # amdegroot Detect(21, 0, 200, 0.01, 0.45): score > 0.01, the best
        # 200 of a class enter NMS 0.45, no cap per image, boxes not clipped.
        decode=dict(confidence_threshold=0.01, iou_threshold=0.45,
                    max_candidates_per_class=200, top_k=4000, clip_boxes=False),
        description="amdegroot/ssd.pytorch's SSD300 on VOC07+12: 20 VOC classes",
    ),
    PretrainedPreset(
        name="ssd512_voc",
        architecture="ssd512",
        source="lufficc512",
        url="https://github.com/lufficc/SSD/releases/download/1.2/vgg_ssd512_voc0712.pth",
        file_name="vgg_ssd512_voc0712.pth",
        sha256=None,
        sha256_prefix="",
        hash_note="lufficc/SSD publishes no hash for its release 1.2 assets: the file "
                  "cannot be checked against a published value; keras-ssd records "
                  "the hash of the file it first downloads and checks the file "
                  "against that record afterwards",
        classes="voc",
        trained_on="VOC2007 trainval + VOC2012 trainval",
        metric="VOC2007 test mAP",
        accuracy=80.7,
        home="https://github.com/lufficc/SSD",
        file_size="207 MB (the state dict and the optimizer's state)",
        # lufficc/SSD PostProcessor: score > 0.01, NMS 0.45 over all
        # candidates of a class, 100 per image, boxes not clipped.
        decode=dict(confidence_threshold=0.01, iou_threshold=0.45,
                    max_candidates_per_class=24564, top_k=100, clip_boxes=False),
        description="lufficc/SSD's VGG16 SSD512 on VOC07+12 (release 1.2): 20 VOC classes",
    ),
    PretrainedPreset(
        name="ssdlite320_coco",
        architecture="ssdlite320",
        source="torchvision_ssdlite",
        url="https://download.pytorch.org/models/"
            "ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
        file_name="ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
        sha256=None,
        sha256_prefix="a79551df",
        hash_note="torchvision publishes the first 8 hex digits of the SHA-256 in the "
                  "file name (torch.hub checks only those); the full hash is not "
                  "published, so only the prefix is checked",
        classes="coco",
        trained_on="COCO train2017",
        metric="COCO val2017 box AP",
        accuracy=21.3,
        home="https://pytorch.org/vision/stable/models/generated/"
             "torchvision.models.detection.ssdlite320_mobilenet_v3_large.html",
        file_size="13.4 MB",
        # torchvision ssdlite320_mobilenet_v3_large's SSD defaults: score >
        # 0.001, 300 per class before NMS 0.55, 300 per image, boxes clipped.
        decode=dict(confidence_threshold=0.001, iou_threshold=0.55,
                    max_candidates_per_class=300, top_k=300, clip_boxes=True),
        recipe=FINETUNE_SSDLITE,
        description="torchvision's ssdlite320_mobilenet_v3_large (COCO_V1 weights): 80 "
                    "COCO classes, 3.4 M parameters",
    ),
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
