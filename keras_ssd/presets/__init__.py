"""The one registry of named SSD variants, training recipes and pretrained
detector checkpoints.

- `variants`: `Preset`, one per SSD variant (`names()`, `get`, `find`,
  `recipe_for`): backbone, prior geometry, build defaults.
- `recipes`: `Recipe` and the named recipes (`RECIPES`).
- `pretrained`: `PretrainedPreset`, one per published checkpoint keras-ssd
  converts (`pretrained_names()`, `get_pretrained`): file, hash, accuracy,
  the source's post-processing, the fine-tuning recipe.

`resolve_recipe` joins them: the recipe a run uses. Everything here is data
(it imports nothing else of keras_ssd but the standard-library
`keras_ssd.deprecation`), so every layer of the package, and
`keras-ssd --help`, can read it without loading TensorFlow.

Example:

>>> from keras_ssd import presets
>>> presets.names()
['ssd300', 'ssd512', 'mobilenet_v2', 'ssdlite320', 'tiny']
>>> presets.get("SSD-300").name   # any case, "-" or "_"
'ssd300'
"""

from keras_ssd.presets.pretrained import (
    PRETRAINED,
    SOURCE_NAMES,
    TORCHVISION_MAX_LOG_SCALE,
    PretrainedPreset,
    find_pretrained,
    for_source,
    get_pretrained,
    pretrained_names,
)
from keras_ssd.presets.recipes import (
    FINETUNE_SGD,
    FINETUNE_SSDLITE,
    FROM_SCRATCH,
    OPTIMIZERS,
    PAPER_SGD,
    RECIPES,
    SCHEDULES,
    Recipe,
)
from keras_ssd.presets.variants import (
    FROM_SCRATCH_VARIANT,
    PRESETS,
    Preset,
    canonical_name,
    find,
    get,
    names,
    recipe_for,
)

__all__ = [
    "FINETUNE_SGD", "FINETUNE_SSDLITE", "FROM_SCRATCH", "FROM_SCRATCH_VARIANT", "OPTIMIZERS",
    "PAPER_SGD",
    "PRESETS", "PRETRAINED", "RECIPES", "SCHEDULES", "SOURCE_NAMES",
    "TORCHVISION_MAX_LOG_SCALE", "Preset", "PretrainedPreset", "Recipe",
    "canonical_name", "find", "find_pretrained", "for_source", "get", "get_pretrained",
    "names", "pretrained_names", "recipe_for", "resolve_recipe",
]


def resolve_recipe(recipe=None, variant=None, pretrained=None, pretrained_preset=None,
                   **overrides) -> Recipe:
    """The recipe a run uses: a base recipe with the caller's choices on top.

    The one rule of `keras_ssd.training.train_detector` and `keras-ssd train`.

    Args:
        recipe: a `Recipe`, the name of one (`RECIPES`) or `None`: then the
            fine-tuning recipe of `pretrained_preset` when given, else the
            recipe of `variant` (`recipe_for(variant, pretrained)`), or
            `FROM_SCRATCH` when `variant` is `None` or not a known variant.
        variant: a variant name or alias.
        pretrained: whether the backbone starts from pretrained weights
            (`None`: the variant's default).
        pretrained_preset: the name of the converted checkpoint the model
            starts from (`PRETRAINED`), or `None`; an unknown name is ignored.
        **overrides: `Recipe` fields; `None` values are ignored. A change to
            anything but `epochs` and `batch_size` names the result
            `"<base> (changed)"` unless `name` is given.

    Returns:
        A `Recipe`.

    Raises:
        ValueError: an unknown recipe name, optimizer or schedule.
        TypeError: an override that is no `Recipe` field.
    """
    recipe = _base_recipe(recipe, variant, pretrained, pretrained_preset)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "optimizer" in changes:
        changes["optimizer"] = str(changes["optimizer"]).lower()
        if changes["optimizer"] not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, "
                             f"got {overrides['optimizer']!r}")
    schedule = changes.get("schedule", recipe.schedule)
    if schedule not in SCHEDULES:
        raise ValueError(
            f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if set(changes) - {"epochs", "batch_size"}:
        changes.setdefault("name", f"{recipe.name} (changed)")
    return recipe.replace(**changes) if changes else recipe


def _base_recipe(recipe, variant, pretrained, pretrained_preset):
    if recipe is None:
        checkpoint = find_pretrained(pretrained_preset or "")
        if checkpoint is not None:
            return checkpoint.recipe
        if variant is not None and find(variant) is not None:
            return recipe_for(variant, pretrained=pretrained)
        return FROM_SCRATCH
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        return RECIPES[recipe]
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe or a recipe name, got {recipe!r}")
    return recipe
