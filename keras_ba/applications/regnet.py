"""BA-RegNetY: timm's RegNet-Y with Bridge Attention in place of its SE.

Data flow: image -> stem (3x3/2 conv, BN, ReLU) -> four stages of Y blocks
(the backbone, `BARegNetYBackbone`) -> global average pool -> `predictions`.

A Y block is 1x1 conv -> grouped 3x3 conv (the block's stride) -> [SE] ->
1x1 conv -> BN, plus the shortcut (1x1 conv + BN when the shape changes),
then ReLU. Bridge Attention replaces the SE as in BA-ResNeXt: it bridges the
three conv outputs (`conv1`, `conv2` after their ReLU, `conv3` after its
BatchNorm) and gates the last one before the residual add
(`s{i}_b{j}_ba`). `attention="se"` is timm's RegNet-Y block exactly: the SE
(`s{i}_b{j}_se`, with biases) sits between the grouped conv and `conv3`.
`attention=None` drops the gate. Every attention's bottleneck width is the
reference SE's, `round(block input width / reduction)` (`reduction=4`: timm's
`se_ratio=0.25`), so BA, SE and no-attention models differ by the attention
alone.

The trunk is timm's (`trunk_style="pytorch"`; there is no `keras.applications`
RegNet): symmetric zero padding (`ZeroPadding2D` + `"valid"`), BatchNorm
epsilon 1e-5 and momentum 0.9 (PyTorch's 0.1), convs without bias, timm's
initialisation (normal with `2 / fan_out`, groups counted; the last
BatchNorm's gamma of every block zero).

Input convention: `preprocess_input` (RGB in [0, 255] -> [0, 1] -> ImageNet
mean/std), timm's for its RegNet-Y weights; 224 x 224 by default.

Example:
>>> backbone = BARegNetYBackbone([1, 1], [16, 24], [8, 8], stem_filters=8,
...                              image_shape=(32, 32, 3))
>>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
{'P1': (None, 16, 16, 8), 'P2': (None, 8, 8, 16), 'P3': (None, 4, 4, 24)}
"""

import functools

import keras
from keras import layers

from keras_ba import _validation
from keras_ba.applications import classifier
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.preprocessing import preprocess_input  # noqa: F401 (re-exported)
from keras_ba.applications.regnet_design import REGNETY_CONFIGS, regnet_design
from keras_ba.layers import BridgeAttention, SqueezeExcite
from keras_ba.layers.registry import apply_attention

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
TRUNK_STYLES = ("pytorch",)
DEFAULT_SIZE = 224


# === Layers ===


def _conv_initializer(groups):
    """timm's conv init: normal(0, sqrt(2 / fan_out)), fan_out = k*k*out/groups."""
    return keras.initializers.VarianceScaling(
        scale=2.0 * groups, mode="fan_out", distribution="untruncated_normal"
    )


def conv_bn(
    x,
    filters,
    kernel_size,
    *,
    name,
    strides=1,
    groups=1,
    activation=None,
    zero_gamma=False,
    data_format,
    dtype,
):
    """[ZeroPadding2D] -> Conv2D (no bias, `"valid"`) -> BatchNorm [-> ReLU].

    Layers `{name}_pad`, `{name}_conv`, `{name}_bn`, `{name}_relu`; timm's
    `ConvNormAct` with symmetric padding `(kernel_size - 1) // 2`.

    Example:
    >>> y = conv_bn(keras.Input((8, 8, 4)), 8, 3, strides=2, activation="relu",
    ...             name="stem", data_format="channels_last", dtype=None)
    >>> tuple(y.shape), y._keras_history.operation.name
    ((None, 4, 4, 8), 'stem_relu')
    """
    pad = (kernel_size - 1) // 2
    if pad:
        x = layers.ZeroPadding2D(pad, data_format=data_format, dtype=dtype, name=f"{name}_pad")(x)
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        groups=groups,
        padding="valid",
        use_bias=False,
        kernel_initializer=_conv_initializer(groups),
        data_format=data_format,
        dtype=dtype,
        name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(
        axis=_validation.channel_axis(data_format),
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer="zeros" if zero_gamma else "ones",
        dtype=dtype,
        name=f"{name}_bn",
    )(x)
    if activation is not None:
        x = layers.Activation(activation, dtype=dtype, name=f"{name}_relu")(x)
    return x


def reference_se(x, squeeze_channels, name, data_format, dtype):
    """timm's RegNet-Y SE: pool, 1x1 (bias) -> ReLU -> 1x1 (bias) -> sigmoid.

    Example:
    >>> y = reference_se(keras.Input((4, 4, 32)), 8, "s1_b1_se", "channels_last", None)
    >>> layer = y._keras_history.operation
    >>> layer.squeeze_channels, layer.use_bias
    (8, True)
    """
    return SqueezeExcite(
        squeeze_channels=squeeze_channels,
        use_bias=True,
        hidden_activation="relu",
        gate_activation="sigmoid",
        data_format=data_format,
        dtype=dtype,
        name=name,
    )(x)


