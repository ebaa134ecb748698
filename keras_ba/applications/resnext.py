"""BA-ResNeXt: ResNeXt-50 (32x4d) and ResNeXt-101 (32x4d, 32x8d) with Bridge Attention.

ResNeXt is the ResNet bottleneck with a grouped 3x3 conv (`groups`
cardinality, `width_per_group` channels per group), so these are
`keras_ba.applications.resnet.BAResNet` (and `BAResNetBackbone`) with
`groups` and `width_per_group` set: same layer names, same Bridge Attention
placement (all three conv outputs of a bottleneck bridged, the last one
recalibrated before the shortcut is added), same PyTorch conventions
(torchvision's `resnext50_32x4d` / `resnext101_32x8d` trunk, v1.5 strides,
symmetric padding, BatchNorm epsilon 1e-5; `trunk_style="pytorch"`, the only
trunk, see docs/trunks.md). The authors' `ba_resnext50` / `ba_resnext101`
(`BA_resnext.py`) are the 32x4d models; their head pools with
`AvgPool2d(7)`, which equals the global average pool at 224 x 224 only.

Input convention: `preprocess_input` (RGB in [0, 255] -> ImageNet
mean/std), as for BA-ResNet.

Example:
>>> RESNEXT_CONFIGS["50_32x4d"]
([3, 4, 6, 3], 32, 4)
"""

from keras_ba.applications.resnet import BAResNet, preprocess_input

__all__ = ["BAResNeXt50_32x4d", "BAResNeXt101_32x4d", "BAResNeXt101_32x8d", "preprocess_input"]

# name -> (blocks per stage, groups, width per group)
RESNEXT_CONFIGS = {
    "50_32x4d": ([3, 4, 6, 3], 32, 4),
    "101_32x4d": ([3, 4, 23, 3], 32, 4),  # the authors' ba_resnext101
    "101_32x8d": ([3, 4, 23, 3], 32, 8),
}

VARIANT_DOCSTRING = """Instantiates BA-ResNeXt-{depth} ({groups}x{width}d, `attention="bav1"` by default).

    torchvision's ResNeXt-{depth} {groups}x{width}d (bottleneck blocks
    {blocks}, grouped 3x3 convs with {groups} groups of {width} channels
    per group at the first stage) with Bridge Attention in every block;
    `attention="bav2"`, `"se"` or None give the other variants. Takes
    `preprocess_input` output (ImageNet mean/std).

    Args:
        include_top, weights, input_tensor, input_shape, pooling, classes,
        classifier_activation, attention, reduction, data_format, name,
        trunk_style: as in `keras_ba.applications.resnet.BAResNet`.

    Returns:
        A functional `keras.Model`.

    Reference:
        Xie et al., "Aggregated Residual Transformations for Deep Neural
        Networks", CVPR 2017; Zhao et al., "BA-Net: Bridge Attention for
        Deep Convolutional Neural Networks", ECCV 2022.

    Example:
    >>> BAResNeXt{depth}_{groups}x{width}d(classes=10).output_shape  # doctest: +SKIP
    (None, 10)
    """


def _resnext_variant(key, *args):
    blocks_per_stage, groups, width_per_group = RESNEXT_CONFIGS[key]
    return BAResNet(
        blocks_per_stage,
        (64, 128, 256, 512),
        "bottleneck",
        64,
        "imagenet",
        None,
        groups,
        width_per_group,
        *args,
    )


def BAResNeXt50_32x4d(
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
    name="ba_resnext50_32x4d",
    trunk_style="pytorch",
):
    return _resnext_variant(
        "50_32x4d",
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


def BAResNeXt101_32x4d(
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
    name="ba_resnext101_32x4d",
    trunk_style="pytorch",
):
    return _resnext_variant(
        "101_32x4d",
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


def BAResNeXt101_32x8d(
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
    name="ba_resnext101_32x8d",
    trunk_style="pytorch",
):
    return _resnext_variant(
        "101_32x8d",
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


for _key, _function in (
    ("50_32x4d", BAResNeXt50_32x4d),
    ("101_32x4d", BAResNeXt101_32x4d),
    ("101_32x8d", BAResNeXt101_32x8d),
):
    _blocks, _groups, _width = RESNEXT_CONFIGS[_key]
    _function.__doc__ = VARIANT_DOCSTRING.format(
        depth=_key.split("_")[0], groups=_groups, width=_width, blocks=_blocks
    )
