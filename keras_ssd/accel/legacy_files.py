"""Files saved by keras-ssd 0.1, read as plain `Conv2D` models.

In 0.1 the builders made every 3x3 stride-1 "same" convolution of an `SSD` a
`WinogradConv2D`. An `SSD` saves its constructor arguments, not its layers,
so a 0.1 `.keras` file rebuilds today with plain `Conv2D` layers; but Keras
stores each layer's weights under a name made from its class and its rank
among the layers of that class (`layers/winograd_conv2d_3`,
`layers/conv2d_5`), and those names no longer match. `plain_conv_copy`
renames the weight groups of such a file (in a temporary copy) to what the
same model saves today; the model then loads with plain `Conv2D` layers, its
compiled state included. `keras_ssd.load_model` uses it. `load_weights` does
the same for a `.weights.h5` file written by 0.1's `model.save_weights`.
"""

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile

import keras

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
CONV = "conv2d"
WINOGRAD_CONV = "winograd_conv2d"


def _indexed(name, index):
    """Keras' unique name of the `index`-th saveable of a class in a container."""
    return name if index == 0 else f"{name}_{index}"


def was_winograd_in_v0_1(layer):
    """True for the `Conv2D` layers of an `SSD` that keras-ssd 0.1's builders
    made `WinogradConv2D`: 3x3, stride 1, "same", undilated."""
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (3, 3)
        and tuple(layer.strides) == (1, 1)
        and layer.padding == "same"
        and tuple(layer.dilation_rate) == (1, 1)
    )


def _has_winograd_groups(h5):
    found = []

    def visit(name):
        if name.rsplit("/", 1)[-1].startswith(WINOGRAD_CONV):
            found.append(name)
            return True  # stop
        return None

    h5.visit(visit)
    return bool(found)


def _renames(model, h5, prefix, renames):
    """Add `{0.1 weight path: current path}` for the SSDs in `model`
    (recursively, `prefix` = the model's path in the file)."""
    from keras_ssd.models.ssd import SSD

    layers_path = f"{prefix}/layers" if prefix else "layers"
    if layers_path not in h5:
        return
    stored = set(h5[layers_path].keys())
    ssd_v0_1 = isinstance(model, SSD) and any(k.startswith(WINOGRAD_CONV) for k in stored)
    counts = {}
    convs = plain = winograd = 0
    expected = set()
    for layer in model.layers:
        snake = _snake_case(type(layer).__name__)
        index = counts.get(snake, -1) + 1
        counts[snake] = index
        name = _indexed(snake, index)
        if ssd_v0_1 and type(layer) is keras.layers.Conv2D:
            new = _indexed(CONV, convs)
            convs += 1
            if was_winograd_in_v0_1(layer):
                old = _indexed(WINOGRAD_CONV, winograd)
                winograd += 1
            else:
                old = _indexed(CONV, plain)
                plain += 1
            expected.add(old)
            _check_group(h5, f"{layers_path}/{old}", layer, model)
            renames[f"{layers_path}/{old}"] = f"{layers_path}/{new}"
            continue
        if isinstance(layer, keras.Model) and hasattr(layer, "layers"):
            _renames(layer, h5, f"{layers_path}/{name}", renames)
    if ssd_v0_1:
        stored_convs = {k for k in stored if k.startswith((CONV, WINOGRAD_CONV))}
        if stored_convs != expected:
            raise ValueError(
                f"keras-ssd 0.1 file: the {model.name!r} SSD in it stores convolutions "
                f"{sorted(stored_convs - expected)} that the model rebuilt from its "
                f"config does not have, or lacks {sorted(expected - stored_convs)}"
            )


def _check_group(h5, path, layer, model):
    if path not in h5 or "vars" not in h5[path] or "0" not in h5[path]["vars"]:
        raise ValueError(
            f"keras-ssd 0.1 file: no weights at {path!r} for layer {layer.name!r} of "
            f"{model.name!r}; the file does not match the model its config builds"
        )
    shape = tuple(h5[path]["vars"]["0"].shape)
    if shape != tuple(layer.kernel.shape):
        raise ValueError(
            f"keras-ssd 0.1 file: the kernel at {path!r} has shape {shape}, layer "
            f"{layer.name!r} of {model.name!r} expects {tuple(layer.kernel.shape)}"
        )


