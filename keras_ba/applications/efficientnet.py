"""BA-EfficientNet: EfficientNet-B0 ... B7 with Bridge Attention.

Data flow: image -> stem -> seven stages of MBConv blocks -> top conv ->
head. In every MBConv block that has an expansion conv, Bridge Attention
(`block{stage}{letter}_ba`) replaces squeeze-and-excitation: it bridges the
expansion output and the depthwise output, `[swish(bn(expand x)),
swish(bn(depthwise .))]`, with reduction 6 (bottleneck `expanded // 6`), a
swish hidden activation and a sigmoid gate, and recalibrates the depthwise
output before the projection conv. Blocks without an expansion conv (the
first block, `block1a_se`) have a single feature: there the authors apply
their SE-shaped 1x1 convs (biases, a quarter of the block's input filters)
per pixel, without pooling, which `keras_ba.layers.PixelGate` implements
(same weights as SE, a different function). This is the authors'
`BA_effcientnet.py` (built on lukemelas/EfficientNet-PyTorch), whose
BA-EfficientNet-B0 has 8,418,640 parameters with 1000 classes; this module
builds exactly that count.

The trunk is EfficientNet as `keras.applications` builds it (compound
scaling with `round_filters` / `round_repeats`, swish, drop-connect as a
`Dropout` with `noise_shape=(None, 1, 1, 1)`, BatchNorm epsilon 1e-3 and
momentum 0.99) with TensorFlow-style `"same"` padding, which is also what the
authors' PyTorch code implements (`Conv2dStaticSamePadding`). With
`attention="se"` every block uses the standard EfficientNet SE (the
`keras.applications` model, same parameter count); with None there is no
attention.

Input convention: unlike `keras.applications.EfficientNet*`, the model does
NOT rescale its input. The authors trained on RGB scaled to [0, 1] and
normalised with the ImageNet mean and standard deviation, so feed the output
of `preprocess_input` (an alias of
`keras_ba.applications.resnet.preprocess_input`) applied to RGB in [0, 255].
"""

import copy
import functools
import math

import keras
from keras import layers

from keras_ba.applications import _common
from keras_ba.applications.resnet import preprocess_input
from keras_ba.layers import PixelGate, _utils
from keras_ba.layers.factory import apply_attention

__all__ = [
    "BAEfficientNet",
    "BAEfficientNetB0",
    "BAEfficientNetB1",
    "BAEfficientNetB2",
    "BAEfficientNetB3",
    "BAEfficientNetB4",
    "BAEfficientNetB5",
    "BAEfficientNetB6",
    "BAEfficientNetB7",
    "preprocess_input",
]

MIN_SIZE = 32  # five stride-2 stages
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
ACTIVATION = "swish"

CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}

# The stage table of keras.applications (and of the paper), per stage.
DEFAULT_BLOCKS_ARGS = (
    {"kernel_size": 3, "repeats": 1, "filters_in": 32, "filters_out": 16,
     "expand_ratio": 1, "id_skip": True, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 2, "filters_in": 16, "filters_out": 24,
     "expand_ratio": 6, "id_skip": True, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 2, "filters_in": 24, "filters_out": 40,
     "expand_ratio": 6, "id_skip": True, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 3, "filters_in": 40, "filters_out": 80,
     "expand_ratio": 6, "id_skip": True, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 3, "filters_in": 80, "filters_out": 112,
     "expand_ratio": 6, "id_skip": True, "strides": 1, "se_ratio": 0.25},
    {"kernel_size": 5, "repeats": 4, "filters_in": 112, "filters_out": 192,
     "expand_ratio": 6, "id_skip": True, "strides": 2, "se_ratio": 0.25},
    {"kernel_size": 3, "repeats": 1, "filters_in": 192, "filters_out": 320,
     "expand_ratio": 6, "id_skip": True, "strides": 1, "se_ratio": 0.25},
)  # fmt: skip
BLOCK_ARG_KEYS = tuple(DEFAULT_BLOCKS_ARGS[0])

# variant -> (width_coefficient, depth_coefficient, default_size, dropout_rate)
EFFICIENTNET_CONFIGS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}


# === Compound scaling ===


