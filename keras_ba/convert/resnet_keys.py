"""Key map of the authors' (torchvision-style) ResNet and ResNeXt layout.

| Keras layer                         | PyTorch module                     |
|-------------------------------------|------------------------------------|
| `conv1_conv`, `conv1_bn`            | `conv1`, `bn1`                     |
| `conv{s}_block{i}_{k}_conv` / `_bn` | `layer{s-1}.{i-1}.conv{k}` / `bn{k}` |
| `conv{s}_block{i}_0_conv` / `_bn`   | `layer{s-1}.{i-1}.downsample.0` / `.1` |
| `conv{s}_block{i}_ba`               | `layer{s-1}.{i-1}.ba.*`            |
| `conv{s}_block{i}_se`               | `layer{s-1}.{i-1}.se.fc.{0,2}`     |
| `predictions`                       | `fc`                               |

It covers any `BAResNet(...)` configuration (depths, widths, stem, basic or
bottleneck blocks, grouped convs: the authors' BA-ResNeXt and torchvision's
ResNeXt, `attention=None` for a plain torchvision or timm ResNet).

The authors' `BA_resnext.py` also creates gate layers (`gate{1..4}.0`,
shared by every block of a stage as `layer{s}.{i}.Gate.0`) that its forward
pass never calls; their keys are in every BA-ResNeXt checkpoint, so they are
recognised by name (`IGNORED`) and skipped, and the report says so.
"""

import re

from keras_ba.convert import common_keys

FAMILY = "resnet"
HEAD_PREFIX = "fc."
CLASSIFIER = "fc"  # the Linear that becomes `predictions`
MARKER = "conv1_conv"
# `{trunk_style: (padding of strided convs, BatchNorm epsilon)}` (see
# `keras_ba.convert.trunk_check`): the authors' and torchvision's conventions; BA-ResNet
# has no other trunk.
TRUNK_STYLES = {"pytorch": ("symmetric", 1e-5)}
IGNORED = (
    (
        re.compile(r"^(gate\d+|layer\d+\.\d+\.Gate)\.0\.weight$"),
        "gate layers of the authors' BA_resnext.py that its forward pass never uses",
    ),
)
_TOP = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
_CONV_BN = re.compile(r"^conv(\d+)_block(\d+)_(\d+)_(conv|bn)$")
_ATTENTION = re.compile(r"^conv(\d+)_block(\d+)_(ba|se)$")


def resnet_key_map(model):
    """Maps every weight of a keras_ba ResNet to its PyTorch state-dict key.

    Args:
        model: a model built by `keras_ba.applications.BAResNet` (or a named
            variant, ResNeXt included), with its layer names unchanged.

    Returns:
        An ordered dict `{torch_key: Target(variable, transform, role)}`.

    Raises:
        ValueError: if a layer with weights has no PyTorch counterpart.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                  stem_filters=16, classes=10, input_shape=(32, 32, 3))
    >>> list(resnet_key_map(model))[0]
    'conv1.weight'
    """
    return common_keys.collect_keys(model, layer_keys_fn(model), FAMILY)[0]


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    Example:
    >>> import keras
    >>> layer = keras.layers.Dense(3, name="mystery")
    >>> layer.build((None, 2))
    >>> layer_keys_fn(None)(layer) is None
    True
    """
    del model  # ResNet keys depend on the layer name only
    return _layer_keys


def _block_prefix(stage, index):
    return f"layer{int(stage) - 1}.{int(index) - 1}"


def _layer_keys(layer):
    if layer.name in _TOP:
        return common_keys.module_keys(layer, _TOP[layer.name])
    match = _CONV_BN.match(layer.name)
    if match:
        stage, index, position, kind = match.groups()
        prefix = _block_prefix(stage, index)
        if position == "0":
            module = "downsample.0" if kind == "conv" else "downsample.1"
        else:
            module = f"{kind}{position}"
        return common_keys.module_keys(layer, f"{prefix}.{module}")
    match = _ATTENTION.match(layer.name)
    if match:
        stage, index, _ = match.groups()
        prefix = _block_prefix(stage, index)
        return common_keys.attention_keys(layer, f"{prefix}.ba", se_prefix=f"{prefix}.se.fc")
    return None
