"""BA-ResNet: ResNet (v1.5, the authors' PyTorch layout) with Bridge Attention.

Data flow: image -> stem -> stages of blocks (the backbone,
`BAResNetBackbone`) -> head. Every block hands its intra-block features to
the attention layer (`conv{s}_block{i}_ba`), which recalibrates the last
one before the shortcut is added.

Architecture details follow the authors' code so that their checkpoints load
(`keras_ba.convert`): convs without bias, BatchNorm epsilon 1e-5 and
momentum 0.9 (PyTorch 0.1), the stride of a downsampling bottleneck on its
3x3 conv, a 1x1 conv + BN shortcut, and symmetric zero padding written out
as `ZeroPadding2D` + `padding="valid"` (Keras' `"same"` pads asymmetrically
at stride 2). This is the only trunk: `trunk_style="pytorch"` (the default)
is accepted for the API every family shares (docs/trunks.md), and
`trunk_style="keras"` raises, as there is no `keras.applications`-compatible
BA-ResNet trunk (`keras.applications.ResNet50` is v1, with conv biases).
"""

import functools

import keras
from keras import layers

from keras_ba import _validation
from keras_ba.applications import blocks, classifier, registry
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.preprocessing import (  # noqa: F401 (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    preprocess_input,
)
from keras_ba.layers.registry import apply_attention

BLOCK_TYPES = ("basic", "bottleneck")
STEMS = {"imagenet": 32, "cifar": 8}  # stem name -> smallest input side
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9

# depth -> (block type, blocks per stage), read from the table of named models.
RESNET_DEPTHS = {
    int(entry.name[len("ba_resnet") :]): (
        entry.arguments["block_type"],
        entry.arguments["stackwise_num_blocks"],
    )
    for entry in registry.MODELS.values()
    if entry.family == "resnet"
}


# === Blocks ===


def _block_convs(block_type, filters, strides, groups, width_per_group):
    """(filters, kernel, strides, groups, activation) of a block's convs."""
    if block_type == "basic":
        return [(filters, 3, strides, 1, "relu"), (filters, 3, 1, 1, None)]
    width = int(filters * width_per_group / 64) * groups
    return [
        (width, 1, 1, 1, "relu"),
        (width, 3, strides, groups, "relu"),
        (4 * filters, 1, 1, 1, None),
    ]


