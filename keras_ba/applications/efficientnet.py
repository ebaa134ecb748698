"""BA-EfficientNet: EfficientNet-B0 ... B7 with Bridge Attention.

Data flow: image -> stem -> seven stages of MBConv blocks -> top conv (the
backbone, `BAEfficientNetBackbone`) -> head. In every MBConv block that has
an expansion conv, Bridge Attention (`block{stage}{letter}_ba`) replaces
squeeze-and-excitation: it bridges the expansion output and the depthwise
output, `[swish(bn(expand x)), swish(bn(depthwise .))]`, with reduction 6
(bottleneck `expanded // 6`), a swish hidden activation and a sigmoid gate,
and recalibrates the depthwise output before the projection conv. Blocks
without an expansion conv (the first block, `block1a_se`) have a single
feature: there the authors apply their SE-shaped 1x1 convs (biases, a quarter
of the block's input filters) per pixel, without pooling, which
`keras_ba.layers.PixelGate` implements (same weights as SE, a different
function). This is the authors'
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
attention. So `trunk_style="keras"` (the default) and `"pytorch"` build the
same trunk (the authors' conventions, docs/trunks.md): the authors' static
padding equals `"same"` at the image size it was computed for (224 for B0).

Input convention: unlike `keras.applications.EfficientNet*`, the model does
NOT rescale its input. The authors trained on RGB scaled to [0, 1] and
normalised with the ImageNet mean and standard deviation, so feed the output
of `preprocess_input` (an alias of
`keras_ba.applications.resnet.preprocess_input`) applied to RGB in [0, 255].
"""

import functools

import keras

from keras_ba import _validation
from keras_ba.applications import blocks, classifier, registry
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.efficientnet_design import (  # noqa: F401 (their home before 0.3)
    BLOCK_ARG_KEYS,
    DEFAULT_BLOCKS_ARGS,
    _block_letter,
    _check_blocks_args,
    round_filters,
    round_repeats,
)
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.layers.pixel_gate import PixelGate
from keras_ba.layers.registry import apply_attention
from keras_ba.layers.squeeze_excite import SqueezeExcite

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
    "BAEfficientNetBackbone",
    "preprocess_input",
]

MIN_SIZE = 32  # five stride-2 stages
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
ACTIVATION = "swish"
# Layer names of an MBConv block (keras.applications'), `{}` = block name.
BLOCK_NAMES = {
    "expand": {"conv": "{}_expand_conv", "bn": "{}_expand_bn", "act": "{}_expand_activation"},
    "depthwise": {"conv": "{}_dwconv", "bn": "{}_bn", "act": "{}_activation"},
    "project": {"conv": "{}_project_conv", "bn": "{}_project_bn"},
    "drop": "{}_drop",
    "add": "{}_add",
}

CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}

# The stage table of keras.applications (and of the paper), per stage.
# variant -> (width_coefficient, depth_coefficient, default_size, dropout_rate),
# read from the table of named models.
EFFICIENTNET_CONFIGS = {
    int(entry.name[-1]): (
        entry.arguments["width_coefficient"],
        entry.arguments["depth_coefficient"],
        entry.arguments["default_size"],
        entry.defaults["dropout_rate"],
    )
    for entry in registry.MODELS.values()
    if entry.family == "efficientnet"
}


# === Attention in a block ===


def squeeze_excite(features, name, filters_in, se_ratio, data_format, dtype, layer=SqueezeExcite):
    """`keras.applications`' EfficientNet SE: biases, a quarter of the block input.

    `layer=PixelGate` gives the same weights applied per pixel (the authors'
    first-block gate).

    Example:
    >>> y = squeeze_excite([keras.Input((4, 4, 96))], "block2a_se", 16, 0.25,
    ...                    "channels_last", None)
    >>> y._keras_history.operation.squeeze_channels
    4
    """
    return layer(
        squeeze_channels=max(1, int(filters_in * se_ratio)),
        use_bias=True,
        hidden_activation=ACTIVATION,
        data_format=data_format,
        dtype=dtype,
        name=name,
    )(features)


def first_block_attention(features, name, filters_in, se_ratio, data_format, dtype):
    """The authors' attention in a block without expansion conv (one feature).

    Bridge Attention needs two or more features; the authors' block keeps
    SE's 1x1 convs there but applies them per pixel, without pooling
    (`PixelGate`, named `{name}_se` like the SE it replaces).

    Example:
    >>> y = first_block_attention([keras.Input((8, 8, 16))], "block1a", 16, 0.25,
    ...                           "channels_last", None)
    >>> type(y._keras_history.operation).__name__, y._keras_history.operation.name
    ('PixelGate', 'block1a_se')
    """
    return squeeze_excite(
        features, f"{name}_se", filters_in, se_ratio, data_format, dtype, layer=PixelGate
    )