def round_filters(filters, width_coefficient, divisor=8):
    """Scales a channel count by `width_coefficient`, rounded to `divisor`.

    Example:
    >>> round_filters(32, 1.1), round_filters(1280, 2.0)
    (32, 2560)
    """
    filters *= width_coefficient
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:  # never round down by more than 10%
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats, depth_coefficient):
    """Scales a stage's block count by `depth_coefficient`, rounded up."""
    return int(math.ceil(depth_coefficient * repeats))


def _block_letter(index):
    """0 -> 'a', 25 -> 'z', 26 -> 'aa' (keras.applications uses a..z)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(97 + rest) + letters
    return letters


# === Blocks ===


def _batch_norm(data_format, name):
    return layers.BatchNormalization(
        axis=_utils.channel_axis(data_format),
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        name=name,
    )


def _block_attention(attention, has_expansion, filters_in, se_ratio, reduction):
    """The attention kind and arguments of one MBConv block (or None)."""
    if attention is None or not se_ratio or not 0 < se_ratio <= 1:
        return None, {}
    if attention == "se" or not has_expansion:
        squeeze = max(1, int(filters_in * se_ratio))
        return "se", dict(squeeze_channels=squeeze, use_bias=True, hidden_activation=ACTIVATION)
    return attention, dict(reduction=reduction, hidden_activation=ACTIVATION)


def mbconv_block(
    x,
    filters_in,
    filters_out,
    kernel_size,
    strides,
    expand_ratio,
    se_ratio,
    id_skip,
    drop_rate,
    attention,
    reduction,
    data_format,
    name,
):
    """Inverted residual block; attention recalibrates the depthwise output.

    expand 1x1 (if `expand_ratio != 1`) -> depthwise -> attention over
    `[expand output, depthwise output]` -> project 1x1 -> drop-connect + add
    (when the block keeps its shape).
    """
    inputs = x
    filters = filters_in * expand_ratio
    features = []
    if expand_ratio != 1:
        x = layers.Conv2D(
            filters,
            1,
            padding="same",
            use_bias=False,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            data_format=data_format,
            name=f"{name}_expand_conv",
        )(x)
        x = _batch_norm(data_format, f"{name}_expand_bn")(x)
        x = layers.Activation(ACTIVATION, name=f"{name}_expand_activation")(x)
        features.append(x)
    x = layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_initializer=CONV_KERNEL_INITIALIZER,
        data_format=data_format,
        name=f"{name}_dwconv",
    )(x)
    x = _batch_norm(data_format, f"{name}_bn")(x)
    x = layers.Activation(ACTIVATION, name=f"{name}_activation")(x)
    features.append(x)

    kind, kwargs = _block_attention(attention, expand_ratio != 1, filters_in, se_ratio, reduction)
    if kind == "se" and attention in ("bav1", "bav2"):  # the authors' unpooled gate
        x = PixelGate(data_format=data_format, name=f"{name}_se", **kwargs)(x)
    else:
        x = apply_attention(features, kind, name, data_format=data_format, **kwargs)

    x = layers.Conv2D(
        filters_out,
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        data_format=data_format,
        name=f"{name}_project_conv",
    )(x)
    x = _batch_norm(data_format, f"{name}_project_bn")(x)
    if id_skip and strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


# === Argument checks ===


def _check_positive_number(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"number. Received: {name}={value!r}"
        )
    return value


def _check_rate(value, name):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not 0.0 <= value < 1.0:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a number in "
            f"[0, 1). Received: {name}={value!r}"
        )
    return float(value)


def _check_blocks_args(blocks_args):
    if blocks_args is None:
        return copy.deepcopy(list(DEFAULT_BLOCKS_ARGS))
    ok = isinstance(blocks_args, (list, tuple)) and len(blocks_args) > 0
    ok = ok and all(isinstance(args, dict) for args in blocks_args)
    if not ok:
        raise ValueError(
            "Received an invalid value for `blocks_args`, expected None (the "
            "EfficientNet table) or a non-empty list of dicts with keys "
            f"{BLOCK_ARG_KEYS}. Received: blocks_args={blocks_args!r}"
        )
    for stage, args in enumerate(blocks_args, start=1):
        missing = [key for key in BLOCK_ARG_KEYS if key not in args]
        if missing:
            raise ValueError(
                f"`blocks_args` stage {stage} lacks the keys {missing}; every "
                f"stage needs {BLOCK_ARG_KEYS}. Received: {args!r}"
            )
        for key in ("kernel_size", "repeats", "filters_in", "filters_out", "expand_ratio"):
            _utils.check_positive_int(args[key], f"blocks_args[{stage - 1}][{key!r}]")
        _common.check_choice(args["strides"], f"blocks_args[{stage - 1}]['strides']", (1, 2))
    return copy.deepcopy(list(blocks_args))


# === Builder ===


def BAEfficientNet(
    width_coefficient,
    depth_coefficient,
    default_size,
    dropout_rate=0.2,
    drop_connect_rate=0.2,
    depth_divisor=8,
    blocks_args=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    attention="bav1",
    reduction=6,
    data_format=None,
    name="ba_efficientnet",
):
    """Builds an EfficientNet with Bridge Attention (or SE, or none).

    Bridge Attention replaces squeeze-and-excitation in every MBConv block
    with an expansion conv, bridging the expansion and depthwise outputs
    (reduction 6, swish hidden activation, sigmoid gate); blocks without an
    expansion conv get the authors' per-pixel gate (`PixelGate`, named
    `{block}_se`, the weights of an SE with biases).

    Args:
        width_coefficient: float, scales every stage's channels.
        depth_coefficient: float, scales every stage's number of blocks.
        default_size: integer, the image side the variant is designed and
            trained for (224 for B0, 600 for B7). The model itself accepts
            any side of at least 32 pixels (`input_shape=None` gives
            `(None, None, 3)`), so this only documents the resolution to use.
        dropout_rate: dropout before the classifier (`top_dropout`).
        drop_connect_rate: the largest drop-connect (stochastic depth) rate,
            reached by the last block; block `b` of `n` uses
            `drop_connect_rate * b / n`.
        depth_divisor: channel counts are rounded to multiples of this.
        blocks_args: None for the EfficientNet stage table
            (`DEFAULT_BLOCKS_ARGS`), or a list of per-stage dicts with the
            same keys (a small table makes a tiny test model).
        include_top: whether to end with the `predictions` classifier.
        weights: None (random) or the path to a `.keras` / `.weights.h5`
            file saved from a model of the same architecture. With
            `include_top=False` the file's head is ignored.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(H, W, 3)` (channels_last) with sides of at
            least 32; default `(None, None, 3)`.
        pooling: `None`, `"avg"` or `"max"`; used when `include_top=False`.
        classes: number of classes of the classifier.
        classifier_activation: activation of `predictions` (`"softmax"`, or
            None for logits).
        attention: `"bav1"`, `"bav2"`, `"se"` (standard EfficientNet) or
            None (no attention).
        reduction: Bridge Attention reduction ratio: the bottleneck width is
            `expanded_channels // reduction` (6 in the authors' code).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        name: model name.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`; it
        takes `preprocess_input` output (ImageNet mean/std), not raw pixels.

    Reference:
        Tan and Le, "EfficientNet: Rethinking Model Scaling for
        Convolutional Neural Networks", ICML 2019; Zhao et al., "BA-Net:
        Bridge Attention for Deep Convolutional Neural Networks", ECCV 2022.

    Example:
    >>> tiny = [dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16,
    ...              expand_ratio=6, id_skip=True, strides=2, se_ratio=0.25)]
    >>> model = BAEfficientNet(0.5, 1.0, 64, blocks_args=tiny, classes=10,
    ...                        input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 10)
    """
    _common.check_application_args(include_top, weights, pooling, classes, attention)
    _check_positive_number(width_coefficient, "width_coefficient")
    _check_positive_number(depth_coefficient, "depth_coefficient")
    _utils.check_positive_int(default_size, "default_size")
    dropout_rate = _check_rate(dropout_rate, "dropout_rate")
    drop_connect_rate = _check_rate(drop_connect_rate, "drop_connect_rate")
    _utils.check_positive_int(depth_divisor, "depth_divisor")
    stages = _check_blocks_args(blocks_args)
    _utils.check_positive_int(reduction, "reduction")
    data_format = _utils.standardize_data_format(data_format)
    scale_filters = functools.partial(
        round_filters, width_coefficient=width_coefficient, divisor=depth_divisor
    )

    # === Functional Model ===
    images, inputs = _common.image_input(
        input_tensor, input_shape, data_format, MIN_SIZE, "efficientnet"
    )
    x = layers.Conv2D(
        scale_filters(32),
        3,
        strides=2,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        data_format=data_format,
        name="stem_conv",
    )(images)
    x = _batch_norm(data_format, "stem_bn")(x)
    x = layers.Activation(ACTIVATION, name="stem_activation")(x)

    total_blocks = float(sum(round_repeats(a["repeats"], depth_coefficient) for a in stages))
    block_index = 0
    for stage, args in enumerate(stages, start=1):
        filters_in = scale_filters(args["filters_in"])
        filters_out = scale_filters(args["filters_out"])
        for repeat in range(round_repeats(args["repeats"], depth_coefficient)):
            x = mbconv_block(
                x,
                filters_in if repeat == 0 else filters_out,
                filters_out,
                args["kernel_size"],
                args["strides"] if repeat == 0 else 1,
                args["expand_ratio"],
                args["se_ratio"],
                args["id_skip"],
                drop_connect_rate * block_index / total_blocks,
                attention,
                reduction,
                data_format,
                name=f"block{stage}{_block_letter(repeat)}",
            )
            block_index += 1

    x = layers.Conv2D(
        scale_filters(1280),
        1,
        padding="same",
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        data_format=data_format,
        name="top_conv",
    )(x)
    x = _batch_norm(data_format, "top_bn")(x)
    x = layers.Activation(ACTIVATION, name="top_activation")(x)
    outputs = _common.classification_head(
        x,
        include_top,
        pooling,
        classes,
        classifier_activation,
        data_format,
        dropout_rate=dropout_rate,
    )
    model = keras.Model(inputs, outputs, name=name)

    # === Weights ===
    rebuild = functools.partial(
        BAEfficientNet,
        width_coefficient,
        depth_coefficient,
        default_size,
        dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate,
        depth_divisor=depth_divisor,
        blocks_args=stages,
        attention=attention,
        reduction=reduction,
        data_format=data_format,
    )
    return _common.load_weights(model, weights, rebuild)


# === Named variants ===

_VARIANT_DOC = """Instantiates BA-EfficientNet-B{index} (`attention="bav1"` by default).

    EfficientNet-B{index} (width {width}, depth {depth}, designed for
    {size}x{size} images, dropout {dropout}) with Bridge Attention in every
    MBConv block that has an expansion conv, as in the authors' code;
    `attention="bav2"`, `"se"` (the standard EfficientNet-B{index}) or None
    give the other variants with the same trunk.

    The model takes `preprocess_input` output (RGB in [0, 255] -> ImageNet
    mean/std, as in the authors' training), not raw pixels: unlike
    `keras.applications`, there is no rescaling layer inside.

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, attention, reduction, data_format, name:
            as in `BAEfficientNet`.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> BAEfficientNetB{index}(classes=10, input_shape=(64, 64, 3)).output_shape{skip}
    (None, 10)
    """


def _make_variant(index):
    width, depth, size, dropout = EFFICIENTNET_CONFIGS[index]

    def builder(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        attention="bav1",
        reduction=6,
        data_format=None,
        name=f"ba_efficientnet_b{index}",
    ):
        return BAEfficientNet(
            width,
            depth,
            size,
            dropout_rate=dropout,
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
        )

    builder.__name__ = builder.__qualname__ = f"BAEfficientNetB{index}"
    builder.__doc__ = _VARIANT_DOC.format(
        index=index,
        width=width,
        depth=depth,
        size=size,
        dropout=dropout,
        skip="  # doctest: +SKIP" if index else "",  # B1-B7: slow to initialise
    )
    return builder


BAEfficientNetB0 = _make_variant(0)
BAEfficientNetB1 = _make_variant(1)
BAEfficientNetB2 = _make_variant(2)
BAEfficientNetB3 = _make_variant(3)
BAEfficientNetB4 = _make_variant(4)
BAEfficientNetB5 = _make_variant(5)
BAEfficientNetB6 = _make_variant(6)
BAEfficientNetB7 = _make_variant(7)
