"""Training recipes: `make_optimizer`, `resolve_recipe` and the recipe, the
optimizer and the schedule that `train_detector` picks."""

import types

import keras
import numpy as np
import pytest

from keras_ssd import presets
from keras_ssd.training.fit import make_optimizer, resolve_recipe, train_detector
from keras_ssd.training.schedules import WarmupCosineDecay, WarmupPiecewiseDecay


def _no_fit(model):
    """Skip the fit (and its tracing): train_detector's choices are made before it."""
    model.fit = lambda *args, **kwargs: keras.callbacks.History()
    return model


def _kinds(variables):
    return {kind: [v for v in variables if v.name == kind]
            for kind in ("kernel", "bias", "gamma", "beta")}


# ------------------------------------------------------------ make_optimizer
def _decay_one_step(optimizer, model):
    """Values of the trainable variables before and after one update with zero
    gradients and zeroed moments: Adam's step is 0 then, so only the
    decoupled decay moves them."""
    variables = model.trainable_variables
    if optimizer.built:
        for v in optimizer.variables:
            if v.name.endswith(("_momentum", "_velocity")):
                v.assign(keras.ops.zeros_like(v))
    before = [np.array(v) for v in variables]
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])
    return variables, before, [np.array(v) for v in variables]


def test_adamw_decays_kernels_but_not_biases_or_batch_norm(make_tiny_model, stand_in_ssd):
    for model in (make_tiny_model(), stand_in_ssd()):
        opt = make_optimizer("adamw", learning_rate=0.01, weight_decay=0.1)
        variables, before, after = _decay_one_step(opt, model)
        kinds = _kinds(variables)
        assert kinds["kernel"] and kinds["gamma"] and kinds["beta"] and kinds["bias"]
        for v, b, a in zip(variables, before, after):
            if v.name == "kernel":  # x (1 - lr * decay)
                np.testing.assert_allclose(a, b * (1 - 0.01 * 0.1), rtol=1e-6, atol=1e-9)
            else:
                np.testing.assert_array_equal(a, b, err_msg=v.path)


def test_a_restored_adamw_again_spares_biases_and_batch_norm(stand_in_ssd, train_set,
                                                              tmp_path):
    # Keras saves no exclusion list with the optimizer; train_detector restores it.
    from keras_ssd.saving import load_model

    model = stand_in_ssd()
    train_detector(model, train_set, epochs=1, batch_size=4, workers=0, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    history = train_detector(_no_fit(loaded), train_set, epochs=2, batch_size=4,
                             workers=0, verbose=0)
    assert history.recipe is None  # a compiled model keeps its optimizer
    opt = loaded.optimizer
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(5e-4)
    rate = float(opt.learning_rate)
    variables, before, after = _decay_one_step(opt, loaded)
    for v, b, a in zip(variables, before, after):
        if v.name == "kernel":
            np.testing.assert_allclose(a, b * (1 - rate * 5e-4), rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_array_equal(a, b, err_msg=v.path)


def test_optimizer_types_momentum_and_decay():
    sgd = make_optimizer("SGD", learning_rate=1e-3, momentum=0.8)
    assert type(sgd) is keras.optimizers.SGD
    assert sgd.momentum == pytest.approx(0.8) and sgd.weight_decay is None
    adam = make_optimizer("adam", weight_decay=0.0)
    assert type(adam) is keras.optimizers.Adam and adam.weight_decay is None
    adamw = make_optimizer("adamw", weight_decay=5e-4)
    assert type(adamw) is keras.optimizers.AdamW
    assert adamw.weight_decay == pytest.approx(5e-4)
    # SGD with decay: the same decoupled decay, biases still spared
    assert make_optimizer("sgd", weight_decay=1e-4).weight_decay == pytest.approx(1e-4)


def test_step_schedule_boundaries_default_to_two_thirds_and_five_sixths():
    def schedule(**kwargs):
        lr = make_optimizer("sgd", learning_rate=1e-3, **kwargs)._learning_rate
        assert isinstance(lr, WarmupPiecewiseDecay)
        return lr

    assert schedule(total_steps=120).boundaries == [80, 100]
    assert schedule(total_steps=120, boundaries=[10]).boundaries == [10]
    assert schedule().boundaries == []
    warm = schedule(total_steps=120, warmup_steps=12, warmup_factor=0.5)
    assert (warm.warmup_steps, warm.warmup_factor, warm.base_lr) == (12, 0.5, 1e-3)


def test_cosine_schedule_spans_the_run():
    lr = make_optimizer("adamw", learning_rate=3e-3, total_steps=100, warmup_steps=10,
                        schedule="cosine", weight_decay=5e-4,
                        final_lr_factor=0.01)._learning_rate
    assert isinstance(lr, WarmupCosineDecay)
    assert lr.get_config() == {"base_lr": 3e-3, "total_steps": 100, "warmup_steps": 10,
                               "warmup_factor": 0.1, "final_factor": 0.01, "name": None}
    # a run shorter than its warm-up still gets a valid schedule
    short = make_optimizer("adamw", total_steps=5, warmup_steps=8, schedule="cosine")
    assert short._learning_rate.total_steps == 8


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "rmsprop"}, "optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
    ({"schedule": "linear"}, "schedule must be one of step, cosine, got 'linear'"),
    ({"schedule": "cosine"}, "cosine schedule needs total_steps"),
    ({"schedule": "cosine", "total_steps": 0}, "cosine schedule needs total_steps"),
    ({"weight_decay": -1e-4}, "weight_decay must be >= 0"),
    ({"weight_decay": float("nan")}, "weight_decay must be >= 0"),
])
def test_make_optimizer_rejects_bad_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kwargs)


