"""Key map of the authors' BA-EfficientNet (lukemelas EfficientNet-PyTorch).

| Keras layer (keras.applications names) | PyTorch module                 |
|----------------------------------------|--------------------------------|
| `stem_conv`, `stem_bn`                 | `_conv_stem`, `_bn0`           |
| `block{s}{x}_expand_conv` / `_expand_bn` | `_blocks.{k}._expand_conv` / `._bn0` |
| `block{s}{x}_dwconv` / `_bn`           | `_blocks.{k}._depthwise_conv` / `._bn1` |
| `block{s}{x}_ba` (BridgeAttention v1)  | `_blocks.{k}.att.*` (BA module) |
| `block1a_se` (PixelGate, first block)  | `_blocks.0.att.0` / `.att.2` (1x1 convs, bias) |
| `block{s}{x}_se` (`attention="se"`)    | `_blocks.{k}.att.0` / `.att.2` |
| `block{s}{x}_project_conv` / `_bn`     | `_blocks.{k}._project_conv` / `._bn2` |
| `top_conv`, `top_bn`, `predictions`    | `_conv_head`, `_bn1`, `_fc`    |

`k` counts the blocks in build order, stage by stage (`block1a` is 0). The
authors' first block applies its 1x1 convs per pixel (`PixelGate`); they
are stored as Conv2d `[out, in, 1, 1]` and become the gate's Dense kernels.
"""

import functools
import re

from keras_ba.convert import common_keys, transforms

FAMILY = "efficientnet"
HEAD_PREFIX = "_fc."
CLASSIFIER = "_fc"  # the Linear that becomes `predictions`
MARKER = "stem_conv"
# `{trunk_style: (padding of strided convs, BatchNorm epsilon)}` (see
# `keras_ba.convert.trunk_check`): the authors' code (lukemelas' static "same"
# padding, epsilon 1e-3) is keras.applications' trunk, so both styles agree.
TRUNK_STYLES = {"keras": ("same", 1e-3), "pytorch": ("same", 1e-3)}
IGNORED = ()
_TOP = {
    "stem_conv": "_conv_stem",
    "stem_bn": "_bn0",
    "top_conv": "_conv_head",
    "top_bn": "_bn1",
    "predictions": "_fc",
}
_PARTS = {
    "expand_conv": "_expand_conv",
    "expand_bn": "_bn0",
    "dwconv": "_depthwise_conv",
    "bn": "_bn1",
    "project_conv": "_project_conv",
    "project_bn": "_bn2",
}
_BLOCK = re.compile(r"^block(\d+)([a-z]+)_([a-z_]+)$")


def efficientnet_key_map(model):
    """Maps every weight of a keras_ba EfficientNet to its PyTorch key.

    Args:
        model: a model built by `keras_ba.applications.BAEfficientNetB0`
            (or another width/depth), layer names unchanged.

    Returns:
        An ordered dict `{torch_key: Target(variable, transform, role)}`.

    Raises:
        ValueError: if a layer with weights has no PyTorch counterpart.

    Example:
    >>> from keras_ba.applications import BAEfficientNetB0  # doctest: +SKIP
    >>> keys = efficientnet_key_map(BAEfficientNetB0())  # doctest: +SKIP
    >>> tuple(keys["_blocks.1.att.cur_fusion.0.weight"].variable.shape)  # doctest: +SKIP
    (96, 16)
    """
    return common_keys.collect_keys(model, layer_keys_fn(model), FAMILY)[0]


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    The block index of a layer depends on the model's blocks: `block2a` is
    `_blocks.1` in B0.

    Example:
    >>> from keras_ba.applications import BAEfficientNetB0  # doctest: +SKIP
    >>> model = BAEfficientNetB0()  # doctest: +SKIP
    >>> list(layer_keys_fn(model)(model.get_layer("block2a_dwconv")))  # doctest: +SKIP
    ['_blocks.1._depthwise_conv.weight']
    """
    return functools.partial(_layer_keys, block_index=_block_indices(model))


def _block_indices(model):
    """`{"block2a": 1, ...}`: torch `_blocks` index of each Keras block."""
    blocks = set()
    for layer in common_keys.leaf_layers(model):
        match = _BLOCK.match(layer.name)
        if match and layer.weights:
            blocks.add((int(match.group(1)), len(match.group(2)), match.group(2)))
    return {f"block{s}{x}": k for k, (s, _, x) in enumerate(sorted(blocks))}


def _layer_keys(layer, block_index):
    if layer.name in _TOP:
        return common_keys.module_keys(layer, _TOP[layer.name])
    match = _BLOCK.match(layer.name)
    if not match:
        return None
    stage, letters, part = match.groups()
    prefix = f"_blocks.{block_index[f'block{stage}{letters}']}"
    if part in _PARTS:
        return common_keys.module_keys(layer, f"{prefix}.{_PARTS[part]}")
    if part in ("ba", "se"):
        return common_keys.attention_keys(
            layer, f"{prefix}.att", se_transform=transforms.POINTWISE_TO_DENSE
        )
    return None
