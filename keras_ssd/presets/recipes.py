"""Training recipes: optimizer, learning-rate schedule and run length.

`keras_ssd.presets.resolve_recipe` picks one for a run; each variant
(`keras_ssd.presets.variants`) and pretrained checkpoint
(`keras_ssd.presets.pretrained`) names its default. Data only.
"""

import dataclasses
from typing import Mapping

#: The optimizers and learning-rate schedules a `Recipe` may name.
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "cosine")


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
FINETUNE_SGD = PAPER_SGD.replace(
    name="finetune-sgd",
    epochs=30,
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