def residual_block(x, convs, conv_bn, attend, data_format, dtype, name):
    """Convs `{name}_1..n`; attention over all their outputs; shortcut add.

    Bridges `[relu(bn1(conv1 x)), ..., bn_n(conv_n .)]` (the authors'
    basic block and bottleneck), recalibrates the last, adds the shortcut
    (`{name}_0` 1x1 conv + BN when the shape changes) and applies ReLU.

    Args:
        x: input tensor.
        convs: `(filters, kernel_size, strides, groups, activation)` per
            conv (`_block_convs` gives the basic block and the bottleneck).
        conv_bn: `keras_ba.applications.blocks.conv_bn_act` with the
            family's norm, padding, names, `data_format` and `dtype` bound.
        attend: `attend(features, name=name)`, a partial of
            `keras_ba.layers.apply_attention` with `attention` bound.
        data_format, dtype: of the layers created here.
        name: the block's name, e.g. `"conv2_block1"`.

    Example:
    >>> import functools
    >>> from keras_ba.applications import blocks
    >>> from keras_ba.layers import apply_attention
    >>> conv_bn = functools.partial(blocks.conv_bn_act, padding="symmetric", epsilon=1e-5,
    ...                             momentum=0.9, data_format="channels_last",
    ...                             names=blocks.RESNET_NAMES)
    >>> attend = functools.partial(apply_attention, attention="bav2", reduction=4)
    >>> convs = [(8, 3, 2, 1, "relu"), (8, 3, 1, 1, None)]
    >>> y = residual_block(keras.Input((8, 8, 4)), convs, conv_bn, attend,
    ...                    "channels_last", None, "conv2_block1")
    >>> tuple(y.shape)
    (None, 4, 4, 8)
    """
    features = []
    y = x
    for index, (filters, kernel_size, strides, groups, activation) in enumerate(convs, 1):
        y = conv_bn(
            y,
            filters,
            kernel_size,
            strides=strides,
            groups=groups,
            activation=activation,
            name=f"{name}_{index}",
        )
        features.append(y)
    out_channels, stride = convs[-1][0], max(c[2] for c in convs)
    shortcut = x
    if stride != 1 or x.shape[_validation.channel_axis(data_format)] != out_channels:
        shortcut = conv_bn(x, out_channels, 1, strides=stride, name=f"{name}_0")
    y = attend(features, name=name)
    y = layers.Add(dtype=dtype, name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", dtype=dtype, name=f"{name}_out")(y)


# === Backbone ===


@keras.saving.register_keras_serializable(package="keras_ba")
class BAResNetBackbone(Backbone):
    """ResNet trunk with Bridge Attention (or SE, or any attention) in every block.

    A functional model from images to the last stage's output, with
    `pyramid_outputs`: `"P{k}"` is the output at total stride `2**k`. The
    ImageNet stem gives `"P1"` (`conv1_relu`) and `"P2"`..`"P5"` (the
    stage outputs); the CIFAR stem (stride 1) gives `"P0"`..`"P3"`.

    Args:
        stackwise_num_blocks: blocks per stage, e.g. `[3, 4, 6, 3]`.
        stackwise_num_filters: base width per stage (a bottleneck outputs 4x).
        block_type: `"bottleneck"` (ResNet-50 and deeper) or `"basic"`.
        stem_filters: filters of the stem conv.
        stem: `"imagenet"` (7x7/2 conv + max-pool, inputs >= 32 px) or
            `"cifar"` (3x3/1 conv, no pool, inputs >= 8 px).
        stackwise_strides: stride of each stage's first block; default
            `[1, 2, 2, ...]`.
        groups: groups of the 3x3 conv in bottlenecks (ResNeXt).
        width_per_group: bottleneck width per group (ResNeXt; 64 = ResNet).
        attention: a name from `keras_ba.layers.attention_names()`
            (`"bav1"`, `"bav2"`, `"se"`), a `keras.layers.Layer` subclass, a
            callable `(features, name, **kwargs) -> tensor`, or None.
        reduction: attention reduction ratio (16 in the papers).
        image_shape: `(H, W, 3)` (channels_last) or `(3, H, W)`; default
            `(None, None, 3)`: any size at least the stem's minimum.
        input_tensor: optional Keras tensor to build on (keras.applications'
            argument; not part of the config: a backbone rebuilt from its
            config starts from `keras.Input(image_shape)`).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        dtype: dtype policy of every layer (None: the global policy).
        trunk_style: `"pytorch"`, the only trunk (the authors' and
            torchvision's conventions; see the module docstring).
        **kwargs: `name`, `trainable`.

    Reference:
        He et al., "Deep Residual Learning for Image Recognition", CVPR
        2016; Zhao et al., "BA-Net: Bridge Attention for Deep Convolutional
        Neural Networks", ECCV 2022.

    Example:
    >>> backbone = BAResNetBackbone([1, 1, 1, 1], [8, 16, 32, 64],
    ...                             block_type="basic", stem_filters=8,
    ...                             reduction=4, image_shape=(64, 64, 3))
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P1': (None, 32, 32, 8), 'P2': (None, 16, 16, 8), 'P3': (None, 8, 8, 16), 'P4': (None, 4, 4, 32), 'P5': (None, 2, 2, 64)}
    """

    def __init__(
        self,
        stackwise_num_blocks,
        stackwise_num_filters=(64, 128, 256, 512),
        block_type="bottleneck",
        stem_filters=64,
        stem="imagenet",
        stackwise_strides=None,
        groups=1,
        width_per_group=64,
        attention="bav1",
        reduction=16,
        image_shape=None,
        input_tensor=None,
        data_format=None,
        dtype=None,
        trunk_style="pytorch",
        **kwargs,
    ):
        # === Arguments ===
        blocks.check_trunk_style(trunk_style, "BA-ResNet", supported=("pytorch",))
        depths = _validation.check_int_list(stackwise_num_blocks, "stackwise_num_blocks")
        widths = _validation.check_int_list(
            stackwise_num_filters, "stackwise_num_filters", length=len(depths)
        )
        strides = _validation.check_int_list(
            stackwise_strides or [1] + [2] * (len(depths) - 1),
            "stackwise_strides",
            length=len(depths),
        )
        _validation.check_choice(block_type, "block_type", BLOCK_TYPES)
        _validation.check_choice(stem, "stem", STEMS)
        _validation.check_positive_int(stem_filters, "stem_filters")
        _validation.check_positive_int(groups, "groups")
        _validation.check_positive_int(width_per_group, "width_per_group")
        if block_type == "basic" and (groups, width_per_group) != (1, 64):
            raise ValueError(
                "`groups` and `width_per_group` apply to bottleneck blocks only; "
                f"basic blocks need groups=1, width_per_group=64. Received: "
                f"groups={groups}, width_per_group={width_per_group}"
            )
        begin = start(
            attention, reduction, image_shape, input_tensor, data_format, STEMS[stem], stem
        )
        data_format = begin.data_format

        # === Functional Model ===
        conv_bn = functools.partial(
            blocks.conv_bn_act,
            padding="symmetric",
            epsilon=BN_EPSILON,
            momentum=BN_MOMENTUM,
            data_format=data_format,
            dtype=dtype,
            names=blocks.RESNET_NAMES,
        )
        attend = functools.partial(
            apply_attention,
            attention=attention,
            reduction=reduction,
            hidden_activation="relu",
            gate_activation="sigmoid",
            data_format=data_format,
            dtype=dtype,
        )
        pyramid_outputs = {}
        if stem == "cifar":
            x = conv_bn(begin.images, stem_filters, 3, activation="relu", name="conv1")
            total_stride = 1
        else:
            x = conv_bn(begin.images, stem_filters, 7, strides=2, activation="relu", name="conv1")
            pyramid_outputs["P1"] = x
            x = layers.ZeroPadding2D(1, data_format=data_format, dtype=dtype, name="pool1_pad")(x)
            x = layers.MaxPooling2D(
                3, strides=2, data_format=data_format, dtype=dtype, name="pool1_pool"
            )(x)
            total_stride = 4
        pyramid_outputs[blocks.pyramid_level(total_stride)] = x
        for stage, (num_blocks, filters, stride) in enumerate(
            zip(depths, widths, strides, strict=True), start=2
        ):
            for index in range(1, num_blocks + 1):
                convs = _block_convs(
                    block_type, filters, stride if index == 1 else 1, groups, width_per_group
                )
                x = residual_block(
                    x, convs, conv_bn, attend, data_format, dtype, f"conv{stage}_block{index}"
                )
            total_stride *= stride
            level = blocks.pyramid_level(total_stride)
            if level is not None:
                pyramid_outputs[level] = x
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.stackwise_num_blocks = depths
        self.stackwise_num_filters = widths
        self.block_type = block_type
        self.stem_filters = stem_filters
        self.stem = stem
        self.stackwise_strides = strides
        self.groups = groups
        self.width_per_group = width_per_group
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stackwise_num_blocks": self.stackwise_num_blocks,
                "stackwise_num_filters": self.stackwise_num_filters,
                "block_type": self.block_type,
                "stem_filters": self.stem_filters,
                "stem": self.stem,
                "stackwise_strides": self.stackwise_strides,
                "groups": self.groups,
                "width_per_group": self.width_per_group,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


def BAResNet(
    stackwise_num_blocks,
    stackwise_num_filters=(64, 128, 256, 512),
    block_type="bottleneck",
    stem_filters=64,
    stem="imagenet",
    stackwise_strides=None,
    groups=1,
    width_per_group=64,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    attention="bav1",
    reduction=16,
    data_format=None,
    name="ba_resnet",
    trunk_style="pytorch",
):
    """Builds a ResNet classifier with Bridge Attention (or SE, or none) in every block.

    `BAResNetBackbone` plus the `keras.applications` head, in one flat model.

    Args:
        stackwise_num_blocks, stackwise_num_filters, block_type,
        stem_filters, stem, stackwise_strides, groups, width_per_group,
        attention, reduction, data_format, trunk_style: as in
            `BAResNetBackbone`.
        include_top: whether to end with the `predictions` classifier.
        weights: None (random) or the path to a `.keras` / `.weights.h5`
            file saved from a model of the same architecture. With
            `include_top=False` the file's head is ignored.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(H, W, 3)` (channels_last); default
            `(None, None, 3)`, any size at least the stem's minimum.
        pooling: `None`, `"avg"` or `"max"`; used when `include_top=False`.
        classes: number of classes of the classifier.
        classifier_activation: activation of `predictions` (`"softmax"`, or
            None for logits).
        name: model name.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`.

    Example:
    >>> model = BAResNet([1, 1, 1, 1], [8, 16, 32, 64], block_type="basic",
    ...                  stem="cifar", input_shape=(32, 32, 3), classes=10,
    ...                  reduction=4)
    >>> model.output_shape
    (None, 10)
    """
    trunk = dict(
        stackwise_num_blocks=stackwise_num_blocks,
        stackwise_num_filters=stackwise_num_filters,
        block_type=block_type,
        stem_filters=stem_filters,
        stem=stem,
        stackwise_strides=stackwise_strides,
        groups=groups,
        width_per_group=width_per_group,
        trunk_style=trunk_style,
    )
    return classifier.build_application(
        BAResNetBackbone,
        trunk,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        attention,
        reduction,
        data_format,
        name,
    )


# === Named variants ===

DESCRIPTION = """The authors' ResNet (v1.5, {block_type} blocks {stackwise_num_blocks})
    with Bridge Attention in every block; `attention="bav2"`, `"se"` or None
    give the other variants with the same trunk. Takes images preprocessed
    with `keras_ba.applications.preprocess_input` (RGB in [0, 255] ->
    ImageNet mean/std, as in the authors' training)."""

# One row each in `registry.MODELS`; the examples are skipped in the suite (a
# full-size model takes seconds to initialise); the tests build every variant
# shapes-only.


def _variant(name, **kwargs):
    return BAResNet(**registry.variant_arguments(name, kwargs))


def BAResNet18(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnet18", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNet34(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnet34", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNet50(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnet50", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNet101(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnet101", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNet152(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnet152", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in (
    (BAResNet18, "BA-ResNet-18"),
    (BAResNet34, "BA-ResNet-34"),
    (BAResNet50, "BA-ResNet-50"),
    (BAResNet101, "BA-ResNet-101"),
    (BAResNet152, "BA-ResNet-152"),
):
    registry.document_variant(_function, "BAResNet", _title, DESCRIPTION)