# ------------------------------------------------------------ resolve_recipe
def test_resolve_recipe_picks_the_variant_and_backbone_start():
    def model(**attributes):
        return types.SimpleNamespace(**attributes)

    assert resolve_recipe(model(architecture="ssd300", pretrained_backbone=True)) \
        is presets.PAPER_SGD
    assert resolve_recipe(model(architecture="ssd512", pretrained_backbone=None)) \
        is presets.PAPER_SGD
    assert resolve_recipe(model(architecture="ssd300", pretrained_backbone=False)) \
        is presets.FROM_SCRATCH
    assert resolve_recipe(model(architecture="tiny", pretrained_backbone=False)) \
        is presets.FROM_SCRATCH
    # no variant, or one the registry does not know: the from-scratch recipe
    assert resolve_recipe(model()) is presets.FROM_SCRATCH
    assert resolve_recipe(model(architecture="yolo")) is presets.FROM_SCRATCH
    assert resolve_recipe() is presets.FROM_SCRATCH


def test_built_models_record_whether_their_backbone_is_pretrained(make_tiny_model):
    model = make_tiny_model()
    assert model.pretrained_backbone is False
    assert resolve_recipe(model) is presets.FROM_SCRATCH


def test_overrides_apply_none_is_ignored_and_the_name_says_changed():
    used = resolve_recipe(recipe="paper-sgd", learning_rate=0.01, momentum=None,
                          optimizer="ADAM", schedule=None)
    assert used.name == "paper-sgd (changed)"
    assert (used.learning_rate, used.optimizer) == (0.01, "adam")
    assert used == presets.PAPER_SGD.replace(name="paper-sgd (changed)",
                                             learning_rate=0.01, optimizer="adam")


def test_run_length_and_batch_keep_the_recipe_name():
    used = resolve_recipe(recipe=presets.FROM_SCRATCH, epochs=3, batch_size=4)
    assert used.name == "from-scratch-adamw" and (used.epochs, used.batch_size) == (3, 4)
    assert resolve_recipe(recipe="paper-sgd", epochs=None) is presets.PAPER_SGD
    assert resolve_recipe(recipe="paper-sgd", warmup_epochs=0.5,
                          name="mine").name == "mine"


def test_recipes_table_lists_the_recipes_by_name():
    assert presets.RECIPES == {"paper-sgd": presets.PAPER_SGD,
                               "from-scratch-adamw": presets.FROM_SCRATCH,
                               "finetune-sgd": presets.FINETUNE_SGD,
                               "finetune-ssdlite-sgd": presets.FINETUNE_SSDLITE}


@pytest.mark.parametrize("kwargs, match", [
    ({"recipe": "fast"}, "unknown recipe 'fast'; known: paper-sgd, from-scratch-adamw, finetune-sgd"),
    ({"recipe": 3}, "recipe must be a Recipe or a recipe name, got 3"),
    ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, adamw, got 'rmsprop'"),
    ({"schedule": "linear"}, "schedule must be one of step, cosine, got 'linear'"),
    ({"recipe": presets.PAPER_SGD.replace(schedule="poly")},
     "schedule must be one of step, cosine, got 'poly'"),
])
def test_resolve_recipe_rejects_bad_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_recipe(**kwargs)


# ------------------------------------------------------------ train_detector
def test_tiny_model_trains_with_the_from_scratch_recipe_by_default(make_tiny_model, train_set):
    model = _no_fit(make_tiny_model(num_classes=4))
    history = train_detector(model, train_set, epochs=2, batch_size=4, workers=0, verbose=0)
    assert history.recipe == presets.FROM_SCRATCH.replace(epochs=2, batch_size=4)
    opt = model.optimizer
    assert type(opt) is keras.optimizers.AdamW and opt.weight_decay == pytest.approx(5e-4)
    assert opt._learning_rate.get_config() == {
        "base_lr": 3e-3, "total_steps": 6, "warmup_steps": 3, "warmup_factor": 0.1,
        "final_factor": 0.01, "name": None}


def test_the_default_recipe_runs_warm_up_then_cosine_to_its_floor(stand_in_ssd, train_set):
    model = stand_in_ssd()
    history = train_detector(model, train_set, epochs=2, batch_size=4, workers=0, verbose=0)
    assert history.recipe.name == "from-scratch-adamw"
    # rate after each epoch: end of the 3-step warm-up, then the cosine's floor
    assert history.history["learning_rate"] == pytest.approx([3e-3, 3e-5])
    assert len(history.history["loss"]) == 2
    assert all(np.isfinite(history.history["loss"]))
    assert int(model.optimizer.iterations) == 6


