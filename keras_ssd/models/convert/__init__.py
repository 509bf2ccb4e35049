"""Convert the published PyTorch SSD300 checkpoints into keras-ssd models,
exactly and without torch.

Three sources, each with its state-dict names and the way its own code runs
the network (priors, clipping, input normalisation, post-processing):

| source | checkpoint |
|---|---|
| `"torchvision"` | `ssd300_vgg16_coco-b556d3b4.pth` (torchvision `ssd300_vgg16`, COCO_V1) |
| `"amdegroot"` | `ssd300_mAP_77.43_v2.pth` (amdegroot/ssd.pytorch, VOC) |
| `"lufficc"` | `vgg_ssd300_voc0712.pth` (lufficc/SSD, VOC) |
| `"lufficc512"` | `vgg_ssd512_voc0712.pth` (lufficc/SSD SSD512, VOC) |
| `"torchvision_ssdlite"` | `ssdlite320_mobilenet_v3_large_coco-a79551df.pth` (torchvision SSDLite320, COCO) |
| `"lufficc_mobilenet_v2"` | `mobilenet_v2_ssd320_voc0712_v2.pth` (lufficc/SSD MobileNetV2 SSDLite320, VOC) |
| `"mmdet_ssd300_coco"` ... `"mmdet_ssd512_voc"` | mmdetection's VGG16 SSDs (v2 zoo) |

`convert_checkpoint(path)` reads the file with `keras_ssd.pth.load_pth`
(a restricted unpickler: nothing from the file runs) and returns an `SSD`
whose `config` has the source's priors and class names, whose
preprocessing layer normalises RGB 0..255 input as the source does, and
whose `postprocessing` holds the source's `DecodeDetections` options.

Example:

```python
from keras_ssd.models.convert import convert_checkpoint, SOURCES

model = convert_checkpoint("ssd300_vgg16_coco-b556d3b4.pth")   # source sniffed
model.config.clip, model.postprocessing["top_k"]                # ('wh', 200)
SOURCES["amdegroot"].geometry["min_sizes"]                      # [30, 60, 111, ...]
```
"""

from keras_ssd import presets
from keras_ssd.classes import VOC_CLASSES
from keras_ssd.models.convert import (  # the converters, one module per source family
    amdegroot, lufficc, lufficc512, lufficc_mobilenet_v2, mmdetection, torchvision,
    torchvision_ssdlite,
)
from keras_ssd.models.convert.layer_table import LayerTableSource
from keras_ssd.models.convert.common import (
    COCO_CATEGORIES_91,
    COCO_CATEGORY_IDS,
    COCO_CLASS_NAMES,
    COCO_CONFIG_CATEGORY_IDS,
    COCO_PLACEHOLDER_IDS,
    TORCHVISION_MAX_LOG_SCALE,
    ConversionError,
    Source,
    _strip_module_prefix,
    check_state_dict,
    coco_category_id,
    keras_weights,
    num_outputs_of,
)

__all__ = [
    "SOURCES",
    "Source",
    "ConversionError",
    "convert_state_dict",
    "convert_checkpoint",
    "sniff_source",
    "source_config",
    "VOC_CLASSES",
    "COCO_CATEGORIES_91",
    "COCO_CLASS_NAMES",
    "COCO_CATEGORY_IDS",
    "COCO_CONFIG_CATEGORY_IDS",
    "COCO_PLACEHOLDER_IDS",
    "coco_category_id",
    "TORCHVISION_MAX_LOG_SCALE",
]

#: name -> `Source`: each checkpoint origin's key layout, priors, clip mode,
#: preprocessing, post-processing and class names. The names are
#: `keras_ssd.presets.SOURCE_NAMES`; each source's converter is the module
#: of its name, or `mmdetection` for the four `mmdet_*` sources.
_CONVERTED = {s.name: s for s in (
    *(m.SOURCE for m in (amdegroot, lufficc, lufficc512, lufficc_mobilenet_v2,
                         torchvision, torchvision_ssdlite)),
    *mmdetection.SOURCES)}