def _bridge(features, layer_name, version, squeeze_channels, data_format, dtype):
    return BridgeAttention(
        version=version,
        squeeze_channels=squeeze_channels,
        hidden_activation="relu",
        gate_activation="sigmoid",
        data_format=data_format,
        dtype=dtype,
        name=layer_name,
    )(features)


def y_block(x, filters, group_width, strides, attention, reduction, data_format, dtype, name):
    """One RegNet-Y block `{name}` (e.g. `"s1_b1"`) with its attention.

    Args:
        x: input tensor.
        filters: block (and bottleneck) width.
        group_width: channels per group of the 3x3 conv.
        strides: stride of the 3x3 conv and of the shortcut conv.
        attention: as in `BARegNetYBackbone`; `"se"` is the reference SE
            after the grouped conv, anything else gates the last conv output
            over all three (`keras_ba.layers.apply_attention`).
        reduction: attention width = `round(input channels / reduction)`.
        data_format, dtype: of every layer.
        name: the block's name.

    Example:
    >>> y = y_block(keras.Input((8, 8, 16)), 24, 8, 2, "bav2", 4,
    ...             "channels_last", None, "s2_b1")
    >>> tuple(y.shape), y._keras_history.operation.name
    ((None, 4, 4, 24), 's2_b1_out')
    """
    in_channels = x.shape[_validation.channel_axis(data_format)]
    squeeze = max(1, int(round(in_channels / reduction)))
    layer = functools.partial(conv_bn, data_format=data_format, dtype=dtype)
    y1 = layer(x, filters, 1, activation="relu", name=f"{name}_conv1")
    y2 = layer(
        y1,
        filters,
        3,
        strides=strides,
        groups=filters // group_width,
        activation="relu",
        name=f"{name}_conv2",
    )
    reference = isinstance(attention, str) and attention == "se"
    if reference:
        y2 = reference_se(y2, squeeze, f"{name}_se", data_format, dtype)
    y3 = layer(y2, filters, 1, zero_gamma=True, name=f"{name}_conv3")
    shortcut = x
    if strides != 1 or in_channels != filters:
        shortcut = layer(x, filters, 1, strides=strides, name=f"{name}_downsample")
    if not reference:
        bridge = functools.partial(
            _bridge, squeeze_channels=squeeze, data_format=data_format, dtype=dtype
        )
        y3 = apply_attention(
            [y1, y2, y3],
            attention,
            name,
            overrides={
                "bav1": functools.partial(bridge, version="v1"),
                "bav2": functools.partial(bridge, version="v2"),
            },
            reduction=reduction,
            hidden_activation="relu",
            gate_activation="sigmoid",
            data_format=data_format,
            dtype=dtype,
        )
    y = layers.Add(dtype=dtype, name=f"{name}_add")([y3, shortcut])
    return layers.Activation("relu", dtype=dtype, name=f"{name}_out")(y)


# === Backbone ===


def check_trunk_style(trunk_style):
    """Only timm's (PyTorch) trunk exists: Keras has no RegNet to follow.

    Example:
    >>> check_trunk_style("pytorch")
    'pytorch'
    """
    if trunk_style != "pytorch":
        raise ValueError(
            "BA-RegNetY has only the PyTorch (timm) trunk, keras.applications has no "
            f"RegNet: use trunk_style='pytorch'. Received: trunk_style={trunk_style!r}"
        )
    return trunk_style


def _check_groups(widths, group_widths):
    for stage, (width, group) in enumerate(zip(widths, group_widths, strict=True), 1):
        if width % group:
            raise ValueError(
                f"Stage {stage} has width {width}, not a multiple of its group width "
                f"{group}: derive compatible widths with "
                "keras_ba.applications.regnet_design.regnet_design(...)."
            )