def test_paper_recipe_gives_sgd_with_momentum_and_steps(stand_in_ssd, train_set):
    model = _no_fit(stand_in_ssd())
    history = train_detector(model, train_set, epochs=6, batch_size=4, workers=0,
                             verbose=0, recipe="paper-sgd")
    assert history.recipe == presets.PAPER_SGD.replace(epochs=6, batch_size=4)
    opt = model.optimizer
    assert type(opt) is keras.optimizers.SGD
    assert opt.momentum == pytest.approx(0.9)
    assert opt.weight_decay is None  # the paper's L2 is the model's, not the optimizer's
    lr = opt._learning_rate
    assert isinstance(lr, WarmupPiecewiseDecay)
    assert (lr.base_lr, lr.boundaries, lr.warmup_steps) == (1e-3, [12, 15], 3)


def test_decay_epochs_select_the_step_schedule(stand_in_ssd, train_set):
    model = _no_fit(stand_in_ssd())
    history = train_detector(model, train_set, epochs=4, batch_size=4, workers=0,
                             verbose=0, lr_decay_epochs=[1, 3])
    assert history.recipe.name == "from-scratch-adamw (changed)"
    assert history.recipe.schedule == "step"
    assert type(model.optimizer) is keras.optimizers.AdamW
    assert model.optimizer._learning_rate.boundaries == [3, 9]
    # an explicit schedule wins over the decay epochs
    model = _no_fit(stand_in_ssd())
    train_detector(model, train_set, epochs=4, batch_size=4, workers=0, verbose=0,
                   lr_decay_epochs=[1, 3], schedule="cosine")
    assert isinstance(model.optimizer._learning_rate, WarmupCosineDecay)


def test_explicit_options_override_the_recipe(stand_in_ssd, train_set):
    model = _no_fit(stand_in_ssd())
    history = train_detector(model, train_set, epochs=2, batch_size=4, workers=0, verbose=0,
                             optimizer="sgd", learning_rate=0.02, momentum=0.5,
                             warmup_epochs=0)
    assert history.recipe.name == "from-scratch-adamw (changed)"
    opt = model.optimizer
    assert type(opt) is keras.optimizers.SGD and opt.momentum == pytest.approx(0.5)
    assert opt.weight_decay is None  # SGD: no decoupled decay unless asked for
    lr = opt._learning_rate
    assert (lr.base_lr, lr.warmup_steps, lr.total_steps) == (0.02, 0, 6)
    model = _no_fit(stand_in_ssd())
    history = train_detector(model, train_set, epochs=2, batch_size=4, workers=0, verbose=0,
                             weight_decay=1e-3)
    assert model.optimizer.weight_decay == pytest.approx(1e-3)
    assert history.recipe.weight_decay == pytest.approx(1e-3)


def test_a_compiled_model_keeps_its_optimizer(stand_in_ssd, train_set):
    from keras_ssd.losses import SSDLoss

    model = stand_in_ssd()
    opt = keras.optimizers.SGD(0.01)
    model.compile(optimizer=opt, loss=SSDLoss())
    history = train_detector(model, train_set, epochs=1, batch_size=4, workers=0,
                             verbose=0, recipe="paper-sgd", optimizer="adamw")
    assert history.recipe is None
    assert model.optimizer is opt and int(opt.iterations) == 3
    assert history.history["learning_rate"] == pytest.approx([0.01])


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be a positive int"),
    ({"epochs": 2, "initial_epoch": 2}, "nothing to do"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"recipe": "paper"}, "unknown recipe 'paper'"),
])
def test_train_detector_rejects_bad_options_before_training(stand_in_ssd, train_set, kwargs,
                                                            match):
    model = stand_in_ssd()
    with pytest.raises(ValueError, match=match):
        train_detector(model, train_set, batch_size=4, workers=0, verbose=0, **kwargs)
    assert not model.compiled


@pytest.mark.parametrize("ignore_difficult", [False, True])
def test_train_detector_passes_ignore_difficult_to_its_sequences(
        stand_in_ssd, train_set, monkeypatch, ignore_difficult):
    import keras_ssd.data

    seen = []
    real = keras_ssd.data.SSDSequence

    def spy(*args, **kwargs):
        seen.append(kwargs.get("ignore_difficult"))
        return real(*args, **kwargs)

    monkeypatch.setattr(keras_ssd.data, "SSDSequence", spy)
    model = _no_fit(stand_in_ssd())
    kwargs = {} if not ignore_difficult else {"ignore_difficult": True}
    train_detector(model, train_set, epochs=1, val_dataset=train_set, verbose=0, workers=0,
                   **kwargs)
    assert seen == [ignore_difficult, ignore_difficult]  # training and val_loss data
