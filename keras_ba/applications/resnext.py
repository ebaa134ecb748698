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
>>> BAResNeXt50_32x4d.__doc__.splitlines()[0]
'Instantiates BA-ResNeXt-50 32x4d (`attention="bav1"` by default).'
"""

from keras_ba.applications import registry
from keras_ba.applications.resnet import BAResNet, preprocess_input

__all__ = ["BAResNeXt50_32x4d", "BAResNeXt101_32x4d", "BAResNeXt101_32x8d", "preprocess_input"]

# name -> (blocks per stage, groups, width per group), read from the table of named models.
RESNEXT_CONFIGS = {
    entry.name[len("ba_resnext") :]: (
        entry.arguments["stackwise_num_blocks"],
        entry.arguments["groups"],
        entry.arguments["width_per_group"],
    )
    for entry in registry.MODELS.values()
    if entry.family == "resnext"
}

DESCRIPTION = """torchvision's ResNeXt {groups}x{width_per_group}d (bottleneck blocks
    {stackwise_num_blocks}, grouped 3x3 convs with {groups} groups of
    {width_per_group} channels per group at the first stage) with Bridge
    Attention in every block; `attention="bav2"`, `"se"` or None give the
    other variants. Takes `preprocess_input` output (ImageNet mean/std).

    Reference:
        Xie et al., "Aggregated Residual Transformations for Deep Neural
        Networks", CVPR 2017; Zhao et al., "BA-Net: Bridge Attention for
        Deep Convolutional Neural Networks", ECCV 2022."""


def _variant(name, **kwargs):
    return BAResNet(**registry.variant_arguments(name, kwargs))


def BAResNeXt50_32x4d(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnext50_32x4d", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNeXt101_32x4d(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnext101_32x4d", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAResNeXt101_32x8d(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_resnext101_32x8d", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in (
    (BAResNeXt50_32x4d, "BA-ResNeXt-50 32x4d"),
    (BAResNeXt101_32x4d, "BA-ResNeXt-101 32x4d"),
    (BAResNeXt101_32x8d, "BA-ResNeXt-101 32x8d"),
):
    registry.document_variant(_function, "BAResNet", _title, DESCRIPTION)
