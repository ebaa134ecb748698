"""Building blocks shared by the BA backbones.

`batch_norm`, `conv_bn_act` (conv -> BatchNorm -> activation, with the
layer names of each family), `make_divisible`, and `inverted_residual`, the
expand -> depthwise -> attention -> project core of EfficientNet's MBConv and
MobileNetV3's block. Every function takes `data_format` and `dtype` and
passes them to each layer it creates.

Layer names come from patterns with one `{}` for the block name, e.g.
`{"conv": "{}_conv", "bn": "{}_bn", "act": "{}_relu"}` gives ResNet's
`conv2_block1_1_conv`, `conv2_block1_1_bn`, `conv2_block1_1_relu`.

Example:
>>> import keras
>>> x = keras.Input((32, 32, 3))
>>> y = conv_bn_act(x, 8, 3, strides=2, activation="relu", padding="symmetric",
...                 epsilon=1e-5, momentum=0.9, data_format="channels_last",
...                 name="conv1", names=RESNET_NAMES)
>>> tuple(y.shape)
(None, 16, 16, 8)
"""

from keras import layers

from keras_ba import _validation

PADDINGS = ("same", "symmetric")
# `trunk_style` of the backbones (docs/trunks.md): "keras" follows
# keras.applications (TensorFlow "same" padding, Keras BatchNorm epsilons),
# "pytorch" the authors' PyTorch code (symmetric padding, its epsilons).
TRUNK_STYLES = ("keras", "pytorch")
# Name patterns of each family (`{}`: the conv's prefix).
RESNET_NAMES = {"pad": "{}_pad", "conv": "{}_conv", "bn": "{}_bn", "act": "{}_relu"}
KERAS_NAMES = {"pad": "{}_pad", "conv": "{}_conv", "bn": "{}_bn", "act": "{}_activation"}


def check_trunk_style(trunk_style, family, supported=TRUNK_STYLES):
    """Checks a backbone's `trunk_style` against the styles `family` builds.

    Example:
    >>> check_trunk_style("keras", "BA-ResNet", supported=("pytorch",))
    Traceback (most recent call last):
    ...
    ValueError: BA-ResNet has no trunk_style='keras' trunk: it builds ('pytorch',) (see docs/trunks.md). Received: trunk_style='keras'
    """
    _validation.check_choice(trunk_style, "trunk_style", TRUNK_STYLES)
    if trunk_style not in supported:
        raise ValueError(
            f"{family} has no trunk_style={trunk_style!r} trunk: it builds "
            f"{tuple(supported)} (see docs/trunks.md). Received: trunk_style={trunk_style!r}"
        )
    return trunk_style


def batch_norm(data_format, name, epsilon, momentum, dtype=None):
    """A BatchNormalization over the channel axis of `data_format`.

    Example:
    >>> batch_norm("channels_first", "conv1_bn", 1e-5, 0.9).axis
    1
    """
    return layers.BatchNormalization(
        axis=_validation.channel_axis(data_format),
        epsilon=epsilon,
        momentum=momentum,
        name=name,
        dtype=dtype,
    )