def _snake_case(name):
    """Keras' `to_snake_case` (keras/src/utils/naming.py), the rule its
    saving code names container entries by: `WinogradConv2D` ->
    `winograd_conv2d`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _rewrite(h5, renames):
    """A copy of the h5 file `h5` with the groups in `renames` moved; bytes."""
    import h5py

    out = io.BytesIO()
    with h5py.File(out, "w") as dst:
        for key, value in h5.attrs.items():
            dst.attrs[key] = value
        parents = {path.rsplit("/", 1)[0] for path in renames}

        def copy(group, path):
            for key in group:
                full = f"{path}/{key}" if path else key
                if full in renames:
                    h5.copy(group[key], dst, name=renames[full])
                elif any(p == full or p.startswith(full + "/") for p in parents):
                    target = dst.require_group(full)
                    for k, v in group[key].attrs.items():
                        target.attrs[k] = v
                    copy(group[key], full)
                else:
                    h5.copy(group[key], dst, name=full)

        copy(h5, "")
    return out.getvalue()


def v0_1_renames(path):
    """`{0.1 weight group: current group}` for a `.keras` file saved by
    keras-ssd 0.1 (empty for any other file)."""
    import h5py

    path = os.fspath(path)
    if not (os.path.isfile(path) and zipfile.is_zipfile(path)):
        return {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if WEIGHTS_FILE not in names or CONFIG_FILE not in names:
            return {}
        with archive.open(WEIGHTS_FILE) as raw, h5py.File(raw, "r") as h5:
            if not _has_winograd_groups(h5):
                return {}
            config = json.loads(archive.read(CONFIG_FILE))
            config.pop("compile_config", None)
            model = keras.saving.deserialize_keras_object(config)
            renames = {}
            _renames(model, h5, "", renames)
            return renames


@contextlib.contextmanager
def plain_conv_copy(path):
    """The path to load `path` from: `path` itself, or for a file saved by
    keras-ssd 0.1 a temporary copy whose weight groups are named as the same
    model (plain `Conv2D` layers) saves them today; removed on exit.

    >>> with plain_conv_copy("old.keras") as readable:
    ...     model = keras.saving.load_model(readable)
    """
    import h5py

    renames = v0_1_renames(path)
    if not renames:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="keras_ssd_v0_1_")
    try:
        copy = os.path.join(folder, os.path.basename(os.fspath(path)))
        with zipfile.ZipFile(os.fspath(path)) as src, \
                zipfile.ZipFile(copy, "w", compression=zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                if info.filename == WEIGHTS_FILE:
                    with src.open(WEIGHTS_FILE) as raw, h5py.File(raw, "r") as h5:
                        dst.writestr(info, _rewrite(h5, renames))
                else:
                    dst.writestr(info, src.read(info.filename))
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_weights(model, path):
    """`model.load_weights(path)` for a `.weights.h5` file, also one that
    keras-ssd 0.1 wrote (`model.save_weights` of an SSD with
    `WinogradConv2D` layers): its weight groups are renamed, in a temporary
    copy, to what `model` (plain `Conv2D` layers) expects.

    Args:
        model: the built model to load into, e.g. `SSD(config, architecture)`.
        path: a `.weights.h5` file.

    Returns:
        `model`.
    """
    import h5py

    path = os.fspath(path)
    with h5py.File(path, "r") as h5:
        renames = {}
        if _has_winograd_groups(h5):
            _renames(model, h5, "", renames)
        if not renames:
            model.load_weights(path)
            return model
        folder = tempfile.mkdtemp(prefix="keras_ssd_v0_1_")
        try:
            copy = os.path.join(folder, "model.weights.h5")
            with open(copy, "wb") as f:
                f.write(_rewrite(h5, renames))
            model.load_weights(copy)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return model