def _block_attend(attention, filters_in, se_ratio, reduction, data_format, dtype):
    """`attend(features, name=...)` of one MBConv block (see `apply_attention`)."""
    if not se_ratio or not 0 < se_ratio <= 1:
        attention = None
    layout = dict(filters_in=filters_in, se_ratio=se_ratio, data_format=data_format, dtype=dtype)
    return functools.partial(
        apply_attention,
        attention=attention,
        overrides={"se": functools.partial(squeeze_excite, **layout)},
        fallback=functools.partial(first_block_attention, **layout),
        reduction=reduction,
        hidden_activation=ACTIVATION,
        gate_activation="sigmoid",
        data_format=data_format,
        dtype=dtype,
    )


# === Backbone ===


@keras.saving.register_keras_serializable(package="keras_ba")
class BAEfficientNetBackbone(Backbone):
    """EfficientNet trunk (stem, MBConv stages, top conv) with Bridge Attention.

    Bridge Attention replaces squeeze-and-excitation in every MBConv block
    with an expansion conv, bridging the expansion and depthwise outputs
    (reduction 6, swish hidden activation, sigmoid gate); blocks without an
    expansion conv keep the authors' single-feature gate. `pyramid_outputs`
    holds the last block output at each total stride: `"P1"` ... `"P5"`
    (`"P1"` is `block1a`'s output in B0); the top conv is the backbone's
    output.

    Args:
        width_coefficient: float, scales every stage's channels.
        depth_coefficient: float, scales every stage's number of blocks.
        drop_connect_rate: the largest drop-connect (stochastic depth) rate,
            reached by the last block; block `b` of `n` uses
            `drop_connect_rate * b / n`.
        depth_divisor: channel counts are rounded to multiples of this.
        blocks_args: None for the EfficientNet stage table
            (`DEFAULT_BLOCKS_ARGS`), or a list of per-stage dicts with the
            same keys (a small table makes a tiny test model).
        attention: a name from `keras_ba.layers.attention_names()`
            (`"se"` is the standard EfficientNet SE in every block), a
            `keras.layers.Layer` subclass, a callable `(features, name,
            **kwargs) -> tensor`, or None (no attention).
        reduction: attention reduction ratio: the bottleneck width is
            `expanded_channels // reduction` (6 in the authors' code).
        image_shape: `(H, W, 3)` (channels_last) or `(3, H, W)` with sides
            of at least 32; default `(None, None, 3)`.
        input_tensor: optional Keras tensor to build on (not part of the
            config).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        dtype: dtype policy of every layer (None: the global policy).
        trunk_style: `"keras"` (default) or `"pytorch"`: the same trunk,
            as the authors' code pads TensorFlow-style and uses epsilon 1e-3
            (see the module docstring and docs/trunks.md).
        **kwargs: `name`, `trainable`.

    Reference:
        Tan and Le, "EfficientNet: Rethinking Model Scaling for
        Convolutional Neural Networks", ICML 2019; Zhao et al., "BA-Net:
        Bridge Attention for Deep Convolutional Neural Networks", ECCV 2022.

    Example:
    >>> tiny = [dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16,
    ...              expand_ratio=6, id_skip=True, strides=2, se_ratio=0.25)]
    >>> backbone = BAEfficientNetBackbone(0.5, 1.0, blocks_args=tiny,
    ...                                   image_shape=(64, 64, 3))
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P1': (None, 32, 32, 16), 'P2': (None, 16, 16, 8)}
    """

    def __init__(
        self,
        width_coefficient,
        depth_coefficient,
        drop_connect_rate=0.2,
        depth_divisor=8,
        blocks_args=None,
        attention="bav1",
        reduction=6,
        image_shape=None,
        input_tensor=None,
        data_format=None,
        dtype=None,
        trunk_style="keras",
        **kwargs,
    ):
        # === Arguments ===
        blocks.check_trunk_style(trunk_style, "BA-EfficientNet")
        _validation.check_positive_number(width_coefficient, "width_coefficient")
        _validation.check_positive_number(depth_coefficient, "depth_coefficient")
        drop_connect_rate = _validation.check_unit_interval(
            drop_connect_rate, "drop_connect_rate", closed_low=True
        )
        _validation.check_positive_int(depth_divisor, "depth_divisor")
        stages = _check_blocks_args(blocks_args)
        begin = start(
            attention, reduction, image_shape, input_tensor, data_format, MIN_SIZE, "efficientnet"
        )
        data_format = begin.data_format

        # === Functional Model ===

        def scale(filters):
            return round_filters(filters, width_coefficient, depth_divisor)

        conv_bn = functools.partial(
            blocks.conv_bn_act,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            epsilon=BN_EPSILON,
            momentum=BN_MOMENTUM,
            data_format=data_format,
            dtype=dtype,
        )
        x = conv_bn(begin.images, scale(32), 3, strides=2, activation=ACTIVATION, name="stem")
        pyramid_outputs = {"P1": x}
        total_stride = 2
        total_blocks = float(sum(round_repeats(a["repeats"], depth_coefficient) for a in stages))
        block_index = 0
        for stage, args in enumerate(stages, start=1):
            filters_out = scale(args["filters_out"])
            for repeat in range(round_repeats(args["repeats"], depth_coefficient)):
                filters_in = scale(args["filters_in"]) if repeat == 0 else filters_out
                strides = args["strides"] if repeat == 0 else 1
                x = blocks.inverted_residual(
                    x,
                    filters_out,
                    args["kernel_size"],
                    strides,
                    expanded_channels=(
                        filters_in * args["expand_ratio"] if args["expand_ratio"] != 1 else None
                    ),
                    activation=ACTIVATION,
                    attend=_block_attend(
                        attention, filters_in, args["se_ratio"], reduction, data_format, dtype
                    ),
                    attention_after_activation=True,
                    residual=args["id_skip"] and strides == 1 and filters_in == filters_out,
                    drop_rate=drop_connect_rate * block_index / total_blocks,
                    conv_bn=conv_bn,
                    names=BLOCK_NAMES,
                    dtype=dtype,
                    name=f"block{stage}{_block_letter(repeat)}",
                )
                block_index += 1
                total_stride *= strides
                pyramid_outputs[blocks.pyramid_level(total_stride)] = x
        x = conv_bn(x, scale(1280), 1, activation=ACTIVATION, name="top")
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.width_coefficient = width_coefficient
        self.depth_coefficient = depth_coefficient
        self.drop_connect_rate = drop_connect_rate
        self.depth_divisor = depth_divisor
        self.blocks_args = None if blocks_args is None else stages
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "width_coefficient": self.width_coefficient,
                "depth_coefficient": self.depth_coefficient,
                "drop_connect_rate": self.drop_connect_rate,
                "depth_divisor": self.depth_divisor,
                # Plain copies: a deepcopy of Keras' tracked list would
                # pickle the whole model through its tracker (seconds).
                "blocks_args": (
                    None if self.blocks_args is None else [dict(a) for a in self.blocks_args]
                ),
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


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
    trunk_style="keras",
):
    """Builds an EfficientNet classifier with Bridge Attention (or SE, or none).

    `BAEfficientNetBackbone` plus the `keras.applications` head
    (`avg_pool`, `top_dropout`, `predictions`), in one flat model.

    Args:
        width_coefficient, depth_coefficient, drop_connect_rate,
        depth_divisor, blocks_args, attention, reduction, data_format,
        trunk_style: as in `BAEfficientNetBackbone`.
        default_size: integer, the image side the variant is designed and
            trained for (224 for B0, 600 for B7). The model itself accepts
            any side of at least 32 pixels (`input_shape=None` gives
            `(None, None, 3)`), so this only documents the resolution to use.
        dropout_rate: dropout before the classifier (`top_dropout`).
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
        name: model name.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`; it
        takes `preprocess_input` output (ImageNet mean/std), not raw pixels.

    Example:
    >>> tiny = [dict(kernel_size=3, repeats=1, filters_in=32, filters_out=16,
    ...              expand_ratio=6, id_skip=True, strides=2, se_ratio=0.25)]
    >>> model = BAEfficientNet(0.5, 1.0, 64, blocks_args=tiny, classes=10,
    ...                        input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 10)
    """
    _validation.check_positive_int(default_size, "default_size")
    dropout_rate = _validation.check_unit_interval(dropout_rate, "dropout_rate", closed_low=True)
    trunk = dict(
        width_coefficient=width_coefficient,
        depth_coefficient=depth_coefficient,
        drop_connect_rate=drop_connect_rate,
        depth_divisor=depth_divisor,
        blocks_args=blocks_args,
        trunk_style=trunk_style,
    )
    return classifier.build_application(
        BAEfficientNetBackbone,
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
        dropout_rate=dropout_rate,
    )


