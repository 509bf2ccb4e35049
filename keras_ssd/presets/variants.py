"""The named SSD variants: backbone, prior geometry and build defaults.

Each `Preset` says everything a variant is: its name and other accepted
spellings, the backbone network it is built on, the prior geometry of its
`SSDConfig`, and the defaults its model is built with. `SSDConfig.from_preset`,
the model builders (`SSD300`, ..., `build_model`, `SSD(architecture=...)`),
the `keras-ssd --model` choices and the docs all read this table. Data only.
"""

import dataclasses
from typing import Mapping, Optional, Tuple

from keras_ssd.deprecation import warn_deprecated
from keras_ssd.presets.recipes import FROM_SCRATCH, PAPER_SGD, Recipe


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named SSD variant.

    Attributes:
        name: the one spelling used everywhere (builders, CLI, docs, saved
            models).
        aliases: other spellings accepted for it (short forms such as
            `"ssdlite"`, torchvision's name).
        deprecated_aliases: keras-ssd 0.1's spellings (`"ssd300_vgg16"`,
            ...), still accepted with a `DeprecationWarning` until
            `keras_ssd.deprecation.REMOVED_IN`.
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
    deprecated_aliases: Tuple[str, ...] = ()

    @property
    def spellings(self):
        """The name and its aliases, the deprecated ones included."""
        return (self.name,) + tuple(self.aliases) + tuple(self.deprecated_aliases)


#: What the Caffe VGG16 variants share: L2Norm on conv4_3, Caffe's BGR mean
#: subtraction, ImageNet weights and the paper's recipe.
_CAFFE_VGG = dict(normalization="l2", preprocessing="caffe", pretrained_backbone=True,
                  recipe=PAPER_SGD)


def _geometry_320(steps, min_sizes, max_sizes, **extra):
    """The geometry of a 320 px variant with six maps (20, 10, 5, 3, 2, 1)
    and ratios {2, 3} on every map (6 priors per cell, 3234 in all); `extra`
    adds fields (`clip`). Fresh lists on every call."""
    return dict(image_size=320, feature_map_sizes=[20, 10, 5, 3, 2, 1], steps=list(steps),
                min_sizes=list(min_sizes), max_sizes=list(max_sizes),
                aspect_ratios=[[2, 3]] * 6, **extra)


#: lufficc/SSD's MobileNetV2-320 priors (configs/mobilenet_v2_ssd320_voc0712.yaml):
#: min sizes 60..285 px.
_LUFFICC_320 = dict(steps=(16, 32, 64, 107, 160, 320),
                    min_sizes=(60, 105, 150, 195, 240, 285),
                    max_sizes=(105, 150, 195, 240, 285, 330))

_PRESETS = (
    Preset(
        name="ssd300",
        aliases=(),
        deprecated_aliases=("ssd300_vgg16",),
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
        **_CAFFE_VGG,
        description="SSD300 on the reduced VGG16, the Caffe VOC geometry (8732 priors)",
    ),
    Preset(
        name="ssd512",
        aliases=(),
        deprecated_aliases=("ssd512_vgg16",),
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
        **_CAFFE_VGG,
        description="SSD512 on the reduced VGG16, the Caffe VOC geometry (24564 priors)",
    ),
    Preset(
        name="mobilenet_v2",
        aliases=(),
        deprecated_aliases=("ssd_mobilenet_v2", "mobilenetv2"),
        builder="SSDMobileNetV2",
        backbone="mobilenet_v2",
        geometry=_geometry_320(**_LUFFICC_320),
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
        geometry=_geometry_320(steps=[16, 32, 64, 320 / 3, 160, 320],
                               min_sizes=[64, 112, 160, 208, 256, 304],
                               max_sizes=[112, 160, 208, 256, 304, 320], clip="wh"),
        description="SSDLite320: MobileNetV3-Large (reduced tail) with SSDLite heads at "
                    "320 px, torchvision's layout (3234 priors)",
    ),
    Preset(
        name="ssdlite320_mobilenet_v2",
        aliases=("ssdlite_mobilenet_v2", "mobilenet_v2_ssdlite"),
        builder="SSDLite320MobileNetV2",
        backbone="mobilenet_v2_ssdlite",
        # lufficc/SSD's priors (the `mobilenet_v2` variant's), clamped to
        # [0, 1] as its PriorBox does.
        geometry=_geometry_320(**_LUFFICC_320, clip="cxcywh"),
        description="SSDLite320 on MobileNetV2 with PyTorch's padding and SSDLite heads "
                    "at 320 px, lufficc/SSD's layout (3234 priors)",
    ),
    Preset(
        name="tiny",
        aliases=(),
        deprecated_aliases=("ssd_tiny",),
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
    key = _key(name)
    if key not in _SPELLINGS:
        key = key.replace("_", "")
    preset = _SPELLINGS.get(key)
    if preset is None:
        raise ValueError(
            f"unknown SSD variant {name!r}; choose one of {', '.join(PRESETS)}"
        )
    if key in preset.deprecated_aliases:
        warn_deprecated(f"the SSD variant name {name!r}", repr(preset.name))
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