def make_divisible(value, divisor=8, min_value=None):
    """Rounds a channel count to a multiple of `divisor`, never down by >10%.

    The rule of MobileNet's `_make_divisible` and of EfficientNet's
    `round_filters`.

    Example:
    >>> make_divisible(72 / 16 * 16), make_divisible(96 * 0.25), make_divisible(1280 * 1.8)
    (72, 24, 2304)
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


def conv_bn_act(
    x,
    filters,
    kernel_size,
    *,
    name,
    strides=1,
    groups=1,
    depthwise=False,
    activation=None,
    padding="same",
    kernel_initializer="glorot_uniform",
    epsilon,
    momentum,
    data_format,
    dtype=None,
    names=KERAS_NAMES,
):
    """[pad] -> conv (no bias) -> BatchNorm [-> activation].

    Args:
        x: input tensor.
        filters: output channels (ignored, may be None, when `depthwise`).
        kernel_size: integer side of the square kernel.
        name: prefix put into the `names` patterns.
        strides: integer stride.
        groups: groups of the conv (ResNeXt).
        depthwise: a `DepthwiseConv2D` instead of a `Conv2D`.
        activation: None, or a Keras activation name applied after the norm.
        padding: `"same"` (TensorFlow's: the extra row and column go
            bottom/right at stride 2) or `"symmetric"` (`ZeroPadding2D` of
            `(kernel_size - 1) // 2` then `"valid"`, PyTorch's convention).
        kernel_initializer: initializer of the conv kernel.
        epsilon, momentum: BatchNorm arguments (Keras' momentum convention).
        data_format: `"channels_last"` or `"channels_first"`.
        dtype: dtype policy of every layer (None: the global policy).
        names: patterns for the `"pad"`, `"conv"`, `"bn"` and `"act"` layers.

    Returns:
        The output tensor.

    Example:
    >>> import keras
    >>> x = keras.Input((8, 8, 16))
    >>> y = conv_bn_act(x, None, 3, depthwise=True, activation="swish",
    ...                 epsilon=1e-3, momentum=0.99, data_format="channels_last",
    ...                 name="block1a", names={"conv": "{}_dwconv", "bn": "{}_bn",
    ...                                        "act": "{}_activation"})
    >>> tuple(y.shape)
    (None, 8, 8, 16)
    """
    _validation.check_choice(padding, "padding", PADDINGS)
    pad = (kernel_size - 1) // 2
    if padding == "symmetric" and pad:
        x = layers.ZeroPadding2D(
            pad, data_format=data_format, dtype=dtype, name=names["pad"].format(name)
        )(x)
    conv_args = dict(
        strides=strides,
        padding="valid" if padding == "symmetric" else "same",
        use_bias=False,
        data_format=data_format,
        dtype=dtype,
        name=names["conv"].format(name),
    )
    if depthwise:
        conv = layers.DepthwiseConv2D(
            kernel_size, depthwise_initializer=kernel_initializer, **conv_args
        )
    else:
        conv = layers.Conv2D(
            filters, kernel_size, groups=groups, kernel_initializer=kernel_initializer, **conv_args
        )
    x = conv(x)
    x = batch_norm(data_format, names["bn"].format(name), epsilon, momentum, dtype)(x)
    if activation is not None:
        x = layers.Activation(activation, dtype=dtype, name=names["act"].format(name))(x)
    return x


def inverted_residual(
    x,
    filters,
    kernel_size,
    strides,
    *,
    expanded_channels,
    activation,
    attend,
    attention_after_activation,
    residual,
    conv_bn,
    names,
    name,
    drop_rate=0.0,
    dtype=None,
):
    """expand 1x1 -> depthwise -> attention -> project 1x1 [-> drop -> add].

    The core of EfficientNet's MBConv and MobileNetV3's block. The block
    hands its features to `attend`: `[expand output, depthwise output]`, or
    only the depthwise output without an expansion conv.

    Args:
        x: input tensor.
        filters: output channels of the projection.
        kernel_size, strides: of the depthwise conv.
        expanded_channels: width of the 1x1 expansion conv, or None for a
            block without one.
        activation: Keras activation name of the expansion and depthwise
            outputs.
        attend: `attend(features, name=name) -> tensor`, e.g. a partial of
            `keras_ba.layers.apply_attention` with `attention` bound.
        attention_after_activation: True: attention sees the activated
            depthwise output (EfficientNet, `keras.applications`' MobileNetV3
            SE); False: it recalibrates the BatchNorm output and the
            activation follows (the authors' BA MobileNetV3 block).
        residual: whether to add the input (same shape, stride 1).
        conv_bn: `conv_bn_act` with the family's norm, padding, initializer,
            `data_format` and `dtype` bound.
        names: `{"expand": ..., "depthwise": ..., "project": ...}` name
            patterns for `conv_bn`, plus `"drop"` and `"add"` patterns.
        name: the block's name.
        drop_rate: drop-connect rate before the residual add.
        dtype: dtype policy of the layers created here.

    Returns:
        The block's output tensor.

    Example:
    >>> import functools, keras
    >>> from keras_ba.layers import apply_attention
    >>> conv_bn = functools.partial(conv_bn_act, epsilon=1e-3, momentum=0.99,
    ...                             data_format="channels_last")
    >>> names = {"expand": {"conv": "{}_expand", "bn": "{}_expand_bn",
    ...                     "act": "{}_expand_activation"},
    ...          "depthwise": {"conv": "{}_dw", "bn": "{}_dw_bn", "act": "{}_dw_act"},
    ...          "project": {"conv": "{}_project", "bn": "{}_project_bn"},
    ...          "drop": "{}_drop", "add": "{}_add"}
    >>> attend = functools.partial(apply_attention, attention="bav1", reduction=6)
    >>> y = inverted_residual(keras.Input((8, 8, 16)), 16, 3, 1, expanded_channels=48,
    ...                       activation="swish", attend=attend,
    ...                       attention_after_activation=True, residual=True,
    ...                       conv_bn=conv_bn, names=names, name="block")
    >>> tuple(y.shape), y._keras_history.operation.name
    ((None, 8, 8, 16), 'block_add')
    """
    shortcut = x
    features = []
    if expanded_channels is not None:
        x = conv_bn(
            x, expanded_channels, 1, activation=activation, name=name, names=names["expand"]
        )
        features.append(x)
    x = conv_bn(
        x, None, kernel_size, strides=strides, depthwise=True, name=name, names=names["depthwise"]
    )
    depthwise_activation = layers.Activation(
        activation, dtype=dtype, name=names["depthwise"]["act"].format(name)
    )
    if attention_after_activation:
        x = depthwise_activation(x)
    x = attend(features + [x], name=name)
    if not attention_after_activation:
        x = depthwise_activation(x)
    x = conv_bn(x, filters, 1, name=name, names=names["project"])
    if residual:
        if drop_rate > 0:
            x = layers.Dropout(
                drop_rate,
                noise_shape=(None, 1, 1, 1),
                dtype=dtype,
                name=names["drop"].format(name),
            )(x)
        x = layers.Add(dtype=dtype, name=names["add"].format(name))([x, shortcut])
    return x


def pyramid_level(stride):
    """`"P{k}"` for a total stride of `2**k`, None for other strides.

    Example:
    >>> pyramid_level(1), pyramid_level(4), pyramid_level(6)
    ('P0', 'P2', None)
    """
    level = stride.bit_length() - 1
    return f"P{level}" if stride == 2**level else None
