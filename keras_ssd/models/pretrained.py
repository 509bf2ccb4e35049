"""Pretrained SSD detectors: download once, check, convert, cache.

`from_preset(name)` (also `keras_ssd.SSD300.from_preset`) turns a preset of
`keras_ssd.presets.PRETRAINED` into a keras-ssd model:

1. the checkpoint is downloaded once with `urllib` into
   `$KERAS_SSD_CACHE_DIR/pretrained/` (default `~/.cache/keras_ssd/pretrained/`),
   written to `<file>.part` and renamed into place only once complete and
   its SHA-256 checked (a mismatch deletes the partial file and raises,
   naming the file and both hashes);
2. it is converted with `keras_ssd.models.convert.convert_checkpoint` (a
   restricted reader: nothing in the file is executed);
3. the converted model is saved beside it as a `.keras` file, which later
   calls load instead of converting again.

On top of the full detector, `from_preset` makes the two detectors users
ask for: new class heads for fine-tuning (`num_classes=` / `class_names=`,
`with_new_heads`) and a detector restricted to some of the source's classes
without any training (`classes=`, `with_class_subset`).

Example:

>>> model = from_preset("ssd300_coco")                      # 80 COCO classes
>>> model = from_preset("ssd300_coco", classes=["person", "car"])
>>> model = from_preset("ssd300_voc", class_names=["cat", "dog"], freeze="backbone")
"""

import dataclasses
import hashlib
import math
import os
import shutil
import urllib.error
import urllib.request
import warnings

import numpy as np

from keras_ssd import presets
from keras_ssd.models.weights_files import DownloadError
from keras_ssd.version import __version__

__all__ = [
    "BACKGROUND_PRIOR",
    "FREEZE_MODES",
    "ChecksumError",
    "DownloadError",
    "background_bias",
    "cache_dir",
    "checkpoint_path",
    "converted_path",
    "download",
    "freeze_layers",
    "freeze_modes",
    "from_preset",
    "load_pretrained",
    "sha256_file",
    "with_class_subset",
    "with_new_heads",
]

#: The environment variable naming keras-ssd's cache folder.
CACHE_ENV = "KERAS_SSD_CACHE_DIR"

#: Initial foreground probability of re-initialised class heads: the
#: softmax gives all object classes together 1% of every prior at the start
#: (each class 1% / K), background 99%, as the focal-loss paper's prior
#: pi = 0.01 (torchvision's RetinaNet head) does for its sigmoid outputs.
BACKGROUND_PRIOR = 0.01

#: `freeze=` choices of `from_preset` / `freeze_layers` -> frozen layer names.
#: `"conv1-conv2"` is the Caffe SSD recipe (its prototxt gives conv1_x and
#: conv2_x a learning rate of 0); `"backbone"` the whole reduced VGG16
#: (conv1_1 .. conv5_3, fc6, fc7), leaving the L2Norm scale, the extra
#: layers and the heads to train.
FREEZE_MODES = {
    "conv1-conv2": ("conv1_1", "conv1_2", "conv2_1", "conv2_2"),
    "backbone": tuple(f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                      for i in range(1, n + 1)) + ("fc6", "fc7"),
}

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A checkpoint's SHA-256 is not the one expected."""


# ------------------------------------------------------------ where files go
def cache_dir():
    """keras-ssd's cache folder: `$KERAS_SSD_CACHE_DIR`, else `~/.cache/keras_ssd`."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or os.path.join("~", ".cache",
                                                                         "keras_ssd"))


def _preset(preset):
    if isinstance(preset, presets.PretrainedPreset):
        return preset
    return presets.get_pretrained(preset)


def checkpoint_path(preset):
    """Where the checkpoint of `preset` (a name or `PretrainedPreset`) lives:
    `cache_dir()/pretrained/<file_name>`."""
    return os.path.join(cache_dir(), "pretrained", _preset(preset).file_name)


def converted_path(preset):
    """Where the converted `.keras` model of `preset` is cached (beside the
    checkpoint; the keras-ssd version is in the name, so a release with a
    changed converter converts again)."""
    preset = _preset(preset)
    return os.path.join(cache_dir(), "pretrained",
                        f"{preset.name}-keras_ssd_{__version__}.keras")


def sha256_file(path):
    """The SHA-256 of a file, in lower-case hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(path):
    return f"{path}.sha256"


