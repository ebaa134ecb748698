"""BA-ResNet: ResNet (v1.5, the authors' PyTorch layout) with Bridge Attention.

Data flow: image -> stem -> four stages of blocks -> head. Every block hands
its intra-block features to the attention layer (`conv{s}_block{i}_ba`),
which recalibrates the last one before the shortcut is added.

Architecture details follow the authors' code so that their checkpoints load
(`keras_ba.convert`): convs without bias, BatchNorm epsilon 1e-5 and
momentum 0.9 (PyTorch 0.1), the stride of a downsampling bottleneck on its
3x3 conv, a 1x1 conv + BN shortcut, and symmetric zero padding written out
as `ZeroPadding2D` + `padding="valid"` (Keras' `"same"` pads asymmetrically
at stride 2).
"""

import functools

import keras
from keras import layers

from keras_ba.applications import _common
from keras_ba.applications.preprocessing import (  # noqa: F401 (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    preprocess_input,
)
from keras_ba.layers import _utils
from keras_ba.layers.factory import apply_attention

BLOCK_TYPES = ("basic", "bottleneck")
STEMS = {"imagenet": 32, "cifar": 8}  # stem name -> smallest input side
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _batch_norm(data_format, name):
    return layers.BatchNormalization(
        axis=_utils.channel_axis(data_format),
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        name=name,
    )


