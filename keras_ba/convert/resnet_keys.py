"""Key map of the authors' (torchvision-style) ResNet layout.

| Keras layer                         | PyTorch module                     |
|-------------------------------------|------------------------------------|
| `conv1_conv`, `conv1_bn`            | `conv1`, `bn1`                     |
| `conv{s}_block{i}_{k}_conv` / `_bn` | `layer{s-1}.{i-1}.conv{k}` / `bn{k}` |
| `conv{s}_block{i}_0_conv` / `_bn`   | `layer{s-1}.{i-1}.downsample.0` / `.1` |
| `conv{s}_block{i}_ba`               | `layer{s-1}.{i-1}.ba.*`            |
| `conv{s}_block{i}_se`               | `layer{s-1}.{i-1}.se.fc.{0,2}`     |
| `predictions`                       | `fc`                               |

It covers any `BAResNet(...)` configuration (depths, widths, stem, basic or
bottleneck blocks, grouped convs, `attention=None` for a plain torchvision
ResNet).
"""

import re

from keras_ba.convert import common_keys

FAMILY = "resnet"
HEAD_PREFIX = "fc."
_TOP = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
_CONV_BN = re.compile(r"^conv(\d+)_block(\d+)_(\d+)_(conv|bn)$")
_ATTENTION = re.compile(r"^conv(\d+)_block(\d+)_(ba|se)$")


def resnet_key_map(model):
    """Maps every weight of a keras_ba ResNet to its PyTorch state-dict key.

    Args:
        model: a model built by `keras_ba.applications.BAResNet` (or a named
            variant), with its layer names unchanged.

    Returns:
        An ordered dict `{torch_key: Target(variable, transform)}`.

    Raises:
        ValueError: if a layer with weights has no PyTorch counterpart.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                  stem_filters=16, classes=10, input_shape=(32, 32, 3))
    >>> list(resnet_key_map(model))[0]
    'conv1.weight'
    """
    keys, unmapped = {}, []
    for layer in model.layers:
        if not layer.weights:
            continue
        layer_keys = _layer_keys(layer)
        if layer_keys is None:
            unmapped.append(layer.name)
        else:
            keys.update(layer_keys)
    if unmapped:
        raise common_keys.unmapped_layers_error(unmapped, FAMILY)
    return keys


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
        stage, index, kind = match.groups()
        prefix = _block_prefix(stage, index)
        if kind == "ba":
            return common_keys.bridge_attention_keys(layer, f"{prefix}.ba")
        return common_keys.squeeze_excite_keys(layer, f"{prefix}.se.fc")
    return None
