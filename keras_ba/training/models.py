"""Builds a model by its command-line name, with the CLI's size options.

`ba_resnet{18,34,50,101,152}` go through the generic `BAResNet` builder so
that the stem (`"cifar"` for small images) and, for quick tests, the stage
depths and widths can change; every other name resolves through
`keras_ba.applications.get_model_builder`.

Example:
>>> model = build_model("ba_resnet18", classes=10, image_size=16,
...                     depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
>>> model.name, model.input_shape, model.output_shape
('ba_resnet18', (None, 16, 16, 3), (None, 10))
"""

import dataclasses
import re

from keras_ba.applications import get_model_builder, resnet
from keras_ba.training.errors import WorkflowError

RESNET_NAME = re.compile(r"ba_resnet(\d+)$")
STEMS = ("auto", "cifar", "imagenet")
ATTENTIONS = ("bav1", "bav2", "se", "none")
SMALL_IMAGE_SIDE = 128  # below this, "auto" picks the CIFAR stem


def choose_stem(stem, image_size):
    """`"cifar"` (3x3/1 conv) below 128 px, else `"imagenet"`, for `"auto"`.

    Example:
    >>> choose_stem("auto", 32), choose_stem("auto", 224), choose_stem("imagenet", 64)
    ('cifar', 'imagenet', 'imagenet')
    """
    if stem not in STEMS:
        raise WorkflowError(f"--stem must be one of {STEMS}, received {stem!r}.")
    if stem == "auto":
        return "cifar" if image_size < SMALL_IMAGE_SIDE else "imagenet"
    return stem


def build_model(
    name,
    classes,
    image_size,
    stem="auto",
    depths=None,
    widths=None,
    attention=None,
    reduction=None,
    weights=None,
):
    """Builds the classifier `name` for `image_size` x `image_size` RGB inputs.

    Args:
        name: a name from `keras_ba.applications.list_models()`, e.g.
            `"ba_resnet18"`.
        classes: number of classes (softmax head).
        image_size: input side in pixels.
        stem: `"auto"`, `"cifar"` or `"imagenet"` (BA-ResNets only).
        depths: blocks per stage, e.g. `[1, 1, 1, 1]` (BA-ResNets only).
        widths: base filters per stage, e.g. `[8, 16, 32, 64]`; the stem
            gets the first width (BA-ResNets only).
        attention: `"bav1"`, `"bav2"`, `"se"`, `"none"`, or None for the
            builder's default.
        reduction: attention reduction ratio; None: 16, or half the
            narrowest stage width when that is smaller (tiny test models).
        weights: None, or a `.keras` / `.weights.h5` file to start from.

    Returns:
        A functional `keras.Model` with input `images` and softmax output.

    Raises:
        WorkflowError: unknown name, or size options for a non-ResNet.

    Example:
    >>> build_model("ba_resnet18", 10, 32, attention="se").get_layer("conv2_block1_se").name
    'conv2_block1_se'
    """
    kwargs = {"classes": classes, "input_shape": (image_size, image_size, 3), "weights": weights}
    if attention is not None:
        if attention not in ATTENTIONS:
            raise WorkflowError(f"--attention must be one of {ATTENTIONS}, received {attention!r}.")
        kwargs["attention"] = None if attention == "none" else attention
    match = RESNET_NAME.match(name)
    if match and int(match.group(1)) in resnet.RESNET_DEPTHS:
        block_type, blocks = resnet.RESNET_DEPTHS[int(match.group(1))]
        widths = list(widths or (64, 128, 256, 512))
        if reduction is None:
            reduction = min(16, max(1, min(widths) // 2))
        return _call(
            resnet.BAResNet,
            list(depths or blocks),
            widths,
            block_type=block_type,
            stem=choose_stem(stem, image_size),
            stem_filters=widths[0],
            name=name,
            reduction=reduction,
            **kwargs,
        )
    if depths or widths or stem != "auto":
        raise WorkflowError("--depths, --widths and --stem apply to ba_resnet* models only.")
    if reduction is not None:
        kwargs["reduction"] = reduction
    return _call(check_model_name(name), **kwargs)


def check_model_name(name):
    """Returns the builder registered as `name`; a clear error if there is none.

    Example:
    >>> check_model_name("ba_resnet50").__name__
    'BAResNet50'
    """
    try:
        return get_model_builder(name)
    except ValueError as error:
        raise WorkflowError(str(error)) from None


def _call(builder, *args, **kwargs):
    """Calls a builder, turning its argument errors into `WorkflowError`."""
    try:
        return builder(*args, **kwargs)
    except ValueError as error:
        raise WorkflowError(f"Cannot build the model: {error}") from None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What `build_model` needs besides the class count and image size.

    Example:
    >>> ModelSpec("ba_resnet18", depths=(1, 1, 1, 1)).build(10, 16).output_shape
    (None, 10)
    """

    name: str = "ba_resnet18"
    stem: str = "auto"
    depths: tuple | None = None
    widths: tuple | None = None
    attention: str | None = None
    reduction: int | None = None
    weights: str | None = None

    def build(self, classes, image_size):
        """`build_model(self.name, classes, image_size, ...)`."""
        return build_model(
            self.name,
            classes,
            image_size,
            stem=self.stem,
            depths=self.depths,
            widths=self.widths,
            attention=self.attention,
            reduction=self.reduction,
            weights=self.weights,
        )
