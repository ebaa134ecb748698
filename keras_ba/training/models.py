"""Builds a classifier by name, with the size options of the command line.

Names are rows of the one table of named models
(`keras_ba.applications.registry.MODELS`). The BA-ResNets (family
`"resnet"`) resolve through `resnet_config` to the generic `BAResNet`
builder, so that the stem (`"cifar"` for small images) and, for quick
tests, the stage depths and widths can change (`custom_resnet`, also what
`keras-ba convert` uses for reduced checkpoints); every other name resolves
through `keras_ba.applications.get_model_builder`.

Example:
>>> model = build_model("ba_resnet18", classes=10, image_size=16,
...                     depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
>>> model.name, model.input_shape, model.output_shape
('ba_resnet18', (None, 16, 16, 3), (None, 10))
"""

import dataclasses

from keras_ba.applications import registry, resnet
from keras_ba.errors import WorkflowError
from keras_ba.options import NO_ATTENTION, STEMS
from keras_ba.training import layout

SMALL_IMAGE_SIDE = 128  # below this, "auto" picks the CIFAR stem
RESNET_WIDTHS = registry.RESNET_WIDTHS


def resnet_config(name):
    """`(block_type, blocks per stage)` of the BA-ResNet called `name`, else None.

    Example:
    >>> resnet_config("ba_resnet50"), resnet_config("ba_efficientnet_b0")
    (('bottleneck', [3, 4, 6, 3]), None)
    """
    entry = registry.MODELS.get(name)
    if entry is None or entry.family != "resnet":
        return None
    return entry.arguments["block_type"], list(entry.arguments["stackwise_num_blocks"])


def custom_resnet(
    name,
    depths=None,
    widths=None,
    block_type=None,
    stem_filters=None,
    stem="imagenet",
    **kwargs,
):
    """The BA-ResNet `name` with some of its structure replaced.

    Args:
        name: `"ba_resnet18"` ... `"ba_resnet152"`; also the model's name.
        depths: blocks per stage; default the named depth's.
        widths: base filters per stage; default `(64, 128, 256, 512)`.
        block_type: `"basic"` or `"bottleneck"`; default the named depth's.
        stem_filters: filters of the stem conv; default the first width.
        stem: `"imagenet"` or `"cifar"`.
        **kwargs: the application arguments of `BAResNet` (`classes`,
            `attention`, `reduction`, `input_shape`, `weights`, ...).

    Returns:
        A `keras.Model`.

    Raises:
        WorkflowError: `name` is not a BA-ResNet, or the builder refused an
            argument.

    Example:
    >>> custom_resnet("ba_resnet18", depths=[1, 1, 1, 1], widths=[8, 16, 32, 64],
    ...               reduction=4, classes=3, input_shape=(32, 32, 3)).output_shape
    (None, 3)
    """
    config = resnet_config(name)
    if config is None:
        raise WorkflowError(
            "`depths`, `widths`, `block_type`, `stem` and `stem_filters` apply to BA-ResNets "
            f"(ba_resnet18 ... ba_resnet152) only. Received: `name={name!r}`."
        )
    widths = list(widths or RESNET_WIDTHS)
    return _call(
        resnet.BAResNet,
        list(depths or config[1]),
        widths,
        block_type=block_type or config[0],
        stem=stem,
        stem_filters=stem_filters or widths[0],
        name=name,
        **kwargs,
    )


def choose_stem(stem, image_size):
    """`"cifar"` (3x3/1 conv) below 128 px, else `"imagenet"`, for `"auto"`.

    Example:
    >>> choose_stem("auto", 32), choose_stem("auto", 224), choose_stem("imagenet", 64)
    ('cifar', 'imagenet', 'imagenet')
    """
    if stem not in STEMS:
        raise WorkflowError(f"`stem` must be one of {STEMS}. Received: `stem={stem!r}`.")
    if stem == "auto":
        return "cifar" if image_size < SMALL_IMAGE_SIDE else "imagenet"
    return stem


def attention_from_name(name):
    """The builders' `attention=` for a command-line name (`"none"` -> None).

    Names are checked against the one attention registry,
    `keras_ba.layers.attention_names()`, so a name added with
    `keras_ba.layers.register_attention` works here too.

    Example:
    >>> attention_from_name("bav2"), attention_from_name("none")
    ('bav2', None)
    """
    from keras_ba.layers import attention_names

    if name == NO_ATTENTION:
        return None
    known = attention_names()
    if name not in known:
        raise WorkflowError(
            f"`attention` must be one of {known + (NO_ATTENTION,)}. Received: `attention={name!r}`."
        )
    return name


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
    data_format="channels_last",
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
        attention: a name from `keras_ba.layers.attention_names()`,
            `"none"`, or None for the builder's default.
        reduction: attention reduction ratio; None: 16, or half the
            narrowest stage width when that is smaller (tiny test models).
        weights: None, or a `.keras` / `.weights.h5` file to start from.
        data_format: layout of the activations. `"channels_first"` keeps
            the `(image_size, image_size, 3)` input and transposes it once,
            in the layer `to_channels_first` (see `training.layout`).

    Returns:
        A functional `keras.Model` with input `images` and softmax output.

    Raises:
        WorkflowError: unknown name, or size options for a non-ResNet.

    Example:
    >>> build_model("ba_resnet18", 10, 32, attention="se").get_layer("conv2_block1_se").name
    'conv2_block1_se'
    """
    kwargs = {"classes": classes, "input_shape": (image_size, image_size, 3), "weights": weights}
    if data_format == "channels_first":
        _, kwargs["input_tensor"] = layout.channels_first_input(image_size)
        kwargs.update(input_shape=(3, image_size, image_size), data_format=data_format)
    elif data_format != "channels_last":
        raise WorkflowError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: `data_format={data_format!r}`."
        )
    if attention is not None:
        kwargs["attention"] = attention_from_name(attention)
    if resnet_config(name) is not None:
        widths = list(widths or RESNET_WIDTHS)
        if reduction is None:
            reduction = min(16, max(1, min(widths) // 2))
        return custom_resnet(
            name,
            depths,
            widths,
            stem=choose_stem(stem, image_size),
            reduction=reduction,
            **kwargs,
        )
    if depths or widths or stem != "auto":
        custom_resnet(name)  # raises: the size options are for BA-ResNets
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
        return registry.get_model_builder(name)
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

    def build(self, classes, image_size, data_format="channels_last"):
        """`build_model(self.name, classes, image_size, ...)`."""
        return build_model(
            self.name,
            classes,
            image_size,
            data_format=data_format,
            stem=self.stem,
            depths=self.depths,
            widths=self.widths,
            attention=self.attention,
            reduction=self.reduction,
            weights=self.weights,
        )