SOURCES = {name: _CONVERTED[name] for name in presets.SOURCE_NAMES}


def get_source(source):
    """The `Source` called `source` (or a `Source` itself)."""
    if isinstance(source, Source):
        return source
    key = str(source).strip().lower()
    if key not in SOURCES:
        raise ValueError(
            f"unknown checkpoint source {source!r}; choose one of "
            f"{', '.join(SOURCES)} (or 'auto' to recognise it from the keys)")
    return SOURCES[key]


def sniff_source(state_dict, where=""):
    """The name of the source whose key layout `state_dict` has.

    Raises:
        ConversionError: no source's marker key is present (the message
            shows some of the keys).
    """
    state = _strip_module_prefix(dict(state_dict))
    found = [name for name, s in SOURCES.items() if s.claims(state)]
    if len(found) == 1:
        return found[0]
    shown = ", ".join(repr(k) for k in list(state)[:8])
    if len(found) > 1:
        raise ConversionError(
            f"{where}cannot tell which SSD this state dict is: it fits the key layouts "
            f"of {', '.join(found)}; pass source=")
    markers = ", ".join(repr(m) for m in dict.fromkeys(s.marker for s in SOURCES.values()))
    raise ConversionError(
        f"{where}cannot tell which SSD this state dict is: none of the marker keys "
        f"{markers} of the sources {', '.join(SOURCES)} is in it (an mmdetection "
        f"SSD is recognised only with its published class count, 80 COCO or 20 VOC "
        f"classes); its keys begin {shown}; pass source=")


def source_config(source, num_classes=None, class_names=None):
    """The `SSDConfig` of a source's model: its priors and clip mode, and its
    classes (or `num_classes` / `class_names` given)."""
    from keras_ssd.config import SSDConfig

    source = get_source(source)
    if class_names is None and (num_classes is None or num_classes == source.num_classes):
        class_names = list(source.class_names)
    if num_classes is None:
        num_classes = len(class_names)
    # The source's own classes keep their COCO category ids (torchvision:
    # label i -> id i + 1, None for the 'N/A' placeholders).
    category_ids = None
    if source.category_ids is not None and list(class_names or ()) == \
            list(source.class_names):
        category_ids = list(source.category_ids)
    return SSDConfig(num_classes=num_classes, class_names=class_names,
                     category_ids=category_ids,
                     **{k: (list(v) if isinstance(v, list) else v)
                        for k, v in source.geometry.items()})


def convert_state_dict(state_dict, source, *, num_classes=None, class_names=None,
                       name="ssd300", where=""):
    """A keras-ssd `SSD` holding the weights of a PyTorch SSD300 state dict.

    Args:
        state_dict: mapping of torch names to numpy arrays (as
            `keras_ssd.pth.load_pth(path, map_key="auto")` returns; a
            `module.` prefix from `nn.DataParallel` is dropped).
        source: a name of `SOURCES` (`"torchvision"`, `"amdegroot"`,
            `"lufficc"`, `"lufficc512"`, `"torchvision_ssdlite"`,
            `"lufficc_mobilenet_v2"`,
            `"mmdet_ssd300_coco"`, ...), a `Source`, or `"auto"` (recognised
            from the keys).
        num_classes: object classes (background excluded); default: what the
            checkpoint's class heads hold. When given it must agree with them.
        class_names: optional names; default the source's when the class
            count is the source's (COCO with `N/A-<id>` placeholders, or the
            20 VOC classes), else `class_0`, ...
        name: the model's name.
        where: prefix of error messages (the file name).

    Returns:
        An `SSD` (SSD300 architecture with L2Norm on conv4_3; `ssdlite320`
        for `"torchvision_ssdlite"`, `ssdlite320_mobilenet_v2` for
        `"lufficc_mobilenet_v2"`, `ssd512` for `"lufficc512"` and
        `"mmdet_ssd512_*"`) with
        `model.config` the source's priors (`clip` mode included) and
        classes, `model.preprocessing` its input normalisation and
        `model.postprocessing` its `DecodeDetections` options.

    Raises:
        ConversionError: keys missing or unexpected, a tensor of the wrong
            shape (each named), or a class count that disagrees.
    """
    from keras_ssd.models.ssd import SSD

    state = {str(k): v for k, v in dict(state_dict).items()}
    state = _strip_module_prefix(state)
    if isinstance(source, str) and source.strip().lower() == "auto":
        source = sniff_source(state, where)
    source = get_source(source)
    if isinstance(source, LayerTableSource):
        return _convert_layer_table(state, source, num_classes, class_names, name, where)
    num_outputs = num_outputs_of(state, source, where)
    if num_classes is not None and int(num_classes) + 1 != num_outputs:
        raise ConversionError(
            f"{where}num_classes={num_classes} disagrees with the checkpoint, whose class "
            f"heads predict {num_outputs} logits per prior ({num_outputs - 1} classes and "
            f"the background)")
    check_state_dict(state, source, num_outputs, where)
    weights = keras_weights(state, source, num_outputs)
    config = source_config(source, num_outputs - 1, class_names)
    model = SSD(config, architecture="ssd300", normalization="l2",
                preprocessing=dict(source.preprocessing),
                postprocessing=source.postprocessing_for(config.num_classes), name=name)
    for layer, arrays in weights.items():
        model.get_layer(layer).set_weights(arrays)
    return model


