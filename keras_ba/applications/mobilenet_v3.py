"""BA-MobileNetV3: MobileNetV3-Small and -Large with Bridge Attention.

Data flow: image -> stem conv -> inverted residual blocks -> `conv_1` ->
head. The trunk is MobileNetV3 as `keras.applications` builds it (alpha,
hard-swish, `minimalistic=False`, BatchNorm epsilon 1e-3 and momentum 0.999,
TensorFlow-style `"same"` padding, the same layer names), without the
`Rescaling` layer: the model takes `preprocess_input` output (an alias of
`keras_ba.applications.resnet.preprocess_input`: RGB in [0, 255] -> ImageNet
mean/std, as in the authors' training).

Attention sits in the blocks that have squeeze-and-excitation in MobileNetV3:

- `attention="se"`: the standard block (`keras.applications`): depthwise ->
  BN -> activation -> SE (biases, bottleneck `make_divisible(C / 4)`, ReLU,
  hard-sigmoid gate). The trainable parameter count equals
  `keras.applications.MobileNetV3*(weights=None)`.
- `attention="bav1"` / `"bav2"`: the authors' `BA_mobilenetv3.py`. Bridge
  Attention bridges the block's expansion output (after its activation) and
  its depthwise output, reduction 6 (bottleneck `C // 6`), ReLU hidden
  activation, hard-sigmoid gate. As in the authors' code it recalibrates the
  depthwise BatchNorm output and the block's activation follows. A block
  with SE but no expansion conv (`expanded_conv`, the first block of
  MobileNetV3-Small) has a single conv output, so the authors keep SE there
  (same widths as above), also before the activation.
- None: no attention.

Hard-sigmoid is Keras 3's `hard_sigmoid`, `relu6(x + 3) / 6`, the same as
PyTorch's `Hardsigmoid` and the authors' `h_sigmoid`.
"""

import functools

import keras
from keras import layers

from keras_ba.applications import _common
from keras_ba.applications.resnet import preprocess_input
from keras_ba.layers import _utils
from keras_ba.layers.factory import apply_attention

__all__ = [
    "BAMobileNetV3",
    "BAMobileNetV3Large",
    "BAMobileNetV3Small",
    "preprocess_input",
]

MIN_SIZE = 32
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999
SE_RATIO = 0.25
ACTIVATIONS = ("relu", "hard_swish")
GATE = "hard_sigmoid"

# (expansion, filters, kernel_size, stride, squeeze-excite, activation);
# filters before `alpha` scaling, as in keras.applications.
SMALL_STACK = (
    (1, 16, 3, 2, True, "relu"),
    (72 / 16, 24, 3, 2, False, "relu"),
    (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, 5, 2, True, "hard_swish"),
    (6, 40, 5, 1, True, "hard_swish"),
    (6, 40, 5, 1, True, "hard_swish"),
    (3, 48, 5, 1, True, "hard_swish"),
    (3, 48, 5, 1, True, "hard_swish"),
    (6, 96, 5, 2, True, "hard_swish"),
    (6, 96, 5, 1, True, "hard_swish"),
    (6, 96, 5, 1, True, "hard_swish"),
)
LARGE_STACK = (
    (1, 16, 3, 1, False, "relu"),
    (4, 24, 3, 2, False, "relu"),
    (3, 24, 3, 1, False, "relu"),
    (3, 40, 5, 2, True, "relu"),
    (3, 40, 5, 1, True, "relu"),
    (3, 40, 5, 1, True, "relu"),
    (6, 80, 3, 2, False, "hard_swish"),
    (2.5, 80, 3, 1, False, "hard_swish"),
    (2.3, 80, 3, 1, False, "hard_swish"),
    (2.3, 80, 3, 1, False, "hard_swish"),
    (6, 112, 3, 1, True, "hard_swish"),
    (6, 112, 3, 1, True, "hard_swish"),
    (6, 160, 5, 2, True, "hard_swish"),
    (6, 160, 5, 1, True, "hard_swish"),
    (6, 160, 5, 1, True, "hard_swish"),
)
LAST_POINT_CHANNELS = {"small": 1024, "large": 1280}


