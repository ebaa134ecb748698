"""Training recipes by name: the two papers' ImageNet recipes and a small one.

A `Recipe` holds every hyper-parameter of a run; `get_recipe(name,
**overrides)` returns a named one with some fields replaced (the command
line has one flag per field). `make_optimizer`, `make_schedule`, `make_loss`
and `make_metrics` turn it into Keras objects (Keras is imported by them,
not by this module: the command line reads the recipes to build its flags).

Where a paper and the authors' code differ, the recipe follows the code
(see SPEC.md): `bav1` is `zhaoy376/Bridge-Attention/main.py --lr 0.1
--scheduler cos -b 256` (5 linear warm-up epochs, label smoothing 0.1, not in
the paper), `bav2` is the defaults of the v2 repository's `main.py` (timm).

Example:
>>> recipe = get_recipe("bav1", batch_size=512)
>>> recipe.peak_lr()
0.2
"""

import dataclasses
import math

from keras_ba.errors import WorkflowError

OPTIMIZERS = ("sgd", "adamw")
CROPS = ("random-resized", "pad", "center")


def _field(default, help, choices=None):
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every hyper-parameter of a training run (one command-line flag each).

    Example:
    >>> Recipe(epochs=3, batch_size=64, warmup_epochs=1).epochs
    3
    """

    # === Schedule ===
    epochs: int = _field(100, "training epochs")
    batch_size: int = _field(256, "global batch size (all devices together)")
    optimizer: str = _field("sgd", "optimizer", OPTIMIZERS)
    lr: float = _field(0.1, "peak learning rate, given for --lr-batch images per step")
    lr_batch: int = _field(
        256,
        "batch size that --lr is given for; the rate scales linearly with "
        "--batch-size (0: no scaling)",
    )
    momentum: float = _field(0.9, "SGD momentum (AdamW keeps beta_1=0.9, beta_2=0.999)")
    nesterov: bool = _field(False, "Nesterov momentum (SGD)")
    weight_decay: float = _field(
        1e-4,
        "weight decay as PyTorch defines it: SGD's coupled L2 (applied in "
        "Keras' decoupled form as wd / (1 - momentum)), AdamW's decoupled decay",
    )
    decay_1d_weights: bool = _field(True, "apply weight decay to 1-D weights (biases, norms)")
    warmup_epochs: float = _field(
        5.0, "linear warm-up epochs before the cosine decay (scales with --epochs unless given)"
    )
    warmup_lr: float = _field(0.0, "learning rate at the first warm-up step")
    min_lr: float = _field(0.0, "learning rate at the end of the cosine decay")
    clipnorm: float = _field(0.0, "clip the global gradient norm to this value (0: off)")
    label_smoothing: float = _field(0.1, "label smoothing of the cross-entropy")
    # === Images ===
    image_size: int = _field(224, "training image side in pixels")
    eval_crop_pct: float = _field(
        0.875, "evaluation: resize to image_size / crop_pct, center-crop image_size"
    )
    crop: str = _field(
        "random-resized",
        "training crop: random-resized (scale 0.08-1), pad (pad 1/8 and random crop) or center",
        CROPS,
    )
    flip: bool = _field(True, "random horizontal flip")
    randaugment: float = _field(0.0, "RandAugment magnitude in [0, 1] (timm's m9 = 0.9; 0: off)")
    randaugment_ops: int = _field(2, "RandAugment operations per image")
    randaugment_std: float = _field(0.05, "RandAugment magnitude std (timm's mstd0.5 = 0.05)")
    random_erasing: float = _field(0.0, "random erasing probability per image")
    mixup: float = _field(0.0, "MixUp alpha (0: off)")
    cutmix: float = _field(0.0, "CutMix alpha (0: off); with MixUp, one of the two per batch")

    def __post_init__(self):
        _check(self.epochs >= 1, "epochs", self.epochs, "a positive integer")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "a positive integer")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _check(self.lr > 0, "lr", self.lr, "a positive number")
        _check(self.lr_batch >= 0, "lr_batch", self.lr_batch, "0 or a positive integer")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(
            0 <= self.warmup_epochs <= self.epochs,
            "warmup_epochs",
            self.warmup_epochs,
            f"a number in [0, epochs={self.epochs}]",
        )
        _check(self.warmup_lr >= 0, "warmup_lr", self.warmup_lr, "a number >= 0")
        _check(
            0 <= self.min_lr <= self.peak_lr(),
            "min_lr",
            self.min_lr,
            f"a number in [0, peak lr={self.peak_lr():g}]",
        )
        _check(self.clipnorm >= 0, "clipnorm", self.clipnorm, "a number >= 0")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)")
        _check(self.image_size >= 8, "image_size", self.image_size, "an integer >= 8")
        _check(0 < self.eval_crop_pct <= 1, "eval_crop_pct", self.eval_crop_pct, "in (0, 1]")
        _check(self.crop in CROPS, "crop", self.crop, f"one of {CROPS}")
        _check(0 <= self.randaugment <= 1, "randaugment", self.randaugment, "in [0, 1]")
        _check(
            self.randaugment_ops >= 1, "randaugment_ops", self.randaugment_ops, "an integer >= 1"
        )
        _check(self.randaugment_std >= 0, "randaugment_std", self.randaugment_std, "a number >= 0")
        _check(0 <= self.random_erasing <= 1, "random_erasing", self.random_erasing, "in [0, 1]")
        _check(self.mixup >= 0, "mixup", self.mixup, "a number >= 0")
        _check(self.cutmix >= 0, "cutmix", self.cutmix, "a number >= 0")

    def peak_lr(self):
        """The learning rate after warm-up, scaled to `batch_size`.

        Example:
        >>> Recipe(lr=0.1, lr_batch=256, batch_size=128).peak_lr()
        0.05
        """
        if not self.lr_batch:
            return self.lr
        return self.lr * self.batch_size / self.lr_batch

    def load_size(self):
        """Side images are loaded at, before the crop to `image_size`.

        Example:
        >>> Recipe(image_size=224, eval_crop_pct=0.875).load_size()
        256
        """
        return int(round(self.image_size / self.eval_crop_pct))


def _check(ok, name, value, expected):
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise WorkflowError(
            f"Invalid value for `{name}`: expected {expected}. Received: `{name}={value!r}`."
        )


RECIPES = {
    # BAv1 (ECCV 2022), as the authors ran it: main.py --lr 0.1 --scheduler cos -b 256.
    "bav1": Recipe(),
    # BAv2 (2024): the v2 repository's main.py defaults (timm).
    "bav2": Recipe(
        epochs=300,
        batch_size=1024,
        optimizer="adamw",
        lr=1e-3,
        lr_batch=0,
        weight_decay=0.05,
        decay_1d_weights=False,
        warmup_epochs=20.0,
        warmup_lr=1e-6,
        min_lr=1e-5,
        clipnorm=5.0,
        randaugment=0.9,
        random_erasing=0.25,
        mixup=0.8,
        cutmix=1.0,
    ),
    # CIFAR-style: 32x32 images, pad-and-crop, SGD with Nesterov momentum.
    "small": Recipe(
        epochs=30,
        batch_size=128,
        lr=0.1,
        lr_batch=128,
        nesterov=True,
        weight_decay=5e-4,
        warmup_epochs=1.0,
        label_smoothing=0.0,
        image_size=32,
        eval_crop_pct=1.0,
        crop="pad",
    ),
}

RECIPE_SUMMARIES = {
    "bav1": "BAv1 paper/code: SGD 0.9, lr 0.1 per 256, wd 1e-4, 5 warm-up + cosine, "
    "100 epochs, random-resized crop + flip, label smoothing 0.1",
    "bav2": "BAv2 code: AdamW 1e-3, wd 0.05 (not 1-D), 20 warm-up + cosine to 1e-5, "
    "clip 5, RandAugment m9, erasing 0.25, MixUp 0.8 / CutMix 1.0, smoothing 0.1, 300 epochs",
    "small": "CIFAR-sized images: SGD Nesterov 0.9, lr 0.1 per 128, wd 5e-4, 1 warm-up "
    "+ cosine, 30 epochs, 32 px, pad-crop + flip",
}


# Vision transformers train with AdamW (their official recipes; `bav2` is Swin's
# ImageNet recipe): the recipe `keras-ba train` picks for them without --recipe.
TRANSFORMER_MODEL_PREFIXES = ("ba_swin", "ba_pvt", "ba_cswin")


def default_recipe(model_name):
    """The recipe `keras-ba train` uses when `--recipe` is not given.

    `"bav2"` (AdamW) for the vision transformers, `"small"` otherwise.

    Example:
    >>> default_recipe("ba_swin_tiny"), default_recipe("ba_resnet18")
    ('bav2', 'small')
    """
    if str(model_name).startswith(TRANSFORMER_MODEL_PREFIXES):
        return "bav2"
    return "small"


def list_recipes():
    """Names accepted by `get_recipe`.

    Example:
    >>> list_recipes()
    ['bav1', 'bav2', 'small']
    """
    return sorted(RECIPES)


def get_recipe(name, **overrides):
    """Returns the recipe called `name`, with `overrides` replacing fields.

    Args:
        name: `"bav1"`, `"bav2"` or `"small"`.
        **overrides: field values to replace; `None` values are ignored (so
            unset command-line flags keep the recipe's value). A new
            `epochs` without `warmup_epochs` scales the warm-up with it, so
            the schedule keeps its shape.

    Returns:
        A validated `Recipe`.

    Raises:
        WorkflowError: for an unknown name or field, or an invalid value.

    Example:
    >>> recipe = get_recipe("bav2", epochs=3, mixup=None)
    >>> recipe.epochs, round(recipe.warmup_epochs, 3), recipe.mixup
    (3, 0.2, 0.8)
    """
    if name not in RECIPES:
        raise WorkflowError(f"Unknown recipe {name!r}. Known recipes: {', '.join(list_recipes())}.")
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise WorkflowError(f"Unknown recipe fields {unknown}. Known fields: {sorted(known)}.")
    changes = {k: v for k, v in overrides.items() if v is not None}
    base = RECIPES[name]
    if "epochs" in changes and "warmup_epochs" not in changes:
        # Keep the schedule's shape: 20 of 300 warm-up epochs -> 0.2 of 3.
        changes["warmup_epochs"] = base.warmup_epochs * changes["epochs"] / base.epochs
    return dataclasses.replace(base, **changes)


# === Keras objects ===


def make_schedule(recipe, steps_per_epoch):
    """Linear warm-up from `warmup_lr` to the peak, then cosine to `min_lr`.

    The cosine runs over the epochs after warm-up (Keras' `CosineDecay`);
    timm's `warmup_prefix=False` in the BAv2 code runs it over all epochs, a
    negligible difference.

    Args:
        recipe: a `Recipe`.
        steps_per_epoch: optimizer steps per epoch.

    Returns:
        A `keras.optimizers.schedules.CosineDecay`.

    Example:
    >>> schedule = make_schedule(get_recipe("small", epochs=2, warmup_epochs=1), 10)
    >>> [round(float(schedule(s)), 3) for s in (0, 10, 20)]
    [0.0, 0.1, 0.0]
    """
    import keras

    peak = recipe.peak_lr()
    warmup_steps = int(round(recipe.warmup_epochs * steps_per_epoch))
    total_steps = recipe.epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.warmup_lr if warmup_steps else peak,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=recipe.min_lr / peak,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def keras_weight_decay(recipe):
    """The `weight_decay` to give Keras for the recipe's PyTorch value.

    PyTorch's SGD adds `wd * w` to the gradient, which then runs through the
    momentum buffer: in steady state it shrinks weights by
    `lr * wd / (1 - momentum)` per step. Keras applies `lr * wd * w` directly,
    so SGD gets `wd / (1 - momentum)`. AdamW decays the same way in both.

    Example:
    >>> round(keras_weight_decay(get_recipe("bav1")), 6)
    0.001
    """
    if recipe.optimizer == "sgd":
        return recipe.weight_decay / (1.0 - recipe.momentum)
    return recipe.weight_decay


def make_optimizer(recipe, steps_per_epoch, model=None):
    """The recipe's optimizer with its schedule, decay and clipping.

    Args:
        recipe: a `Recipe`.
        steps_per_epoch: optimizer steps per epoch (for the schedule).
        model: the model to train; needed when `decay_1d_weights` is False,
            to exclude its 1-D weights (biases, norms) from weight decay.

    Returns:
        A `keras.optimizers.SGD` or `keras.optimizers.AdamW`.

    Example:
    >>> make_optimizer(get_recipe("small"), steps_per_epoch=10).__class__.__name__
    'SGD'
    """
    import keras

    schedule = make_schedule(recipe, steps_per_epoch)
    extra = {"global_clipnorm": recipe.clipnorm} if recipe.clipnorm else {}
    decay = keras_weight_decay(recipe) or None
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule,
            momentum=recipe.momentum,
            nesterov=recipe.nesterov,
            weight_decay=decay,
            **extra,
        )
    else:
        optimizer = keras.optimizers.AdamW(
            schedule, weight_decay=decay or 0.0, epsilon=1e-8, **extra
        )
    if decay and not recipe.decay_1d_weights:
        if model is None:
            raise WorkflowError(
                "make_optimizer needs `model` to exclude its 1-D weights from weight decay."
            )
        one_d = [v for v in model.trainable_variables if len(v.shape) <= 1]
        optimizer.exclude_from_weight_decay(var_list=one_d)
    return optimizer


def make_loss(recipe):
    """Categorical cross-entropy on probabilities, with label smoothing.

    Labels are one-hot (MixUp and CutMix make them soft).

    Example:
    >>> make_loss(get_recipe("bav2")).label_smoothing
    0.1
    """
    import keras

    return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)


def make_metrics(num_classes):
    """Top-1 accuracy (`accuracy`), and top-5 when there are more than 5 classes.

    Example:
    >>> [m.name for m in make_metrics(10)]
    ['accuracy', 'top5_accuracy']
    """
    import keras

    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    if num_classes > 5:
        metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5_accuracy"))
    return metrics
