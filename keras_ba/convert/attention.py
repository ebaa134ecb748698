"""Everything the converter knows about attention, in one place.

- `attention_names()`: the names a model's `attention=` accepts, read from
  the `keras_ba.layers` registry (the CLI offers them, plus `none`).
- `detect_attention(keys)`: the attention layout of a checkpoint's keys.
- `is_attention_key(key)`: whether a checkpoint key belongs to an attention
  module (the authors' BA and SE modules, lukemelas' `_se_reduce` /
  `_se_expand`), so that the trunk mode can skip it.
"""

import re

from keras_ba import layers

# A key inside an attention module: `layer1.0.ba.*`, `layer1.0.se.*` (ResNets),
# `_blocks.3.att.*` (EfficientNet), `features.4.att.*` (MobileNetV3),
# `_blocks.3._se_reduce.*` (lukemelas EfficientNet-PyTorch SE).
_ATTENTION_KEY = re.compile(r"(^|\.)(ba|se|att|_se_reduce|_se_expand)\.")


def attention_names():
    """The registered attention names (`"bav1"`, `"bav2"`, `"se"`, ...).

    Example:
    >>> {"bav1", "bav2", "se"} <= set(attention_names())
    True
    """
    return layers.attention_names()


def is_attention_key(key):
    """Whether `key` is a weight of an attention module in the authors' layouts.

    Example:
    >>> is_attention_key("layer1.0.ba.generation.1.weight"), is_attention_key("layer1.0.bn1.weight")
    (True, False)
    """
    return _ATTENTION_KEY.search(key) is not None


def detect_attention(keys):
    """Attention layout of a state dict's keys: `"bav1"`, `"bav2"`, `"se"`, None.

    BAv1 checkpoints have `pre_fusions`/`cur_fusion`, BAv2 ones `fusions` and
    `proj`, the SE baseline `se.fc` (ResNet), `att.0` (EfficientNet) or
    `att.fc` (MobileNetV3); None means no attention keys at all (a plain
    ResNet, e.g. torchvision's). EfficientNet and MobileNetV3 checkpoints with
    BA blocks count as BAv1 (their attention-free first block included).

    Example:
    >>> detect_attention(["layer1.0.ba.fusions.0.0.weight", "fc.weight"])
    'bav2'
    """
    keys = list(keys)
    if any(".cur_fusion." in key or ".pre_fusions." in key for key in keys):
        return "bav1"
    if any(".fusions." in key for key in keys):
        return "bav2"
    se_markers = (".se.fc.", ".att.0.", ".att.fc.", ".se.fc1.")  # .se.fc1.: timm's RegNet-Y
    if any(marker in key for key in keys for marker in se_markers):
        return "se"
    return None