def _expected_hash(preset, path):
    """The hash `path` must have: published (full or prefix), else the one
    recorded when the file first came (`<file>.sha256`), else `""`."""
    if preset.known_hash:
        return preset.known_hash
    try:
        with open(_record_path(path), "r", encoding="ascii") as f:
            return f.read().split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def _matches(digest, expected):
    """A full hash must be equal, a published prefix must begin the digest."""
    return digest == expected if len(expected) == 64 else digest.startswith(expected)


def _check_hash(preset, path, digest, expected, downloaded):
    if not expected or _matches(digest, expected):
        return
    what = "full SHA-256" if len(expected) == 64 else f"SHA-256 prefix ({len(expected)} hex)"
    origin = (f"downloaded from {preset.url}" if downloaded
              else f"in the cache ({path})")
    raise ChecksumError(
        f"{preset.file_name} {origin} has SHA-256 {digest}, but the {what} of preset "
        f"{preset.name!r} is {expected}"
        + (": the partial download was deleted; try again, or download it by hand"
           if downloaded else "; delete the file and download it again")
    )


# ------------------------------------------------------------------ download
def _urllib_fetch(url, destination):
    """Copy `url` to the file `destination` with `urllib` (http(s), file)."""
    with urllib.request.urlopen(url, timeout=60) as response, \
            open(destination, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _by_hand(preset, path):
    # Kept short: the command line prints errors on one line of at most 500
    # characters, and the path must survive.
    return (f"download it by hand and put it at {path}, or convert a local copy with "
            f"keras_ssd.convert_checkpoint(FILE, source={preset.source!r})")


def download(preset, fetch=None, verbose=True):
    """The local path of `preset`'s checkpoint, downloaded if not there yet.

    Args:
        preset: a `keras_ssd.presets.PRETRAINED` name or a `PretrainedPreset`.
        fetch: `(url, destination_path) -> None` that writes the file (the
            default uses `urllib.request.urlopen`; tests pass their own).
        verbose: print what is downloaded.

    Returns:
        The path, `checkpoint_path(preset)`.

    Raises:
        DownloadError (an `OSError`): the download failed (no network, a dead
            link); the message names the URL and the exact path to put the
            file at by hand.
        ChecksumError (a `ValueError`): the file's SHA-256 is not the
            published one (or, where none is published, not the one recorded
            at the first download).
    """
    preset = _preset(preset)
    path = checkpoint_path(preset)
    if os.path.isfile(path):
        expected = _expected_hash(preset, path)
        digest = sha256_file(path)
        _check_hash(preset, path, digest, expected, downloaded=False)
        if not expected:
            _record(path, digest)
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    part = f"{path}.part"
    if verbose:
        print(f"downloading {preset.url} ({preset.file_size}) to {path}")
    try:
        (fetch or _urllib_fetch)(preset.url, part)
    except (urllib.error.URLError, OSError, ValueError) as e:
        _remove(part)
        reason = getattr(e, "reason", None) or e
        raise DownloadError(
            f"cannot download the {preset.name!r} checkpoint {preset.url}: "
            f"{_by_hand(preset, path)} ({str(reason)[:120]})"
        ) from None
    except BaseException:
        _remove(part)
        raise
    if not os.path.isfile(part):
        raise DownloadError(f"downloading {preset.url} wrote no file {part}; "
                            f"{_by_hand(preset, path)}")
    digest = sha256_file(part)
    try:
        _check_hash(preset, path, digest, preset.known_hash, downloaded=True)
    except ChecksumError:
        _remove(part)
        raise
    os.replace(part, path)
    if not preset.known_hash:
        _record(path, digest)
    if verbose:
        print(f"  SHA-256 {digest}"
              + (f" (published prefix {preset.sha256_prefix} matches)"
                 if preset.sha256_prefix and not preset.sha256 else ""))
    return path


def _record(path, digest):
    """Keep the hash of a file that has no published full hash beside it."""
    try:
        with open(_record_path(path), "w", encoding="ascii") as f:
            f.write(f"{digest}  {os.path.basename(path)}\n")
    except OSError:
        pass


# ----------------------------------------------------------------- convert
def _default_converter(path, source):
    from keras_ssd.models.convert import convert_checkpoint

    return convert_checkpoint(path, source=source)


def _save_atomically(model, path):
    base = path[: -len(".keras")]
    temporary = f"{base}.part-{os.getpid()}.keras"
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        _remove(temporary)
        raise


def _cache_problem(target):
    """Why the cached converted model cannot be trusted, or None: its SHA-256
    must be the one recorded beside it (`<file>.sha256`) when it was written,
    so that another model placed under that name is not returned."""
    try:
        with open(_record_path(target), "r", encoding="ascii") as f:
            recorded = f.read().split()[0].lower()
    except (OSError, IndexError, UnicodeDecodeError):
        return f"no SHA-256 recorded beside it ({_record_path(target)})"
    digest = sha256_file(target)
    if digest != recorded:
        return (f"its SHA-256 {digest} is not the {recorded} recorded when it was written "
                "(replaced or damaged)")
    return None


def load_pretrained(preset, converter=None, fetch=None, cache=True, verbose=True):
    """The full converted detector of a pretrained preset.

    A `.keras` file cached by an earlier call (`converted_path`) is loaded
    when its SHA-256 is the one recorded beside it when it was written
    (`<file>.sha256`); otherwise (no record, another hash, unreadable: a
    warning says which) the checkpoint is downloaded (`download`),
    converted and the result cached with its hash recorded.

    Args:
        preset: a `keras_ssd.presets.PRETRAINED` name or a `PretrainedPreset`.
        converter: `(path, source) -> model` (default:
            `keras_ssd.models.convert.convert_checkpoint`).
        fetch: the downloader (see `download`).
        cache: read and write the cached `.keras` file.
        verbose: print what is downloaded and converted.

    Returns:
        The `SSD` model the converter makes (`architecture="ssd300"`, all the
        source's logits, its class names).
    """
    import keras

    import keras_ssd.layers  # noqa: F401 - registers the layers a .keras file names
    import keras_ssd.models.ssd  # noqa: F401
    from keras_ssd.models.weights_files import check_keras_archive

    preset = _preset(preset)
    target = converted_path(preset)
    if cache and os.path.isfile(target):
        problem = _cache_problem(target)
        if problem is None:
            try:
                check_keras_archive(target)
                return keras.saving.load_model(target, compile=False)
            except Exception as e:  # noqa: BLE001 - a damaged cache file is converted again
                problem = f"cannot load it ({e})"
        warnings.warn(f"the cached {target}: {problem}; converting again", stacklevel=2)
    path = download(preset, fetch=fetch, verbose=verbose)
    if verbose:
        print(f"converting {path} ({preset.source})")
    model = (converter or _default_converter)(path, preset.source)
    if cache:
        _save_atomically(model, target)
        _record(target, sha256_file(target))
        if verbose:
            print(f"  cached as {target}")
    return model


# ---------------------------------------------------- new heads, subsets
def background_bias(num_classes, prior=BACKGROUND_PRIOR):
    """The background logit that makes the initial softmax give all
    `num_classes` object classes together probability `prior` (foreground
    logits 0): `log(num_classes * (1 - prior) / prior)`, 5.69 for 3 classes
    at 0.01."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must lie in (0, 1), got {prior!r}")
    return float(math.log(num_classes * (1.0 - prior) / prior))


def _rebuild(model, config, **changes):
    """A fresh model like `model` (same class, same arguments) with another
    `SSDConfig` and `changes` to its constructor arguments."""
    arguments = dict(model.get_config())
    arguments["config"] = config.to_dict()
    arguments.update(changes)
    return type(model).from_config(arguments)


def _head_layer(name):
    return name.endswith("_mbox_conf")


def with_new_heads(model, num_classes=None, class_names=None, keep_box_heads=True,
                   prior=BACKGROUND_PRIOR, weight_decay=None, seed=None):
    """A copy of `model` with new class heads for other classes.

    The backbone, the extra layers and (by default) the box heads keep their
    weights; the six class heads get new kernels (normal, std 0.01, as
    RetinaNet's) and biases of the background prior: background
    `background_bias(num_classes, prior)`, objects 0, so that the first
    softmax gives the objects together `prior` (1%) of every prior box.

    The box heads are kept because SSD's box regression is class-agnostic
    (4 offsets per prior box, shared by all classes): the source's heads
    already regress boxes around objects, so the new detector's boxes are
    good from the first step and only the classes have to be learned.
    `keep_box_heads=False` re-initialises them too.

    Args:
        model: a keras-ssd `SSD` model.
        num_classes: object classes (default `len(class_names)`).
        class_names: their names.
        keep_box_heads: keep the box heads' weights (default) or start them
            afresh.
        prior: initial foreground probability (all object classes together).
        weight_decay: the new model's L2 weight decay on kernels (default:
            the model's).
        seed: seed of the new heads' kernels.

    Returns:
        A new `SSD` model; the original is unchanged.
    """
    if num_classes is None and class_names is None:
        raise ValueError("with_new_heads: give num_classes or class_names")
    config = model.config
    if class_names is not None:
        class_names = [str(n) for n in class_names]
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(f"num_classes={num_classes} disagrees with the "
                             f"{len(class_names)} class_names {class_names}")
        num_classes = len(class_names)
    changes = dict(num_classes=int(num_classes), class_names=class_names)
    if "class_subset" in {f.name for f in dataclasses.fields(config)}:
        changes["class_subset"] = None
    if "category_ids" in {f.name for f in dataclasses.fields(config)}:
        changes["category_ids"] = None  # new classes: the source's COCO ids do not apply
    new_config = config.replace(**changes)
    extra = {} if weight_decay is None else {"weight_decay": float(weight_decay)}
    new = _rebuild(model, new_config, **extra)
    rng = np.random.default_rng(seed)
    background = background_bias(new_config.num_classes, prior)
    for layer in new.layers:
        if not layer.weights:
            continue
        is_box = layer.name.endswith("_mbox_loc")
        if _head_layer(layer.name) or (is_box and not keep_box_heads):
            kernel, bias = layer.get_weights()
            kernel = rng.normal(0.0, 0.01, kernel.shape).astype(kernel.dtype)
            bias = np.zeros_like(bias)
            if _head_layer(layer.name):
                bias[:: new_config.num_classes + 1] = background
            layer.set_weights([kernel, bias])
        else:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    _copy_marks(model, new)
    return new


def _is_placeholder(name):
    return name.upper().startswith("N/A")


def with_class_subset(model, classes):
    """A detector for some of `model`'s classes, without any training.

    The network is unchanged (all the source's logits, so the softmax and
    every score stay what they were); its `SSDConfig.class_subset` tells the
    decoder to report only these classes, relabelled 0..len(classes)-1 in the
    order given. Per class, the detections are exactly the full model's; the
    per-image `top_k` now counts only the kept classes.

    Args:
        model: a keras-ssd `SSD` model.
        classes: names among `model.class_names`.

    Returns:
        A new `SSD` model with the same weights whose `class_names` are
        `classes`.

    Raises:
        ValueError: an unknown or repeated name (the message lists the valid
            ones).
    """
    config = model.config
    if "class_subset" not in {f.name for f in dataclasses.fields(config)}:
        raise ValueError("with_class_subset: this keras-ssd has no SSDConfig.class_subset")
    if isinstance(classes, str):
        classes = [classes]
    classes = [str(c) for c in classes]
    if not classes:
        raise ValueError("classes must name at least one class")
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(f"classes repeats {', '.join(repeated)}")
    names = list(config.names)
    reported = list(config.detection_names)
    valid = [n for n in reported if not _is_placeholder(n)]
    unknown = [c for c in classes if c not in valid]
    if unknown:
        raise ValueError(
            f"unknown class name(s) {', '.join(map(repr, unknown))} for model "
            f"{model.name!r}; valid names: {', '.join(valid)}"
        )
    subset = [names.index(c) for c in classes]
    new = _rebuild(model, config.replace(class_subset=subset))
    new.set_weights(model.get_weights())
    _copy_marks(model, new)
    return new


def freeze_modes(model):
    """The `freeze=` modes of `model`'s network -> the layer names each
    freezes: the backbone's own (`Backbone.freeze`; the SSDLite320s:
    `"backbone"`, the whole MobileNetV3 or MobileNetV2), else the VGG16
    `FREEZE_MODES`."""
    from keras_ssd.models.backbones import get_backbone

    preset = presets.find(getattr(model, "architecture", "") or "")
    own = get_backbone(preset.backbone).freeze if preset is not None else None
    return dict(own) if own is not None else dict(FREEZE_MODES)


def freeze_layers(model, freeze):
    """Make some layers of a pretrained SSD untrainable (in place).

    Args:
        model: a keras-ssd `SSD`.
        freeze: `None` (nothing), `"conv1-conv2"` (VGG16: the Caffe recipe's
            frozen conv1_x and conv2_x) or `"backbone"` (VGG16: conv1_1 ..
            fc7; the SSDLite320s: the MobileNetV3 or MobileNetV2 from the
            stem to its last 1x1 convolution, batch norms included, leaving
            the extra blocks and the heads to train). `freeze_modes(model)` lists a model's modes.

    Returns:
        The list of frozen layer names.
    """
    if freeze is None or freeze == "none":
        return []
    modes = freeze_modes(model)
    if freeze not in modes:
        raise ValueError(f"freeze must be None or one of {', '.join(modes)} for a "
                         f"{getattr(model, 'architecture', '?')} model, got {freeze!r}")
    names = modes[freeze]
    have = {layer.name for layer in model.layers}
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"freeze={freeze!r} needs the layers {', '.join(missing[:6])}, "
                         f"which model {model.name!r} ({getattr(model, 'architecture', '?')}) "
                         "does not have")
    if hasattr(model, "freeze"):
        model.freeze(names)  # an SSD: stored with the model, kept on resume
    else:
        for name in names:
            model.get_layer(name).trainable = False
    return list(names)


def _copy_marks(source, target):
    for attribute in ("pretrained_backbone", "pretrained_preset"):
        if hasattr(source, attribute):
            setattr(target, attribute, getattr(source, attribute))


# -------------------------------------------------------------- the entry
def from_preset(name, num_classes=None, class_names=None, classes=None, freeze=None,
                keep_box_heads=True, weight_decay=None, architecture=None,
                converter=None, fetch=None, cache=True, verbose=True):
    """A pretrained detector, as it is, with new heads, or for some classes.

    Args:
        name: a pretrained preset (`keras_ssd.presets.pretrained_names()`:
            `"ssd300_coco"`, `"ssd300_voc"`, `"ssd300_voc_amdegroot"`,
            `"ssdlite320_coco"`).
        num_classes, class_names: fine-tuning: new class heads for these
            classes (`with_new_heads`); the rest of the network is kept.
        classes: names among the source's classes: a detector of just these,
            with no training (`with_class_subset`). Not with `num_classes` /
            `class_names`.
        freeze: `None`, `"conv1-conv2"` (VGG16) or `"backbone"`
            (`freeze_layers`).
        keep_box_heads: with new heads, keep the source's box heads.
        weight_decay: the model's L2 weight decay on kernels. Default: with
            new heads, the fine-tuning recipe's (`preset.recipe`, SGD: 5e-4,
            built into the kernels as the paper's); else the converted
            model's (0).
        architecture: the builder asking (`"ssd300"`); a preset of another
            architecture is an error.
        converter, fetch, cache, verbose: see `load_pretrained`.

    Returns:
        An `SSD` model. It is marked `pretrained_backbone = True` and
        `pretrained_preset = name`, so `train_detector` fine-tunes it with
        the preset's recipe (`keras_ssd.presets.FINETUNE_SGD`).
    """
    preset = _preset(name)
    if architecture is not None and presets.canonical_name(architecture) != \
            preset.architecture:
        raise ValueError(
            f"pretrained preset {preset.name!r} is an {preset.architecture} model, not "
            f"{presets.canonical_name(architecture)}; use "
            f"{presets.get(preset.architecture).builder}.from_preset({preset.name!r})"
        )
    if classes is not None and (num_classes is not None or class_names is not None):
        raise ValueError("from_preset: classes= keeps the source's heads and picks some of "
                         "its classes; num_classes= / class_names= make new heads; give "
                         "one or the other")
    model = load_pretrained(preset, converter=converter, fetch=fetch, cache=cache,
                            verbose=verbose)
    model.pretrained_backbone = True
    model.pretrained_preset = preset.name
    if num_classes is not None or class_names is not None:
        if weight_decay is None:
            weight_decay = preset.recipe.model_weight_decay
        model = with_new_heads(model, num_classes, class_names,
                               keep_box_heads=keep_box_heads, weight_decay=weight_decay)
    elif weight_decay is not None and float(weight_decay) != model.weight_decay:
        rebuilt = _rebuild(model, model.config, weight_decay=float(weight_decay))
        rebuilt.set_weights(model.get_weights())
        _copy_marks(model, rebuilt)
        model = rebuilt
    if classes is not None:
        model = with_class_subset(model, classes)
    freeze_layers(model, freeze)
    return model
