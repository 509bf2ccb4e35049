"""The one registry of named SSD variants.

Each `Preset` says everything a variant is: its name and accepted old
spellings, the backbone network it is built on, the prior geometry of its
`SSDConfig`, and the defaults its model is built with. `SSDConfig.from_preset`,
the model builders (`SSD300`, ..., `build_model`, `SSD(architecture=...)`),
the `keras-ssd --model` choices and the docs all read this table.

This module holds data only (it imports nothing from keras_ssd), so every
layer of the package can read it.

Example:

>>> from keras_ssd import presets
>>> presets.names()
['ssd300', 'ssd512', 'mobilenet_v2', 'tiny']
>>> presets.get("ssd300_vgg16").name   # an old spelling
'ssd300'
"""

import dataclasses
from typing import Mapping, Optional, Tuple


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
