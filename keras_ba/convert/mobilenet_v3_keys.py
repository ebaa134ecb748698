"""Key map of the authors' BA-MobileNetV3 (`models/BA_mobilenetv3.py`).

| Keras layer (keras.applications names)    | PyTorch module                    |
|-------------------------------------------|-----------------------------------|
| `conv`, `conv_bn` (stem)                  | `features.0.0`, `features.0.1`    |
| `expanded_conv[_{i}]_expand` / `_expand_bn` | `features.{i+1}.conv0.0` / `.1` |
| `expanded_conv[_{i}]_depthwise` / `_bn`   | `features.{i+1}.conv1.0` / `.1`   |
| `expanded_conv[_{i}]_ba` (BridgeAttention) | `features.{i+1}.att.*` (BA module) |
| `expanded_conv[_{i}]_se` (SqueezeExcite)  | `features.{i+1}.att.fc.{0,2}` (Linear, bias) |
| `expanded_conv[_{i}]_project` / `_bn`     | `features.{i+1}.conv2.0` / `.1`   |
| `conv_1`, `conv_1_bn`                     | `conv.0`, `conv.1`                |
| `conv_2` (1x1 conv on the pooled vector)  | `classifier.0` (Linear)           |
| `predictions`                             | `classifier.3`                    |

Block `i` of Keras (`expanded_conv` is block 0) is `features.{i+1}` in
PyTorch. The layout is reproduced exactly (same keys, shapes and parameter
totals as the authors' Small and Large models) by both trunks, but only
`trunk_style="pytorch"` computes the authors' function: their trunk pads its
stride-2 convs symmetrically and uses PyTorch's BatchNorm epsilon (1e-5),
while the default trunk follows `keras.applications` (TensorFlow "same"
padding, epsilon 1e-3; full-size logits differ by up to 1.27). Loading into
the default trunk works and warns (docs/trunks.md).
"""

import re

from keras_ba.convert import common_keys, transforms

FAMILY = "mobilenet_v3"
HEAD_PREFIX = "classifier."
CLASSIFIER = "classifier.3"  # the Linear that becomes `predictions`
MARKER = "expanded_conv_depthwise"
# `{trunk_style: (padding of strided convs, BatchNorm epsilon)}` (see
# `keras_ba.convert.trunk_check`): only the "pytorch" trunk computes the authors' function.
TRUNK_STYLES = {"keras": ("same", 1e-3), "pytorch": ("symmetric", 1e-5)}
IGNORED = ()
_TOP = {
    "conv": "features.0.0",
    "conv_bn": "features.0.1",
    "conv_1": "conv.0",
    "conv_1_bn": "conv.1",
    "predictions": "classifier.3",
}
_PARTS = {
    "expand": "conv0.0",
    "expand_bn": "conv0.1",
    "depthwise": "conv1.0",
    "depthwise_bn": "conv1.1",
    "project": "conv2.0",
    "project_bn": "conv2.1",
}
_BLOCK = re.compile(
    r"^expanded_conv(?:_(\d+))?_(expand|expand_bn|depthwise|depthwise_bn|project|project_bn|ba|se)$"
)


def mobilenet_v3_key_map(model):
    """Maps every weight of a keras_ba MobileNetV3 to its PyTorch key.

    Args:
        model: a model built by `keras_ba.applications.BAMobileNetV3Small`,
            `BAMobileNetV3Large` or `BAMobileNetV3`, layer names unchanged.

    Returns:
        An ordered dict `{torch_key: Target(variable, transform, role)}`.

    Raises:
        ValueError: if a layer with weights has no PyTorch counterpart.

    Example:
    >>> from keras_ba.applications import BAMobileNetV3
    >>> stack = [(1, 16, 3, 2, True, "relu"), (4, 24, 3, 2, True, "hard_swish")]
    >>> model = BAMobileNetV3(stack, 128, classes=10, input_shape=(32, 32, 3))
    >>> keys = mobilenet_v3_key_map(model)
    >>> tuple(keys["features.2.att.cur_fusion.0.weight"].variable.shape)
    (64, 10)
    >>> tuple(keys["classifier.0.weight"].variable.shape)
    (1, 1, 144, 128)
    """
    return common_keys.collect_keys(model, layer_keys_fn(model), FAMILY)[0]


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    Example:
    >>> import keras
    >>> layer = keras.layers.BatchNormalization(name="expanded_conv_3_project_bn")
    >>> layer.build((None, 4, 4, 8))
    >>> list(layer_keys_fn(None)(layer))[0]
    'features.4.conv2.1.weight'
    """
    del model  # MobileNetV3 keys depend on the layer name only
    return _layer_keys


def _layer_keys(layer):
    if layer.name in _TOP:
        return common_keys.module_keys(layer, _TOP[layer.name])
    if layer.name == "conv_2":  # the head's Linear, applied to the pooled map
        return common_keys.kernel_keys(layer, "classifier.0", transforms.LINEAR_TO_POINTWISE)
    match = _BLOCK.match(layer.name)
    if not match:
        return None
    index, part = match.groups()
    prefix = f"features.{int(index or 0) + 1}"
    if part in _PARTS:
        return common_keys.module_keys(layer, f"{prefix}.{_PARTS[part]}")
    return common_keys.attention_keys(layer, f"{prefix}.att", se_prefix=f"{prefix}.att.fc")