def _conv_bn(x, filters, kernel_size, strides, data_format, name, groups=1, relu=True):
    """[pad] -> conv (no bias) -> BN [-> ReLU], with symmetric padding."""
    padding = (kernel_size - 1) // 2
    if padding:
        x = layers.ZeroPadding2D(padding, data_format=data_format, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid",
        groups=groups,
        use_bias=False,
        data_format=data_format,
        name=f"{name}_conv",
    )(x)
    x = _batch_norm(data_format, f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


# === Stem ===


def resnet_stem(x, stem, filters, data_format):
    """`"imagenet"`: 7x7/2 conv + 3x3/2 max-pool; `"cifar"`: 3x3/1 conv."""
    if stem == "cifar":
        return _conv_bn(x, filters, 3, 1, data_format, name="conv1")
    x = _conv_bn(x, filters, 7, 2, data_format, name="conv1")
    x = layers.ZeroPadding2D(1, data_format=data_format, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, data_format=data_format, name="pool1_pool")(x)


# === Blocks ===


def _shortcut(x, filters, strides, data_format, name):
    in_channels = x.shape[_utils.channel_axis(data_format)]
    if strides == 1 and in_channels == filters:
        return x
    return _conv_bn(x, filters, 1, strides, data_format, name=f"{name}_0", relu=False)


def _finish_block(x, features, attention, attention_kwargs, filters, strides, data_format, name):
    """Attention on the block's features, shortcut add, ReLU."""
    shortcut = _shortcut(x, filters, strides, data_format, name)
    y = apply_attention(features, attention, name, data_format=data_format, **attention_kwargs)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def basic_block(x, filters, strides, data_format, name, attention, attention_kwargs, **_):
    """Two 3x3 convs; bridges [relu(bn1(conv1)), bn2(conv2)]."""
    f1 = _conv_bn(x, filters, 3, strides, data_format, name=f"{name}_1")
    f2 = _conv_bn(f1, filters, 3, 1, data_format, name=f"{name}_2", relu=False)
    return _finish_block(x, [f1, f2], attention, attention_kwargs, filters, strides, data_format, name)


def bottleneck_block(
    x, filters, strides, data_format, name, attention, attention_kwargs, groups=1, width_per_group=64
):
    """1x1 -> 3x3 (stride, groups) -> 1x1 (4x); bridges all three outputs."""
    width = int(filters * width_per_group / 64) * groups
    f1 = _conv_bn(x, width, 1, 1, data_format, name=f"{name}_1")
    f2 = _conv_bn(f1, width, 3, strides, data_format, name=f"{name}_2", groups=groups)
    f3 = _conv_bn(f2, 4 * filters, 1, 1, data_format, name=f"{name}_3", relu=False)
    return _finish_block(
        x, [f1, f2, f3], attention, attention_kwargs, 4 * filters, strides, data_format, name
    )


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def resnet_stage(x, block_fn, num_blocks, filters, strides, stage, **block_kwargs):
    """A stage of `num_blocks` blocks; the first one carries the stride."""
    for index in range(1, num_blocks + 1):
        x = block_fn(
            x,
            filters,
            strides if index == 1 else 1,
            name=f"conv{stage}_block{index}",
            **block_kwargs,
        )
    return x


# === Builder ===


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
):
    """Builds a ResNet with Bridge Attention (or SE, or none) in every block.

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
        attention: `"bav1"`, `"bav2"`, `"se"` or None.
        reduction: attention reduction ratio (16 in the papers).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
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
    _common.check_application_args(include_top, weights, pooling, classes, attention)
    _common.check_choice(block_type, "block_type", BLOCK_TYPES)
    _common.check_choice(stem, "stem", STEMS)
    depths = _common.check_int_list(stackwise_num_blocks, "stackwise_num_blocks")
    widths = _common.check_int_list(
        stackwise_num_filters, "stackwise_num_filters", length=len(depths)
    )
    strides = _common.check_int_list(
        stackwise_strides or [1] + [2] * (len(depths) - 1),
        "stackwise_strides",
        length=len(depths),
    )
    _utils.check_positive_int(stem_filters, "stem_filters")
    _utils.check_positive_int(groups, "groups")
    _utils.check_positive_int(width_per_group, "width_per_group")
    _utils.check_positive_int(reduction, "reduction")
    data_format = _utils.standardize_data_format(data_format)

    # === Functional Model ===
    images, inputs = _common.image_input(
        input_tensor, input_shape, data_format, STEMS[stem], stem
    )
    x = resnet_stem(images, stem, stem_filters, data_format)
    block_kwargs = dict(
        data_format=data_format,
        attention=attention,
        attention_kwargs={"reduction": reduction},
    )
    if block_type == "bottleneck":
        block_kwargs.update(groups=groups, width_per_group=width_per_group)
    for stage, (num_blocks, filters, stride) in enumerate(zip(depths, widths, strides, strict=True), start=2):
        x = resnet_stage(x, BLOCKS[block_type], num_blocks, filters, stride, stage, **block_kwargs)
    outputs = _common.classification_head(
        x, include_top, pooling, classes, classifier_activation, data_format
    )
    model = keras.Model(inputs, outputs, name=name)

    # === Weights ===
    rebuild = functools.partial(
        BAResNet,
        depths,
        widths,
        block_type=block_type,
        stem_filters=stem_filters,
        stem=stem,
        stackwise_strides=strides,
        groups=groups,
        width_per_group=width_per_group,
        attention=attention,
        reduction=reduction,
        data_format=data_format,
    )
    return _common.load_weights(model, weights, rebuild)


# === Named variants ===

RESNET_DEPTHS = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}

_VARIANT_DOC = """Instantiates BA-ResNet-{depth} (`attention="bav1"` by default).

    The authors' ResNet-{depth} (v1.5) with Bridge Attention in every block;
    `attention="bav2"`, `"se"` or None give the other variants with the same
    trunk. Takes images preprocessed with
    `keras_ba.applications.resnet.preprocess_input` (RGB in [0, 255] ->
    ImageNet mean/std, as in the authors' training).

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, attention, reduction, data_format, name:
            as in `BAResNet`.

    Example:
    >>> model = BAResNet{depth}(weights=None, classes=10, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 10)
    """


def make_variant(function_name, model_name, blocks, block_type, doc, **architecture):
    """A named `BAResNet` variant with the keras.applications signature.

    `architecture` holds the fixed trunk arguments beyond depth and block
    type (e.g. `groups`, `width_per_group` for ResNeXt).
    """

    def builder(
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
        name=model_name,
    ):
        return BAResNet(
            blocks,
            (64, 128, 256, 512),
            block_type=block_type,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            attention=attention,
            reduction=reduction,
            data_format=data_format,
            name=name,
            **architecture,
        )

    builder.__name__ = builder.__qualname__ = function_name
    builder.__doc__ = doc
    return builder


def _resnet_variant(depth):
    block_type, blocks = RESNET_DEPTHS[depth]
    return make_variant(
        f"BAResNet{depth}",
        f"ba_resnet{depth}",
        blocks,
        block_type,
        _VARIANT_DOC.format(depth=depth),
    )


BAResNet18 = _resnet_variant(18)
BAResNet34 = _resnet_variant(34)
BAResNet50 = _resnet_variant(50)
BAResNet101 = _resnet_variant(101)
BAResNet152 = _resnet_variant(152)