def make_divisible(value, divisor=8, min_value=None):
    """Rounds a channel count to a multiple of `divisor` (MobileNet rule).

    Example:
    >>> make_divisible(72 / 16 * 16), make_divisible(96 * 0.25)
    (72, 24)
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # never round down by more than 10%
        new_value += divisor
    return new_value


# === Blocks ===


def _batch_norm(data_format, name):
    return layers.BatchNormalization(
        axis=_utils.channel_axis(data_format),
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        name=name,
    )


def _se_kwargs(channels):
    return dict(
        squeeze_channels=make_divisible(channels * SE_RATIO),
        use_bias=True,
        hidden_activation="relu",
        gate_activation=GATE,
    )


def inverted_res_block(
    x,
    expansion,
    filters,
    kernel_size,
    stride,
    use_se,
    activation,
    attention,
    reduction,
    data_format,
    name,
):
    """expand 1x1 (unless expansion is 1) -> depthwise -> attention -> project.

    See the module docstring for where each attention kind sits.
    """
    shortcut = x
    in_channels = x.shape[_utils.channel_axis(data_format)]
    channels = make_divisible(in_channels * expansion)
    features = []
    if expansion != 1:
        x = layers.Conv2D(
            channels,
            1,
            padding="same",
            use_bias=False,
            data_format=data_format,
            name=f"{name}_expand",
        )(x)
        x = _batch_norm(data_format, f"{name}_expand_bn")(x)
        x = layers.Activation(activation, name=f"{name}_expand_activation")(x)
        features.append(x)
    x = layers.DepthwiseConv2D(
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=f"{name}_depthwise",
    )(x)
    x = _batch_norm(data_format, f"{name}_depthwise_bn")(x)
    features.append(x)

    attend = functools.partial(apply_attention, name=name, data_format=data_format)
    if not use_se or attention is None:
        x = layers.Activation(activation, name=f"{name}_depthwise_activation")(x)
    elif attention == "se":  # keras.applications: activation, then SE
        x = layers.Activation(activation, name=f"{name}_depthwise_activation")(x)
        x = attend([x], "se", **_se_kwargs(channels))
    else:  # the authors' BA block: attention on the BN output, then activation
        if len(features) > 1:
            x = attend(
                features,
                attention,
                reduction=reduction,
                hidden_activation="relu",
                gate_activation=GATE,
            )
        else:
            x = attend(features, "se", **_se_kwargs(channels))
        x = layers.Activation(activation, name=f"{name}_depthwise_activation")(x)

    x = layers.Conv2D(
        filters,
        1,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=f"{name}_project",
    )(x)
    x = _batch_norm(data_format, f"{name}_project_bn")(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{name}_add")([shortcut, x])
    return x


# === Argument checks ===


def _check_stack(stack):
    if isinstance(stack, str):
        _common.check_choice(stack, "stack", ("small", "large"))
        return list(SMALL_STACK if stack == "small" else LARGE_STACK)
    expected = (
        "`'small'`, `'large'` or a non-empty list of (expansion, filters, "
        "kernel_size, stride, squeeze_excite, activation) tuples with "
        f"stride 1 or 2 and activation in {ACTIVATIONS}"
    )
    ok = isinstance(stack, (list, tuple)) and len(stack) > 0
    for spec in stack if ok else ():
        ok = ok and isinstance(spec, (list, tuple)) and len(spec) == 6
        if not ok:
            break
        expansion, filters, kernel_size, stride, use_se, activation = spec
        ok = (
            isinstance(expansion, (int, float))
            and not isinstance(expansion, bool)
            and expansion > 0
            and isinstance(filters, int)
            and filters > 0
            and isinstance(kernel_size, int)
            and kernel_size > 0
            and stride in (1, 2)
            and isinstance(use_se, bool)
            and activation in ACTIVATIONS
        )
    if not ok:
        raise ValueError(
            f"Received an invalid value for `stack`, expected {expected}. Received: stack={stack!r}"
        )
    return [tuple(spec) for spec in stack]


# === Builder ===


def BAMobileNetV3(
    stack,
    last_point_channels=1024,
    alpha=1.0,
    dropout_rate=0.2,
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
    name="ba_mobilenet_v3",
):
    """Builds a MobileNetV3 with Bridge Attention (or SE, or none).

    Args:
        stack: `"small"`, `"large"`, or a list of per-block tuples
            `(expansion, filters, kernel_size, stride, squeeze_excite,
            activation)` (see `SMALL_STACK`), `activation` being `"relu"` or
            `"hard_swish"`. Blocks with `squeeze_excite=True` get the
            attention.
        last_point_channels: width of the hidden layer of the classifier head
            (`conv_2`): 1024 for Small, 1280 for Large.
        alpha: width multiplier of the blocks (`keras.applications`' alpha).
        dropout_rate: dropout before the classifier (`top_dropout`).
        include_top: whether to end with the classifier head (`head_pool`,
            `conv_2`, `top_dropout`, `predictions`).
        weights: None (random) or the path to a `.keras` / `.weights.h5`
            file saved from a model of the same architecture.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(H, W, 3)` (channels_last) with sides of at
            least 32; default `(None, None, 3)`.
        pooling: `None`, `"avg"` or `"max"`; used when `include_top=False`.
        classes: number of classes of the classifier.
        classifier_activation: activation of `predictions` (`"softmax"`, or
            None for logits).
        attention: `"bav1"`, `"bav2"`, `"se"` (standard MobileNetV3) or None.
        reduction: Bridge Attention reduction ratio (6 in the authors' code).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        name: model name.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`; it
        takes `preprocess_input` output (ImageNet mean/std), not raw pixels.

    Reference:
        Howard et al., "Searching for MobileNetV3", ICCV 2019; Zhao et al.,
        "BA-Net: Bridge Attention for Deep Convolutional Neural Networks",
        ECCV 2022.

    Example:
    >>> stack = [(1, 16, 3, 2, True, "relu"), (4, 24, 3, 2, True, "hard_swish")]
    >>> model = BAMobileNetV3(stack, 128, classes=10, input_shape=(32, 32, 3))
    >>> model.output_shape
    (None, 10)
    """
    _common.check_application_args(include_top, weights, pooling, classes, attention)
    blocks = _check_stack(stack)
    _utils.check_positive_int(last_point_channels, "last_point_channels")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(
            "Received an invalid value for `alpha`, expected a positive "
            f"number. Received: alpha={alpha!r}"
        )
    if (
        isinstance(dropout_rate, bool)
        or not isinstance(dropout_rate, (int, float))
        or not (0 <= dropout_rate < 1)
    ):
        raise ValueError(
            "Received an invalid value for `dropout_rate`, expected a number "
            f"in [0, 1). Received: dropout_rate={dropout_rate!r}"
        )
    _utils.check_positive_int(reduction, "reduction")
    data_format = _utils.standardize_data_format(data_format)
    axis = _utils.channel_axis(data_format)

    # === Functional Model ===
    images, inputs = _common.image_input(
        input_tensor, input_shape, data_format, MIN_SIZE, "mobilenet_v3"
    )
    x = layers.Conv2D(
        16,
        3,
        strides=2,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name="conv",
    )(images)
    x = _batch_norm(data_format, "conv_bn")(x)
    x = layers.Activation("hard_swish", name="conv_activation")(x)
    for block_id, (expansion, filters, kernel_size, stride, use_se, act) in enumerate(blocks):
        x = inverted_res_block(
            x,
            expansion,
            make_divisible(filters * alpha),
            kernel_size,
            stride,
            use_se,
            act,
            attention,
            reduction,
            data_format,
            name=f"expanded_conv_{block_id}" if block_id else "expanded_conv",
        )

    x = layers.Conv2D(
        make_divisible(x.shape[axis] * 6),
        1,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name="conv_1",
    )(x)
    x = _batch_norm(data_format, "conv_1_bn")(x)
    x = layers.Activation("hard_swish", name="conv_1_activation")(x)
    if include_top:
        head_channels = last_point_channels
        if alpha > 1.0:
            head_channels = make_divisible(last_point_channels * alpha)
        x = layers.GlobalAveragePooling2D(keepdims=True, data_format=data_format, name="head_pool")(
            x
        )
        x = layers.Conv2D(head_channels, 1, data_format=data_format, name="conv_2")(x)
        x = layers.Activation("hard_swish", name="conv_2_activation")(x)
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
        BAMobileNetV3,
        blocks,
        last_point_channels,
        alpha=alpha,
        dropout_rate=dropout_rate,
        attention=attention,
        reduction=reduction,
        data_format=data_format,
    )
    return _common.load_weights(model, weights, rebuild)


# === Named variants ===

_VARIANT_DOC = """Instantiates BA-MobileNetV3-{kind} (`attention="bav1"` by default).

    MobileNetV3-{kind} as in `keras.applications` (`minimalistic=False`)
    with Bridge Attention in the blocks that have squeeze-and-excitation;
    `attention="se"` is the standard MobileNetV3-{kind}, None removes the
    attention. Takes `preprocess_input` output (ImageNet mean/std), not raw
    pixels: there is no `Rescaling` layer inside.

    Args:
        alpha: width multiplier of the blocks.
        dropout_rate: dropout before the classifier.
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, attention, reduction, data_format, name:
            as in `BAMobileNetV3`.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> model = BAMobileNetV3{kind}(classes=10, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 10)
    """


def _make_variant(kind):
    key = kind.lower()

    def builder(
        alpha=1.0,
        dropout_rate=0.2,
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
        name=f"ba_mobilenet_v3_{key}",
    ):
        return BAMobileNetV3(
            key,
            LAST_POINT_CHANNELS[key],
            alpha=alpha,
            dropout_rate=dropout_rate,
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

    builder.__name__ = builder.__qualname__ = f"BAMobileNetV3{kind}"
    builder.__doc__ = _VARIANT_DOC.format(kind=kind)
    return builder


BAMobileNetV3Small = _make_variant("Small")
BAMobileNetV3Large = _make_variant("Large")
