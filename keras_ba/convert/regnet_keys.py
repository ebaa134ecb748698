"""Key map of timm's RegNet-Y layout, and torchvision's renamed onto it.

| Keras layer                                  | timm module                       |
|----------------------------------------------|-----------------------------------|
| `stem_conv`, `stem_bn`                       | `stem.conv`, `stem.bn`            |
| `s{i}_b{j}_conv{k}_conv` / `_bn`             | `s{i}.b{j}.conv{k}.conv` / `.bn`  |
| `s{i}_b{j}_downsample_conv` / `_bn`          | `s{i}.b{j}.downsample.conv` / `.bn` |
| `s{i}_b{j}_se` (the reference SE)            | `s{i}.b{j}.se.fc1`, `.se.fc2` (1x1 convs with bias) |
| `s{i}_b{j}_ba` (Bridge Attention)            | `s{i}.b{j}.ba.*` (no public checkpoint) |
| `predictions`                                | `head.fc`                         |

torchvision's `regnet_y_*` checkpoints differ by names only
(`rename_state`): `stem.0/1`, `trunk_output.block{i}.block{i}-{k}` for
`s{i}.b{k+1}`, `f.a/b/c.0/1` for `conv1/2/3.conv/bn`, `f.se.fc1/fc2`,
`proj.0/1` for `downsample.conv/bn`, `fc` for `head.fc`. Note that
torchvision's `regnet_y_800mf` is timm's `regnety_008_tv`, not
`regnety_008` (other widths): it loads into a `BARegNetY` built with its
widths, not into `BARegNetY008`.
"""

import re

from keras_ba.convert import common_keys, transforms
from keras_ba.convert.sources import StateDict
from keras_ba.layers import BridgeAttention, SqueezeExcite

FAMILY = "regnet"
HEAD_PREFIX = "head.fc."
CLASSIFIER = "head.fc"
MARKER = "s1_b1_conv1_conv"
# `{trunk_style: (padding of strided convs, BatchNorm epsilon)}` (see
# `keras_ba.convert.trunk_check`): timm's and torchvision's conventions; there
# is no Keras RegNet trunk.
TRUNK_STYLES = {"pytorch": ("symmetric", 1e-5)}
IGNORED = ()
_TOP = {"stem_conv": "stem.conv", "stem_bn": "stem.bn", "predictions": "head.fc"}
_CONV_BN = re.compile(r"^s(\d+)_b(\d+)_(conv1|conv2|conv3|downsample)_(conv|bn)$")
_ATTENTION = re.compile(r"^s(\d+)_b(\d+)_(ba|se)$")


def regnet_key_map(model):
    """Maps every weight of a keras_ba RegNet-Y to its timm state-dict key.

    Example:
    >>> from keras_ba.applications import BARegNetY
    >>> model = BARegNetY([1], [16], [8], stem_filters=8, attention="se",
    ...                   input_shape=(16, 16, 3), classes=3)
    >>> [k for k in regnet_key_map(model) if ".se." in k]
    ['s1.b1.se.fc1.weight', 's1.b1.se.fc1.bias', 's1.b1.se.fc2.weight', 's1.b1.se.fc2.bias']
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
    del model  # the keys depend on the layer name only
    return _layer_keys


def _layer_keys(layer):
    if layer.name in _TOP:
        return common_keys.module_keys(layer, _TOP[layer.name])
    match = _CONV_BN.match(layer.name)
    if match:
        stage, block, module, kind = match.groups()
        return common_keys.module_keys(layer, f"s{stage}.b{block}.{module}.{kind}")
    match = _ATTENTION.match(layer.name)
    if match:
        stage, block, _ = match.groups()
        prefix = f"s{stage}.b{block}"
        if isinstance(layer, BridgeAttention):
            return common_keys.bridge_attention_keys(layer, f"{prefix}.ba")
        if isinstance(layer, SqueezeExcite):
            return _se_keys(layer, f"{prefix}.se")
    return None


def _se_keys(layer, prefix):
    """timm's `SEModule`: `fc1`, `fc2` are 1x1 convs with bias."""
    keys = common_keys.kernel_keys(layer.squeeze, f"{prefix}.fc1", transforms.POINTWISE_TO_DENSE)
    keys.update(
        common_keys.kernel_keys(layer.excitation, f"{prefix}.fc2", transforms.POINTWISE_TO_DENSE)
    )
    return {key: target._replace(role=common_keys.ATTENTION) for key, target in keys.items()}


# === torchvision names ===

_TV_RULES = (
    (re.compile(r"^stem\.0\."), "stem.conv."),
    (re.compile(r"^stem\.1\."), "stem.bn."),
    (re.compile(r"^fc\."), "head.fc."),
)
_TV_BLOCK = re.compile(r"^trunk_output\.block(\d+)\.block(\d+)-(\d+)\.(.*)$")
_TV_MODULES = {
    "f.a.0": "conv1.conv",
    "f.a.1": "conv1.bn",
    "f.b.0": "conv2.conv",
    "f.b.1": "conv2.bn",
    "f.c.0": "conv3.conv",
    "f.c.1": "conv3.bn",
    "f.se.fc1": "se.fc1",
    "f.se.fc2": "se.fc2",
    "proj.0": "downsample.conv",
    "proj.1": "downsample.bn",
}


def timm_key(key):
    """timm's name of a torchvision RegNet key (other keys unchanged).

    Example:
    >>> timm_key("trunk_output.block2.block2-0.f.b.1.running_var")
    's2.b1.conv2.bn.running_var'
    """
    for pattern, replacement in _TV_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    match = _TV_BLOCK.match(key)
    if not match or match.group(1) != match.group(2):
        return key
    stage, _, index, rest = match.groups()
    module, _, parameter = rest.rpartition(".")
    if module not in _TV_MODULES:
        return key
    return f"s{stage}.b{int(index) + 1}.{_TV_MODULES[module]}.{parameter}"


def rename_state(state):
    """A torchvision-layout state dict under timm's names; others unchanged.

    Example:
    >>> import numpy as np
    >>> tv = {"stem.0.weight": np.zeros(1), "trunk_output.block1.block1-0.f.a.0.weight": np.zeros(1)}
    >>> state = rename_state(StateDict(tv, "<mapping>"))
    >>> list(state), state.notes
    (['stem.conv.weight', 's1.b1.conv1.conv.weight'], ["renamed 2 torchvision RegNet keys to timm's names"])
    """
    if not any(key.startswith("trunk_output.") for key in state):
        return state
    renamed = {timm_key(key): value for key, value in state.items()}
    if len(renamed) != len(state):
        raise ValueError(
            f"{state.source!r} mixes torchvision and timm RegNet names for the same weights."
        )
    count = sum(timm_key(key) != key for key in state)
    notes = state.notes + [f"renamed {count} torchvision RegNet keys to timm's names"]
    return StateDict(renamed, state.source, state.skipped, notes)