@keras.saving.register_keras_serializable(package="keras_ba")
class BARegNetYBackbone(Backbone):
    """RegNet-Y trunk (timm's) with Bridge Attention, SE or no attention per block.

    A functional model from images to the last stage's output, with
    `pyramid_outputs`: `"P1"` is the stem (stride 2), `"P2"` ... the stage
    outputs (strides 4, 8, 16, 32 for four stages). Layer names follow
    timm's modules: `stem_conv`, `s{i}_b{j}_conv{1,2,3}_conv` / `_bn`,
    `s{i}_b{j}_downsample_conv` / `_bn`, `s{i}_b{j}_ba` or `_se`.

    Args:
        stackwise_num_blocks: blocks per stage, e.g. `[2, 6, 12, 2]`.
        stackwise_num_filters: width per stage (`regnet_design` derives
            them from w0, wa, wm, depth).
        stackwise_group_width: channels per group of each stage's grouped
            3x3 conv (each width must be a multiple of it).
        stem_filters: width of the stem conv (32 in every RegNet).
        attention: `"bav2"` (default), `"bav1"`, `"se"` (the reference
            RegNet-Y SE), None, or any attention
            `keras_ba.layers.apply_attention` accepts.
        reduction: attention width = `round(block input width / reduction)`
            (4: timm's `se_ratio=0.25`).
        trunk_style: `"pytorch"` only (timm's trunk; there is no Keras one).
        image_shape: `(H, W, 3)` or `(3, H, W)`; default `(None, None, 3)`.
        input_tensor: optional Keras tensor to build on (not in the config).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        dtype: dtype policy of every layer (None: the global policy).
        **kwargs: `name`, `trainable`.

    Reference:
        Radosavovic et al., "Designing Network Design Spaces", CVPR 2020;
        Zhang et al., "BA-Net: Bridge Attention in Deep Neural Networks",
        2024 (arXiv 2410.07860).

    Example:
    >>> backbone = BARegNetYBackbone([1, 2], [16, 24], [8, 8], stem_filters=8,
    ...                              attention="se", image_shape=(16, 16, 3))
    >>> backbone.get_layer("s2_b1_se").squeeze_channels, backbone.output_shape
    (4, (None, 2, 2, 24))
    """

    def __init__(
        self,
        stackwise_num_blocks,
        stackwise_num_filters,
        stackwise_group_width,
        stem_filters=32,
        attention="bav2",
        reduction=4,
        trunk_style="pytorch",
        image_shape=None,
        input_tensor=None,
        data_format=None,
        dtype=None,
        **kwargs,
    ):
        # === Arguments ===
        depths = _validation.check_int_list(stackwise_num_blocks, "stackwise_num_blocks")
        widths = _validation.check_int_list(
            stackwise_num_filters, "stackwise_num_filters", length=len(depths)
        )
        group_widths = _validation.check_int_list(
            stackwise_group_width, "stackwise_group_width", length=len(depths)
        )
        _check_groups(widths, group_widths)
        _validation.check_positive_int(stem_filters, "stem_filters")
        check_trunk_style(trunk_style)
        min_size = 2 ** (len(depths) + 1)
        begin = start(
            attention, reduction, image_shape, input_tensor, data_format, min_size, "regnet"
        )
        data_format = begin.data_format

        # === Functional Model ===
        x = conv_bn(
            begin.images,
            stem_filters,
            3,
            strides=2,
            activation="relu",
            name="stem",
            data_format=data_format,
            dtype=dtype,
        )
        pyramid_outputs = {"P1": x}
        for stage, (num_blocks, width, group) in enumerate(
            zip(depths, widths, group_widths, strict=True), start=1
        ):
            for index in range(1, num_blocks + 1):
                x = y_block(
                    x,
                    width,
                    group,
                    2 if index == 1 else 1,
                    attention,
                    reduction,
                    data_format,
                    dtype,
                    f"s{stage}_b{index}",
                )
            pyramid_outputs[f"P{stage + 1}"] = x
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.stackwise_num_blocks = depths
        self.stackwise_num_filters = widths
        self.stackwise_group_width = group_widths
        self.stem_filters = stem_filters
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stackwise_num_blocks": self.stackwise_num_blocks,
                "stackwise_num_filters": self.stackwise_num_filters,
                "stackwise_group_width": self.stackwise_group_width,
                "stem_filters": self.stem_filters,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


def BARegNetY(
    stackwise_num_blocks,
    stackwise_num_filters,
    stackwise_group_width,
    stem_filters=32,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    attention="bav2",
    reduction=4,
    data_format=None,
    name="ba_regnety",
    trunk_style="pytorch",
):
    """Builds a RegNet-Y classifier with Bridge Attention (or SE, or none).

    `BARegNetYBackbone` plus timm's head (global average pool, `predictions`).

    Args:
        stackwise_num_blocks, stackwise_num_filters, stackwise_group_width,
        stem_filters, attention, reduction, trunk_style, data_format: as in
            `BARegNetYBackbone`.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, name: as in
            `keras_ba.applications.resnet.BAResNet`.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`.

    Example:
    >>> model = BARegNetY([1, 1], [16, 24], [8, 8], stem_filters=8,
    ...                   input_shape=(32, 32, 3), classes=10)
    >>> model.output_shape, model.get_layer("s1_b1_ba").version
    ((None, 10), 'v2')
    """
    trunk = dict(
        stackwise_num_blocks=stackwise_num_blocks,
        stackwise_num_filters=stackwise_num_filters,
        stackwise_group_width=stackwise_group_width,
        stem_filters=stem_filters,
        trunk_style=trunk_style,
    )
    return classifier.build_application(
        BARegNetYBackbone,
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


def regnety_trunk(key):
    """`(depths, widths, group widths)` of timm's `regnety_{key}`.

    Example:
    >>> regnety_trunk("004")
    ([1, 3, 6, 6], [48, 104, 208, 440], [8, 8, 8, 8])
    """
    design = regnet_design(**REGNETY_CONFIGS[key])
    return design.stage_depths, design.stage_widths, design.group_widths
