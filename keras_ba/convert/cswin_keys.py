"""Key map of the official CSWin Transformer (microsoft/CSWin-Transformer).

| Keras layer                                  | PyTorch module                      |
|----------------------------------------------|-------------------------------------|
| `stage1_conv_embed` / `_norm` (stem)         | `stage1_conv_embed.0` / `.2`        |
| `stage{s}_{j}_norm1` / `_norm2`              | `stage{s}.{j}.norm1` / `.norm2`     |
| `stage{s}_{j}_attn` (`qkv`, `proj`, `get_v_{b}`) | `stage{s}.{j}.qkv` / `.proj` / `.attns.{b}.get_v` |
| `stage{s}_{j}_mlp_fc1` / `_fc2`              | `stage{s}.{j}.mlp.fc1` / `.fc2`     |
| `stage{s}_{j}_ba` / `_se`                    | `stage{s}.{j}.ba.*` / `.se.fc.{0,2}` (ours; not in official checkpoints) |
| `merge{i}_conv` / `merge{i}_norm`            | `merge{i}.conv` / `merge{i}.norm`   |
| `norm`, `predictions`                        | `norm`, `head`                      |

CSWin has no buffers. `get_v` is a depthwise conv (`[C, 1, 3, 3]`). A
model built with `include_top=False` has no `norm` layer: the checkpoint's
final norm is then skipped like its head.
"""

import re

from keras_ba.convert import common_keys, vit_keys

FAMILY = "cswin"
HEAD_PREFIX = "head."
CLASSIFIER = "head"
MARKER = "stage1_conv_embed"
IGNORED = (
    (
        re.compile(r"^norm\.(weight|bias)$"),
        "final norm of the classifier head (the model has include_top=False)",
    ),
)
_TOP = {
    "stage1_conv_embed": "stage1_conv_embed.0",
    "stage1_conv_embed_norm": "stage1_conv_embed.2",
    "norm": "norm",
    "predictions": "head",
}
_MERGE = re.compile(r"^merge(\d)_(conv|norm)$")
_BLOCK = re.compile(r"^stage(\d)_(\d+)_(norm1|norm2|attn|mlp_fc1|mlp_fc2|ba|se)$")


def layer_keys_fn(model):
    """`f(layer) -> {key: Target}` (None without a counterpart) for `model`.

    Example:
    >>> import keras
    >>> layer = keras.layers.LayerNormalization(name="merge2_norm")
    >>> layer.build((None, 4))
    >>> list(layer_keys_fn(None)(layer))
    ['merge2.norm.weight', 'merge2.norm.bias']
    """
    del model  # CSWin keys depend on the layer name only
    return _layer_keys


def _layer_keys(layer):
    if layer.name in _TOP:
        return vit_keys.transformer_module_keys(layer, _TOP[layer.name])
    match = _MERGE.match(layer.name)
    if match:
        index, part = match.groups()
        return vit_keys.transformer_module_keys(layer, f"merge{index}.{part}")
    match = _BLOCK.match(layer.name)
    if not match:
        return None
    stage, index, part = match.groups()
    prefix = f"stage{stage}.{index}"
    if part in ("ba", "se"):
        return vit_keys.block_attention_keys(layer, prefix)
    if part == "attn":
        keys = common_keys.module_keys(layer.qkv, f"{prefix}.qkv")
        keys.update(common_keys.module_keys(layer.proj, f"{prefix}.proj"))
        for branch, conv in enumerate(layer.get_v):
            keys.update(common_keys.module_keys(conv, f"{prefix}.attns.{branch}.get_v"))
        return keys
    return vit_keys.transformer_module_keys(layer, f"{prefix}.{part.replace('_', '.')}")