def _convert_layer_table(state, source, num_classes, class_names, name, where):
    """`convert_state_dict` for a source with its own layer table (SSDLite320,
    SSD512)."""
    from keras_ssd.models.ssd import SSD

    state = source.prepare(state)
    num_outputs = source.num_outputs_of(state, where)
    if num_classes is not None and int(num_classes) + 1 != num_outputs:
        raise ConversionError(
            f"{where}num_classes={num_classes} disagrees with the checkpoint, whose class "
            f"heads predict {num_outputs} logits per prior ({num_outputs - 1} classes and "
            f"the background)")
    source.check_state_dict(state, num_outputs, where)
    config = source_config(source, num_outputs - 1, class_names)
    model = SSD(config, architecture=source.architecture, normalization=source.normalization,
                preprocessing=dict(source.preprocessing),
                postprocessing=source.postprocessing_for(config.num_classes),
                name=source.architecture if name == "ssd300" else name)
    for layer, arrays in source.keras_weights(state, num_outputs).items():
        model.get_layer(layer).set_weights(arrays)
    return model


def convert_checkpoint(path, source="auto", *, num_classes=None, class_names=None,
                       name="ssd300", use_torch=False):
    """Read a `.pth` SSD300 checkpoint and convert it (`convert_state_dict`).

    The file is read by `keras_ssd.pth.load_pth` without torch and without
    running anything from it (`use_torch=True` reads with
    `torch.load(weights_only=True)` instead). Bare state dicts (torchvision,
    amdegroot), lufficc's `{"model": ...}` and mmdetection's `{"meta": ...,
    "state_dict": ...}` checkpoints all work.

    Args:
        path: the `.pth` file (zip or legacy torch format).
        source: `"auto"` (default: from the keys) or a name of `SOURCES`.
        num_classes, class_names, name: as `convert_state_dict`.
        use_torch: read with torch instead of the restricted reader.

    Returns:
        An `SSD` model.

    Raises:
        keras_ssd.pth.PthSecurityError: the file names a global outside the
            allow-list (nothing ran).
        keras_ssd.pth.PthFormatError: not a readable checkpoint.
        ConversionError: not the source's SSD300 (keys, shapes).

    Example:

    ```python
    model = convert_checkpoint("vgg_ssd300_voc0712.pth", source="lufficc")
    model.class_names[:3]        # ['aeroplane', 'bicycle', 'bird']
    ```
    """
    import os

    from keras_ssd import pth

    path = os.fspath(path)
    state = pth.load_pth(path, map_key="auto", use_torch=use_torch)
    return convert_state_dict(state, source, num_classes=num_classes,
                              class_names=class_names, name=name, where=f"{path}: ")
