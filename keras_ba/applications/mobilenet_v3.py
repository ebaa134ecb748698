"""BA-MobileNetV3: MobileNetV3-Small and -Large with Bridge Attention.

Data flow: image -> stem conv -> inverted residual blocks -> `conv_1` (the
backbone, `BAMobileNetV3Backbone`) -> head (`conv_2`, `predictions`). The
model takes `preprocess_input` output (an alias of
`keras_ba.applications.resnet.preprocess_input`: RGB in [0, 255] -> ImageNet
mean/std, as in the authors' training); there is no `Rescaling` layer.

Two trunks (`trunk_style`, see docs/trunks.md), with the same layer names
and weight shapes for the standard stacks:

- `"keras"` (default): MobileNetV3 as `keras.applications` builds it (alpha,
  hard-swish, `minimalistic=False`, BatchNorm epsilon 1e-3 and momentum
  0.999, TensorFlow-style `"same"` padding: at stride 2 the extra row and
  column go bottom/right).
- `"pytorch"`: the authors' `BA_mobilenetv3.py`, which computes another
  function: stride-2 convs padded symmetrically (`{conv}_pad`
  `ZeroPadding2D` + `"valid"`), PyTorch's BatchNorm epsilon 1e-5 and
  momentum 0.1 (Keras 0.9), a stem of `make_divisible(16 * alpha)` filters
  (16 for alpha >= 0.75), an expansion conv only where the expanded width
  differs from the input width, and `conv_1` as wide as the last block's
  expansion. Load the authors' checkpoints into this trunk.

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

from keras_ba import _validation
from keras_ba.applications import blocks, classifier, registry
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.blocks import make_divisible
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.layers.registry import apply_attention
from keras_ba.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "BAMobileNetV3",
    "BAMobileNetV3Backbone",
    "BAMobileNetV3Large",
    "BAMobileNetV3Small",
    "make_divisible",
    "preprocess_input",
]

MIN_SIZE = 32
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.999
# BatchNorm arguments of each `trunk_style` (PyTorch's momentum 0.1 = Keras 0.9).
TRUNK_NORMS = {
    "keras": dict(epsilon=BN_EPSILON, momentum=BN_MOMENTUM),
    "pytorch": dict(epsilon=1e-5, momentum=0.9),
}
SE_RATIO = 0.25
ACTIVATIONS = ("relu", "hard_swish")
GATE = "hard_sigmoid"
# Layer names (keras.applications'), `{}` = block or conv name.
CONV_NAMES = {"pad": "{}_pad", "conv": "{}", "bn": "{}_bn", "act": "{}_activation"}
BLOCK_NAMES = {
    "expand": {"conv": "{}_expand", "bn": "{}_expand_bn", "act": "{}_expand_activation"},
    "depthwise": {
        "pad": "{}_depthwise_pad",
        "conv": "{}_depthwise",
        "bn": "{}_depthwise_bn",
        "act": "{}_depthwise_activation",
    },
    "project": {"conv": "{}_project", "bn": "{}_project_bn"},
    "drop": "{}_drop",
    "add": "{}_add",
}

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
# stack -> channels of the last pointwise conv, read from the table of named models.
LAST_POINT_CHANNELS = {
    entry.arguments["stack"]: entry.arguments["last_point_channels"]
    for entry in registry.MODELS.values()
    if entry.family == "mobilenet_v3"
}


# === Attention in a block ===


def squeeze_excite(features, name, channels, data_format, dtype):
    """`keras.applications`' MobileNetV3 SE on the last feature.

    Biases, bottleneck `make_divisible(C / 4)`, ReLU, hard-sigmoid gate.

    Example:
    >>> y = squeeze_excite([keras.Input((4, 4, 72))], "expanded_conv_2_se", 72,
    ...                    "channels_last", None)
    >>> y._keras_history.operation.squeeze_channels
    24
    """
    return SqueezeExcite(
        squeeze_channels=make_divisible(channels * SE_RATIO),
        use_bias=True,
        hidden_activation="relu",
        gate_activation=GATE,
        data_format=data_format,
        dtype=dtype,
        name=name,
    )(features[-1:])


def first_block_attention(features, name, channels, data_format, dtype):
    """The authors keep SE in a block without expansion conv (one feature).

    Example:
    >>> y = first_block_attention([keras.Input((8, 8, 16))], "expanded_conv", 16,
    ...                           "channels_last", None)
    >>> y._keras_history.operation.name
    'expanded_conv_se'
    """
    return squeeze_excite(features, f"{name}_se", channels, data_format, dtype)


def _block_attend(attention, channels, reduction, data_format, dtype):
    """`attend(features, name=...)` of one block (see `apply_attention`)."""
    layout = dict(channels=channels, data_format=data_format, dtype=dtype)
    return functools.partial(
        apply_attention,
        attention=attention,
        overrides={"se": functools.partial(squeeze_excite, **layout)},
        fallback=functools.partial(first_block_attention, **layout),
        reduction=reduction,
        hidden_activation="relu",
        gate_activation=GATE,
        data_format=data_format,
        dtype=dtype,
    )


def pytorch_conv_bn(x, *args, strides=1, **kwargs):
    """`blocks.conv_bn_act` padding as PyTorch: symmetric at stride 2.

    At stride 1 an odd kernel's `"same"` padding is already symmetric, so
    only strided convs get a `ZeroPadding2D`.

    Example:
    >>> y = pytorch_conv_bn(keras.Input((8, 8, 3)), 16, 3, strides=2, epsilon=1e-5,
    ...                     momentum=0.9, data_format="channels_last", name="conv",
    ...                     names=CONV_NAMES)
    >>> y._keras_history.operation.name, tuple(y.shape)
    ('conv_bn', (None, 4, 4, 16))
    """
    padding = "symmetric" if strides > 1 else "same"
    return blocks.conv_bn_act(x, *args, strides=strides, padding=padding, **kwargs)


# === Argument checks ===


def _check_stack(stack):
    if isinstance(stack, str):
        _validation.check_choice(stack, "stack", ("small", "large"))
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


# === Backbone ===


@keras.saving.register_keras_serializable(package="keras_ba")
class BAMobileNetV3Backbone(Backbone):
    """MobileNetV3 trunk (stem, inverted residual blocks, `conv_1`) with attention.

    See the module docstring for where each attention kind sits.
    `pyramid_outputs` holds the last block output at each total stride,
    `"P1"` ... `"P5"`; `conv_1` is the backbone's output.

    Args:
        stack: `"small"`, `"large"`, or a list of per-block tuples
            `(expansion, filters, kernel_size, stride, squeeze_excite,
            activation)` (see `SMALL_STACK`), `activation` being `"relu"` or
            `"hard_swish"`. Blocks with `squeeze_excite=True` get the
            attention.
        alpha: width multiplier of the blocks (`keras.applications`' alpha).
        attention: a name from `keras_ba.layers.attention_names()`
            (`"se"` is the standard MobileNetV3 SE), a `keras.layers.Layer`
            subclass, a callable `(features, name, **kwargs) -> tensor`, or
            None.
        reduction: attention reduction ratio (6 in the authors' code).
        image_shape: `(H, W, 3)` (channels_last) or `(3, H, W)` with sides
            of at least 32; default `(None, None, 3)`.
        trunk_style: `"keras"` (default: `keras.applications`' trunk) or
            `"pytorch"` (the authors' trunk: symmetric padding, BatchNorm
            epsilon 1e-5; build this one for their checkpoints). See the
            module docstring and docs/trunks.md.
        input_tensor: optional Keras tensor to build on (not part of the
            config).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        dtype: dtype policy of every layer (None: the global policy).
        **kwargs: `name`, `trainable`.

    Reference:
        Howard et al., "Searching for MobileNetV3", ICCV 2019; Zhao et al.,
        "BA-Net: Bridge Attention for Deep Convolutional Neural Networks",
        ECCV 2022.

    Example:
    >>> stack = [(1, 16, 3, 2, True, "relu"), (4, 24, 3, 2, True, "hard_swish")]
    >>> backbone = BAMobileNetV3Backbone(stack, image_shape=(32, 32, 3))
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P1': (None, 16, 16, 16), 'P2': (None, 8, 8, 16), 'P3': (None, 4, 4, 24)}
    """

    def __init__(
        self,
        stack,
        alpha=1.0,
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
        specs = _check_stack(stack)
        _validation.check_positive_number(alpha, "alpha")
        blocks.check_trunk_style(trunk_style, "BA-MobileNetV3")
        pytorch = trunk_style == "pytorch"
        begin = start(
            attention, reduction, image_shape, input_tensor, data_format, MIN_SIZE, "mobilenet_v3"
        )
        data_format = begin.data_format

        # === Functional Model ===
        conv_bn = functools.partial(
            pytorch_conv_bn if pytorch else blocks.conv_bn_act,
            **TRUNK_NORMS[trunk_style],
            data_format=data_format,
            dtype=dtype,
            names=CONV_NAMES,
        )
        stem = make_divisible(16 * alpha) if pytorch else 16
        x = conv_bn(begin.images, stem, 3, strides=2, activation="hard_swish", name="conv")
        pyramid_outputs = {"P1": x}
        total_stride = 2
        axis = _validation.channel_axis(data_format)
        for block_id, (expansion, filters, kernel_size, stride, use_se, act) in enumerate(specs):
            in_channels = x.shape[axis]
            channels = make_divisible(in_channels * expansion)
            filters = make_divisible(filters * alpha)
            # The authors expand when the width changes, keras when expansion != 1.
            expands = channels != in_channels if pytorch else expansion != 1
            x = blocks.inverted_residual(
                x,
                filters,
                kernel_size,
                stride,
                expanded_channels=channels if expands else None,
                activation=act,
                attend=_block_attend(
                    attention if use_se else None, channels, reduction, data_format, dtype
                ),
                # keras.applications' block: activation, then SE; the
                # authors' BA block (any other attention): attention on
                # the depthwise BatchNorm output, then the activation.
                attention_after_activation=attention == "se",
                residual=stride == 1 and in_channels == filters,
                conv_bn=conv_bn,
                names=BLOCK_NAMES,
                dtype=dtype,
                name=f"expanded_conv_{block_id}" if block_id else "expanded_conv",
            )
            total_stride *= stride
            pyramid_outputs[blocks.pyramid_level(total_stride)] = x
        # The authors' `conv_1` is as wide as the last expansion, keras' 6x.
        last = channels if pytorch else make_divisible(x.shape[axis] * 6)
        x = conv_bn(x, last, 1, activation="hard_swish", name="conv_1")
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.stack = stack if isinstance(stack, str) else [list(spec) for spec in specs]
        self.alpha = alpha
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "stack": self.stack,
                "alpha": self.alpha,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


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
    trunk_style="keras",
):
    """Builds a MobileNetV3 classifier with Bridge Attention (or SE, or none).

    `BAMobileNetV3Backbone` plus the `keras.applications` head (`head_pool`,
    `conv_2`, `avg_pool`, `top_dropout`, `predictions`), in one flat model.

    Args:
        stack, alpha, attention, reduction, data_format, trunk_style: as
            in `BAMobileNetV3Backbone` (`trunk_style="pytorch"` for the
            authors' checkpoints).
        last_point_channels: width of the hidden layer of the classifier head
            (`conv_2`): 1024 for Small, 1280 for Large.
        dropout_rate: dropout before the classifier (`top_dropout`).
        include_top: whether to end with the classifier head.
        weights: None (random) or the path to a `.keras` / `.weights.h5`
            file saved from a model of the same architecture.
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
    >>> stack = [(1, 16, 3, 2, True, "relu"), (4, 24, 3, 2, True, "hard_swish")]
    >>> model = BAMobileNetV3(stack, 128, classes=10, input_shape=(32, 32, 3))
    >>> model.output_shape
    (None, 10)
    """
    _validation.check_positive_int(last_point_channels, "last_point_channels")
    dropout_rate = _validation.check_unit_interval(dropout_rate, "dropout_rate", closed_low=True)
    _validation.check_positive_number(alpha, "alpha")
    head_channels = last_point_channels
    if alpha > 1.0:
        head_channels = make_divisible(last_point_channels * alpha)

    def top(backbone, x):
        data_format, dtype = backbone.data_format, backbone.dtype_policy
        x = layers.GlobalAveragePooling2D(
            keepdims=True, data_format=data_format, dtype=dtype, name="head_pool"
        )(x)
        x = layers.Conv2D(head_channels, 1, data_format=data_format, dtype=dtype, name="conv_2")(x)
        return layers.Activation("hard_swish", dtype=dtype, name="conv_2_activation")(x)

    return classifier.build_application(
        BAMobileNetV3Backbone,
        dict(stack=stack, alpha=alpha, trunk_style=trunk_style),
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
        top=top,
    )


# === Named variants ===

DESCRIPTION = """MobileNetV3-{stack} as in `keras.applications` (`minimalistic=False`)
    with Bridge Attention in the blocks that have squeeze-and-excitation;
    `attention="se"` is the standard MobileNetV3, None removes the
    attention. Takes `preprocess_input` output (ImageNet mean/std), not raw
    pixels: there is no `Rescaling` layer inside."""

# One row each in `registry.MODELS`; the examples are skipped in the suite (a
# full-size model takes seconds to initialise); the tests build every variant
# shapes-only.


def _variant(name, **kwargs):
    return BAMobileNetV3(**registry.variant_arguments(name, kwargs))


def BAMobileNetV3Small(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_mobilenet_v3_small", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAMobileNetV3Large(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_mobilenet_v3_large", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in (
    (BAMobileNetV3Small, "BA-MobileNetV3-Small"),
    (BAMobileNetV3Large, "BA-MobileNetV3-Large"),
):
    registry.document_variant(_function, "BAMobileNetV3", _title, DESCRIPTION)