# === Named variants ===

DESCRIPTION = """EfficientNet (width {width_coefficient}, depth {depth_coefficient}, designed
    for {default_size}x{default_size} images) with Bridge Attention in every
    MBConv block that has an expansion conv, as in the authors' code;
    `attention="bav2"`, `"se"` (the standard EfficientNet) or None give the
    other variants with the same trunk. The model takes `preprocess_input`
    output (RGB in [0, 255] -> ImageNet mean/std, as in the authors'
    training), not raw pixels: unlike `keras.applications`, there is no
    rescaling layer inside."""

# One row each in `registry.MODELS`; the examples are skipped in the suite (a
# full-size model takes seconds to initialise); the tests build every variant
# shapes-only.


def _variant(name, **kwargs):
    return BAEfficientNet(**registry.variant_arguments(name, kwargs))


def BAEfficientNetB0(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b0", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB1(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b1", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB2(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b2", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB3(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b3", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB4(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b4", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB5(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b5", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB6(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b6", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAEfficientNetB7(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_efficientnet_b7", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in (
    (BAEfficientNetB0, "BA-EfficientNet-B0"),
    (BAEfficientNetB1, "BA-EfficientNet-B1"),
    (BAEfficientNetB2, "BA-EfficientNet-B2"),
    (BAEfficientNetB3, "BA-EfficientNet-B3"),
    (BAEfficientNetB4, "BA-EfficientNet-B4"),
    (BAEfficientNetB5, "BA-EfficientNet-B5"),
    (BAEfficientNetB6, "BA-EfficientNet-B6"),
    (BAEfficientNetB7, "BA-EfficientNet-B7"),
):
    registry.document_variant(_function, "BAEfficientNet", _title, DESCRIPTION)
