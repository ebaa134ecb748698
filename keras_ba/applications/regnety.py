"""BA-RegNetY-400MF ... 4.0GF: timm's `regnety_004` ... `regnety_040` with Bridge Attention.

Each is `keras_ba.applications.regnet.BARegNetY` with the stage widths,
depths and group widths that `regnet_design` derives from timm's
configuration (`REGNETY_CONFIGS`: w0, wa, wm, depth, group size).
`attention="se"` gives timm's RegNet-Y exactly (its ImageNet checkpoints
load with `keras_ba.convert.load_torch_weights`), `"bav2"` (default) and
`"bav1"` Bridge Attention in place of the SE, None the bare trunk.

Input convention: `preprocess_input` (RGB in [0, 255] -> ImageNet mean/std),
224 x 224 (timm trains at 224; its own weights are evaluated at 288).

Example:
>>> regnety_trunk("040")
([2, 6, 12, 2], [128, 192, 512, 1088], [64, 64, 64, 64])
"""

from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.applications.regnet import BARegNetY, regnety_trunk
from keras_ba.applications.regnet_design import REGNETY_CONFIGS

__all__ = [
    "BARegNetY004",
    "BARegNetY008",
    "BARegNetY016",
    "BARegNetY032",
    "BARegNetY040",
    "preprocess_input",
]

# === Named variants ===

# Examples skipped in the test suite: the tests build every variant shapes-only.
VARIANT_DOCSTRING = """Instantiates BA-RegNetY-{flops} (`attention="bav2"` by default).

    timm's `regnety_{key}` trunk (w0 {w0}, wa {wa}, wm {wm}, depth {depth},
    group width {group_size}: stage widths {widths}, depths {depths}) with
    Bridge Attention in every block; `attention="se"` is timm's RegNet-Y
    itself, None the trunk without attention. Takes `preprocess_input`
    output (ImageNet mean/std); 224 x 224 by default.

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, attention, reduction, data_format, name,
        trunk_style: as in `BARegNetY`.

    Returns:
        A functional `keras.Model`.

    Example:
    >>> BARegNetY{key}(classes=10).output_shape  # doctest: +SKIP
    (None, 10)
    """


def BARegNetY004(
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
    name="ba_regnety_004",
    trunk_style="pytorch",
):
    return BARegNetY(
        *regnety_trunk("004"),
        32,
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
        trunk_style,
    )


def BARegNetY008(
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
    name="ba_regnety_008",
    trunk_style="pytorch",
):
    return BARegNetY(
        *regnety_trunk("008"),
        32,
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
        trunk_style,
    )


def BARegNetY016(
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
    name="ba_regnety_016",
    trunk_style="pytorch",
):
    return BARegNetY(
        *regnety_trunk("016"),
        32,
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
        trunk_style,
    )


def BARegNetY032(
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
    name="ba_regnety_032",
    trunk_style="pytorch",
):
    return BARegNetY(
        *regnety_trunk("032"),
        32,
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
        trunk_style,
    )


def BARegNetY040(
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
    name="ba_regnety_040",
    trunk_style="pytorch",
):
    return BARegNetY(
        *regnety_trunk("040"),
        32,
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
        trunk_style,
    )


VARIANTS = {
    "004": BARegNetY004,
    "008": BARegNetY008,
    "016": BARegNetY016,
    "032": BARegNetY032,
    "040": BARegNetY040,
}
FLOPS_NAMES = {"004": "400MF", "008": "800MF", "016": "1.6GF", "032": "3.2GF", "040": "4.0GF"}
for _key, _function in VARIANTS.items():
    _depths, _widths, _ = regnety_trunk(_key)
    _function.__doc__ = VARIANT_DOCSTRING.format(
        key=_key, flops=FLOPS_NAMES[_key], widths=_widths, depths=_depths, **REGNETY_CONFIGS[_key]
    )
